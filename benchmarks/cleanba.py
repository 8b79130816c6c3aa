"""Cleanba's PPO (`cleanba/cleanba_ppo.py`) beside distrl's PPO on Breakout-v5 through envpool: steps/s and ratio.

  python benchmarks/cleanba.py --cleanba PATH/cleanba_ppo.py --python PYTHON           # ~6 min on 2 cores
  python benchmarks/cleanba.py --cleanba PATH/cleanba_ppo.py --python PYTHON --quick   # the pipeline only, ~5 min

Getting Cleanba (measured: commit d1f8979c33e4e1c3d4e67f460afcebb42b6889d4, the file last changed in c86129a):

  git clone https://github.com/vwxyzjn/cleanba && cp cleanba/cleanba/cleanba_ppo.py /tmp/cleanba_ppo.py

and a Python for it with distrl's versions of jax, jaxlib, flax, optax, envpool and gymnasium (`pip freeze` of
distrl's environment) plus Cleanba's own imports (tyro, rich, tensorboardX): distrl's environment after
`pip install tyro`, or a virtual environment of its own. --python names it (default: this interpreter).

The file is run unmodified but for the adaptations in PATCHES, which this script applies to a copy in a temporary
folder (each must match as often as stated, else the run stops): what today's JAX removed (`jax.tree_map`,
`jax.device_put_sharded`, `jax.device_put_replicated`), what today's flax asks of parameters (`TrainState` tests
`key in params`), and envpool 1.x's API (gymnasium's reset and step; read-only `num_envs`, `single_*_space`,
`is_vector_env`), envpool 0.8 having no build for NumPy 2, which JAX 0.10 needs.

Each trainer runs in a fresh process with one CPU device, one after the other, with the same settings as far as they
map: 8 environments x 8 steps an update, 4 minibatches, 4 epochs (--quick: 8 x 4 steps, 1 epoch), lr 2.5e-4
annealed, gamma 0.99, lambda 0.95, clip 0.1 without a value clip, entropy 0.01, value 0.5, gradient norm 0.5,
normalised advantages, the actor one update behind the learner (Cleanba's `--concurrency`, distrl's `actor_lag=1`),
and Cleanba's envpool settings (Machado et al.: sticky actions 0.25, full action space, no episodic life, 1 no-op,
27,000 steps at most, clipped rewards). Rows:
- Cleanba: its network (an IMPALA CNN of 16, 32, 32 channels and a layer of 256, one torso for policy and value),
  timed between the actor's log lines of updates W + 2 and W + 2 + T (W warm-up updates, the first with the compile;
  with the actor one update behind, rollout u waits for learner update u - 2), the process stopped after that line;
- distrl, the preset's network (`ppo:envpool:Breakout-v5`), Cleanba's: `torso="impala"`, `hidden_sizes=(256,)`,
  `shared_torso=True`;
- distrl with the Nature CNN (shared by both heads), for scale;
both distrl rows timed as host_envs.py times them (`host_envs.train`: whole updates after two warm-up updates).
Cleanba keeps its own XLA_FLAGS (`--xla_cpu_multi_thread_eigen=false`: one thread per convolution on a CPU). On a
CPU, XLA runs the convolutions inside Cleanba's compiled minibatch loop (`lax.scan`) far slower than the same
convolutions outside a loop (a gradient of its network on 16 frames: 0.3 s alone, 5 s in a scan, with or without its
flags); distrl's convolutions there are matrix products (`conv="auto"`). Hence 8 x 8 steps, not host_envs.py's 8 x 32:
there one update of Cleanba's takes 5-15 min on 2 cores.

The table is written into benchmarks/RESULTS.md between the `host-cleanba` markers by a complete run (not --quick),
under the command, machine and date.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.append(os.path.join(ROOT, "benchmarks"))
import host_envs  # noqa: E402
import results_file  # noqa: E402

NAME = "host-cleanba"
GAME = "Breakout-v5"
# Cleanba's make_env: envpool's Atari with Machado et al.'s settings.
CLEANBA_ENV = {"episodic_life": False, "repeat_action_probability": 0.25, "noop_max": 1, "full_action_space": True,
               "max_episode_steps": 27_000, "reward_clip": True}
SHARED = {"num_minibatches": 4, "update_epochs": 4, "lr": 2.5e-4, "anneal_lr": True, "gamma": 0.99, "gae_lambda": 0.95,
          "clip_eps": 0.1, "clip_value_loss": False, "norm_adv": True, "ent_coef": 0.01, "vf_coef": 0.5,
          "max_grad_norm": 0.5, "actor_lag": 1, "env_kwargs": CLEANBA_ENV}
DISTRL_ROWS = [  # (what runs, overrides of the preset)
  ("IMPALA CNN (16, 32, 32) + 256, shared torso (the preset's, as Cleanba's)", {}),
  ("Nature CNN + 512, shared torso", {"torso": "nature", "hidden_sizes": (512,)}),
]

# (why, text in cleanba_ppo.py, its replacement, how many times the text occurs)
PATCHES = [
  ("JAX 0.10 has no jax.tree_map", "jax.tree_map(", "jax.tree.map(", 4),
  ("JAX 0.10 has no jax.device_put_sharded / device_put_replicated: the same placement through a NamedSharding",
   "from tensorboardX import SummaryWriter\n",
   "from tensorboardX import SummaryWriter\n\n\n"
   "def _put_sharded(xs, devices):\n"
   "    mesh = jax.sharding.Mesh(np.array(devices), ('d',))\n"
   "    return jax.device_put(jnp.stack(xs), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('d')))\n",
   1),
  ("(the same)", "jax.device_put_sharded(", "_put_sharded(", 3),
  ("(the same)", "jax.device_put_replicated(key, learner_devices)",
   "_put_sharded([key] * len(learner_devices), learner_devices)", 1),
  ("flax 0.12's TrainState.create and apply_gradients test `'_overwrite_with_gradient' in params`",
   "    critic_params: flax.core.FrozenDict\n",
   "    critic_params: flax.core.FrozenDict\n\n    def __contains__(self, key):\n        return False\n", 1),
  ("envpool 1.x: these are read-only properties of the same values",
   "        envs.num_envs = num_envs\n        envs.single_action_space = envs.action_space\n"
   "        envs.single_observation_space = envs.observation_space\n        envs.is_vector_env = True\n", "", 1),
  ("envpool 1.x's env_type='gym' is gymnasium's API: reset returns (obs, info)",
   "next_obs = envs.reset()", "next_obs, _ = envs.reset()", 1),
  ("envpool 1.x: step returns terminated and truncated (gym's done is either)",
   "next_obs, next_reward, next_done, info = envs.step(cpu_action)",
   "next_obs, next_reward, next_terminated, next_truncated, info = envs.step(cpu_action)\n"
   "            next_done = next_terminated | next_truncated", 1),
]

WARMUP_UPDATES, TIMED_UPDATES = 2, 10  # Cleanba's updates before its timed window, and the updates timed a side
ACTOR_LINE = re.compile(r"^global_step=(\d+), avg_episodic_return=\S+, rollout_time=(\S+)$")


def patched(source: str) -> str:
  """cleanba_ppo.py's text with PATCHES applied; SystemExit if one does not match as often as stated."""
  with open(source) as f:
    text = f.read()
  for why, old, new, count in PATCHES:
    if text.count(old) != count:
      raise SystemExit(f"{source}: {old.splitlines()[0]!r} occurs {text.count(old)} times, not {count} ({why}): "
                       f"not the cleanba_ppo.py this script adapts")
    text = text.replace(old, new)
  return text


def cleanba(source: str, python: str, num_envs: int, num_steps: int, epochs: int, warmup: int, timed: int) -> dict:
  """Cleanba's steps/s over `timed` updates after `warmup`, from the arrival times of its actor's log lines."""
  batch = num_envs * num_steps
  first, last = warmup + 2, warmup + 2 + timed  # actor lines (updates) that bound the window
  with tempfile.TemporaryDirectory() as scratch:
    script = os.path.join(scratch, "cleanba_ppo.py")
    with open(script, "w") as f:
      f.write(patched(source))
    command = [python, script, "--env-id", GAME, "--local-num-envs", str(num_envs), "--num-steps", str(num_steps),
               "--num-minibatches", str(SHARED["num_minibatches"]), "--update-epochs", str(epochs),
               "--num-actor-threads", "1", "--actor-device-ids", "0", "--learner-device-ids", "0",
               "--total-timesteps", str((last + 1) * batch), "--log-frequency", "1", "--concurrency"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("XLA_FLAGS", None)  # Cleanba sets its own
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=scratch, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    seen, tail, rollouts = {}, [], []
    for line in process.stdout:
      now = time.perf_counter()
      tail = (tail + [line])[-40:]
      match = ACTOR_LINE.match(line.strip())
      if not match:
        continue
      update = int(match.group(1)) // batch
      seen[update] = now
      rollouts.append(float(match.group(2)))
      print(f"  cleanba: update {update} logged at {now - start:.0f} s", flush=True)
      if update >= last:
        process.terminate()  # what is left is the learner's tail, untimed
        break
    try:
      process.wait(timeout=60)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()
    wall = time.perf_counter() - start
  if last not in seen or first not in seen:
    raise SystemExit(f"Cleanba stopped before its update {last} (exit {process.returncode}):\n{''.join(tail)}")
  seconds = seen[last] - seen[first]
  return {"steps_per_second": timed * batch / seconds, "steps": timed * batch, "rollout_s": rollouts[-1],
          "update_s": seconds / timed, "wall_s": wall}


def distrl_worker(overrides: dict, updates: int) -> None:
  """One distrl row in this (fresh) process: host_envs.train, or why the config cannot take the overrides."""
  import distrl  # noqa: F401  (its XLA option, before JAX starts)
  from distrl.configs import ppo
  from distrl.errors import ConfigError
  config = ppo.get_config(f"envpool:{GAME}")
  missing = [key for key in overrides if key not in config]
  if missing:
    print(json.dumps({"skipped": f"this distrl's PPO config has no {', '.join(missing)}"}))
    return
  try:
    sps = host_envs.train(f"envpool:{GAME}", overrides, updates)
  except ConfigError as error:
    print(json.dumps({"skipped": str(error).splitlines()[0]}))
    return
  print(json.dumps({"steps_per_second": sps}))


def run_distrl(overrides: dict, updates: int) -> dict:
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "PYTHONPATH": ROOT}
  start = time.perf_counter()
  out = subprocess.run([sys.executable, __file__, "--worker", json.dumps({"overrides": overrides,
                                                                          "updates": updates})],
                       env=env, capture_output=True, text=True, timeout=3600)
  if out.returncode != 0:
    raise SystemExit(f"the distrl worker for {overrides} failed:\n{out.stderr[-3000:]}")
  return {**json.loads(out.stdout.strip().splitlines()[-1]), "wall_s": time.perf_counter() - start}


def table(args) -> str:
  num_envs, num_steps = 8, 4 if args.quick else 8
  shared = {**SHARED, "update_epochs": 1} if args.quick else SHARED
  updates = 1 if args.quick else TIMED_UPDATES
  size = f"{num_envs} x {num_steps}"
  work = f"{shared['update_epochs']} x {shared['num_minibatches']}"
  reference = cleanba(args.cleanba, args.python, num_envs, num_steps, shared["update_epochs"],
                      warmup=1 if args.quick else WARMUP_UPDATES, timed=updates)
  print(f"Cleanba: {reference['steps_per_second']:.2f} steps/s, {reference['update_s']:.1f} s an update "
        f"(its rollout: {reference['rollout_s']:.1f} s), {reference['wall_s']:.0f} s in all", flush=True)
  rows = ["| trainer | network | envs x steps | epochs x minibatches | updates timed (steps) | steps/s | "
          "distrl / Cleanba |",
          "| --- | --- | --- | --- | --- | --- | --- |",
          f"| Cleanba cleanba_ppo.py | IMPALA CNN (16, 32, 32) + 256, shared torso | {size} | {work} | "
          f"{updates} ({reference['steps']:,}) | {reference['steps_per_second']:,.2f} | 1 |"]
  for what, overrides in DISTRL_ROWS:
    fields = {**shared, "num_envs": num_envs, "num_steps": num_steps, **overrides}
    result = run_distrl(fields, updates)
    if "skipped" in result:
      rows.append(f"| distrl PPO | {what} | {size} | {work} | | not run: {result['skipped']} | |")
    else:
      sps = result["steps_per_second"]
      rows.append(f"| distrl PPO | {what} | {size} | {work} | {updates} ({updates * num_envs * num_steps:,}) | "
                  f"{sps:,.2f} | {sps / reference['steps_per_second']:,.1f} |")
    print(rows[-1], f"({result['wall_s']:.0f} s)", flush=True)
  return "\n".join(rows) + (f"\n\nSteady training on both sides: Cleanba timed from its update {WARMUP_UPDATES + 2} "
                            f"(after {WARMUP_UPDATES} warm-up updates, the first with its compile), distrl after two "
                            f"(its compiles). Cleanba's update: {reference['update_s']:.1f} s, of which its actor's "
                            f"rollout of {size} steps {reference['rollout_s']:.1f} s (overlapped with learning).")


def main():
  if len(sys.argv) > 1 and sys.argv[1] == "--worker":
    return distrl_worker(**json.loads(sys.argv[2]))
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cleanba", required=True, help="Cleanba's cleanba/cleanba_ppo.py, as fetched (not modified)")
  parser.add_argument("--python", default=sys.executable, help="the interpreter that runs Cleanba")
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--results", default=None, help="the Markdown file to write the table into ('' for none)")
  args = parser.parse_args()
  patched(args.cleanba)  # refuses a file it cannot adapt before anything runs
  path = results_file.destination(args.results, "--quick" if args.quick else None)
  if path:
    results_file.check(path, [NAME])
  text = table(args)
  print(text)
  if path:
    results_file.write(path, {NAME: text})
  else:
    results_file.not_written("--quick")


if __name__ == "__main__":
  main()
