"""A sweep of 64 PPO CartPole configurations: one distrl program, 64 separate distrl runs, and rejax's vmapped PPO.

  python benchmarks/sweep.py --rejax-python /tmp/rejaxvenv/bin/python            # ~5 min on 2 cores
  python benchmarks/sweep.py --rejax-python /tmp/rejaxvenv/bin/python --quick    # the pipeline only, ~5 min

Getting rejax (measured: rejax 0.1.3 from PyPI, with jax 0.10.2, flax 0.12.8, gymnax 0.0.9):

  python -m venv /tmp/rejaxvenv && /tmp/rejaxvenv/bin/pip install rejax 'gymnax<1.0'

(rejax 0.1.3 unpacks the five values of gymnax 0.0.x's `step`; gymnax 1.0 returns six.)

The 64 members are the grid clip_eps (0.1, 0.2, 0.3, 0.4) x ent_coef (0, 0.003, 0.01, 0.03) x lr (1e-4, 3e-4, 1e-3,
3e-3) of PPO on gymnax CartPole-v1 with the preset's sizes (4 environments x 128 steps an update, 4 epochs of 4
minibatches, separate 64x64 tanh MLPs, gradient norm 0.5, gamma 0.99, lambda 0.95, value loss 0.5 with its clip,
normalised advantages), the step size constant as rejax has it, one seed each, --steps environment steps each.
Rows, each timed from the start of its process(es) to their end (imports, compiles, evaluations and checkpoints
included; distrl's persistent compilation cache off, so every program compiles as a first run does), one after the
other on this machine's CPU:
- distrl, the sweep in one program: `python -m distrl.launch --config=ppo --config.sweep.clip_eps=... ...`;
- distrl, the same sweep on the machine's cores as as many CPU devices (XLA_FLAGS
  --xla_force_host_platform_device_count), `--config.member_groups` of them: each device trains its group of
  members on its own thread;
- distrl, separate runs: `python -m distrl.launch --config=ppo --config.lr=...` for --separate of the 64 members
  (drawn without replacement, fixed seed); the 64 runs' wall is their sum scaled to 64 where fewer ran (every member
  costs the same: the same program with other numbers);
- rejax, the 64 configurations vmapped in one program (`jax.vmap` over `PPO.replace(learning_rate=..., ...)`, as
  rejax's README shows), in the Python given by --rejax-python; rejax is never imported by distrl.
Each row's returns: the greedy evaluation at the end, mean over the members and the best member (distrl: its
`eval_episodes`, greedy; rejax: its `evaluate`, 128 episodes of the sampled policy). Below the table: how far each
separate run's evaluation lies from the same member's in the sweep (the same member trained alone and in a sweep
agree to float rounding; CartPole's greedy episodes can turn such rounding into different lengths).

A complete run (not --quick, --separate 64 or its default) writes the table between the `sweep` markers of
benchmarks/RESULTS.md.
"""

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "sweep"
GRID = {"clip_eps": (0.1, 0.2, 0.3, 0.4), "ent_coef": (0.0, 0.003, 0.01, 0.03), "lr": (1e-4, 3e-4, 1e-3, 3e-3)}
# The preset's fields that differ from rejax's or that a benchmark sets: the step size constant (rejax's), one
# evaluation at the end, no checkpoint between.
FIXED = {"env_name": "CartPole-v1", "num_envs": 4, "num_steps": 128, "update_epochs": 4, "num_minibatches": 4,
         "hidden_sizes": (64, 64), "activation": "tanh", "max_grad_norm": 0.5, "gamma": 0.99, "gae_lambda": 0.95,
         "vf_coef": 0.5, "anneal_lr": False}
STEPS = 100_000
# The sweep's second row: this machine's cores as as many CPU devices (a power of two, so that they divide the 64
# members), a group of members each.
CORES = min(64, 2 ** int(math.log2(os.cpu_count() or 1)))
QUICK_STEPS = 8_192


def members() -> list[dict[str, float]]:
  """The grid in distrl's order: fields alphabetical, the last fastest."""
  names = sorted(GRID)
  return [dict(zip(names, values)) for values in itertools.product(*(GRID[n] for n in names))]


def _distrl_flags(steps: int, workdir: str) -> list[str]:
  updates = steps // (FIXED["num_envs"] * FIXED["num_steps"])
  fields = {**FIXED, "total_timesteps": steps, "log_every": max(1, updates // 10), "eval_every": updates,
            "checkpoint_every": updates}
  # No persistent compilation cache: every row compiles as a first run of its program does (a rerun of this
  # script would otherwise load its earlier compiles; rejax has none).
  return [sys.executable, "-m", "distrl.launch", "--config=ppo", f"--workdir={workdir}", "--compilation_cache=",
          *[f"--config.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in fields.items()]]


def _launch(argv: list[str], devices: int = 1) -> float:
  """Runs a command line to its end on `devices` CPU devices; its wall time in seconds."""
  start = time.perf_counter()
  out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"})
  wall = time.perf_counter() - start
  if out.returncode != 0:
    raise SystemExit(f"{' '.join(argv[:4])} ... failed:\n{out.stderr[-3000:]}")
  return wall


def _records(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def _last_evaluation(workdir: str) -> dict:
  return _records(workdir)[-1]  # a run ends with an evaluation


def training_seconds(records: list[dict]) -> float:
  """The run's updates alone: the pace between its first and last log records (no compile, evaluation or save
  falls between them here: one evaluation and one save, at the end), times its updates."""
  first, last = records[0], records[-1]
  return (last["time"] - first["time"]) / (last["update"] - first["update"]) * last["update"]


def distrl_sweep(steps: int, scratch: str, groups: int = 1) -> dict:
  """The sweep as one launch; with `groups` > 1, on as many CPU devices (the host's cores split between them), one
  group of members each (`member_groups`)."""
  workdir = os.path.join(scratch, f"distrl-sweep-{groups}")
  sweep = [f"--config.sweep.{name}=({','.join(map(str, values))})" for name, values in GRID.items()]
  wall = _launch(_distrl_flags(steps, workdir) + sweep + [f"--config.member_groups={groups}"], devices=groups)
  records = _records(workdir)
  returns = [records[-1][f"eval/return/member_{m}"] for m in range(len(members()))]
  row = "distrl: 64 members in one program" + (f", {groups} CPU devices, member_groups={groups}" if groups > 1 else "")
  return {"row": row, "wall_s": wall, "ran": 1, "returns": returns, "training_s": training_seconds(records)}


def distrl_separate(steps: int, scratch: str, count: int) -> dict:
  import numpy as np

  indices = sorted(np.random.default_rng(0).choice(len(members()), count, replace=False).tolist())
  walls, returns, training = [], [], []
  for i, member in zip(indices, (members()[i] for i in indices)):
    workdir = os.path.join(scratch, f"distrl-run-{i}")
    walls.append(_launch(_distrl_flags(steps, workdir) + [f"--config.{k}={v}" for k, v in member.items()]))
    returns.append(_last_evaluation(workdir)["eval/return"])
    training.append(training_seconds(_records(workdir)))
    print(f"  member {i} alone ({member}): {walls[-1]:.1f} s, eval {returns[-1]:.1f}", flush=True)
  scale = len(members()) / count
  return {"row": f"distrl: 64 separate runs ({count} run{'' if count == 1 else 's'}"
                 f"{'' if count == len(members()) else ', scaled to 64'})", "wall_s": sum(walls) * scale,
          "ran": count, "returns": returns, "members": indices, "training_s": sum(training) * scale}


def rejax_sweep(steps: int, python: str) -> dict:
  start = time.perf_counter()
  out = subprocess.run([python, os.path.abspath(__file__), "--rejax-worker", str(steps)], capture_output=True,
                       text=True, cwd=tempfile.gettempdir(),
                       env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
  wall = time.perf_counter() - start
  if out.returncode != 0:
    raise SystemExit(f"rejax's sweep failed:\n{out.stderr[-3000:]}")
  returns = json.loads(out.stdout.strip().splitlines()[-1])
  return {"row": "rejax: 64 configurations vmapped in one program", "wall_s": wall, "ran": 1, "returns": returns}


def rejax_worker(steps: int) -> None:
  """In rejax's Python: the 64 configurations vmapped and trained; prints each one's final mean return (JSON)."""
  import jax
  import jax.numpy as jnp
  from rejax import PPO

  algo = PPO.create(env="CartPole-v1", num_envs=FIXED["num_envs"], num_steps=FIXED["num_steps"],
                    num_epochs=FIXED["update_epochs"], num_minibatches=FIXED["num_minibatches"],
                    max_grad_norm=FIXED["max_grad_norm"], gamma=FIXED["gamma"], gae_lambda=FIXED["gae_lambda"],
                    vf_coef=FIXED["vf_coef"], total_timesteps=steps, eval_freq=steps, skip_initial_evaluation=True,
                    agent_kwargs={"activation": FIXED["activation"], "hidden_layer_sizes": FIXED["hidden_sizes"]})
  grid = members()
  values = {k: jnp.array([m[k] for m in grid], jnp.float32) for k in GRID}
  keys = jax.random.split(jax.random.key(0), len(grid))

  def train(clip_eps, ent_coef, lr, key):
    _, (_, returns) = algo.replace(clip_eps=clip_eps, ent_coef=ent_coef, learning_rate=lr).train(key)
    return returns[-1].mean()

  final = jax.jit(jax.vmap(train))(values["clip_eps"], values["ent_coef"], values["lr"], keys)
  print(json.dumps([float(r) for r in jax.device_get(final)]))


def table(rows: list[dict]) -> str:
  import numpy as np

  separate = next(r["wall_s"] for r in rows if "separate" in r["row"])
  lines = ["| row | wall | of it: updates | of it: the rest | 64 separate distrl runs' wall / this "
           "| final eval, mean over members | best member |", "| --- | --- | --- | --- | --- | --- | --- |"]
  for r in rows:
    split = (f"{r['training_s']:.0f} s | {r['wall_s'] - r['training_s']:.0f} s" if "training_s" in r
             else "not measured | not measured")
    lines.append(f"| {r['row']} | {r['wall_s']:.0f} s | {split} | {separate / r['wall_s']:.1f}x | "
                 f"{np.mean(r['returns']):.1f} | {np.max(r['returns']):.1f} |")
  return "\n".join(lines)


def pace(sweep: dict, separate: dict, steps: int) -> str:
  """Where the sweep's time goes: its updates against the separate runs', per member, and what that bounds."""
  updates, count = steps // (FIXED["num_envs"] * FIXED["num_steps"]), len(members())
  together = sweep["training_s"] / updates / count * 1e3
  alone = separate["training_s"] / updates / count * 1e3
  return (f"Per member and update: {together:.2f} ms in the sweep, {alone:.2f} ms alone ({alone / together:.1f}x). "
          f"The sweep cannot end sooner than its updates: even with nothing else in its wall, the 64 separate runs "
          f"would take at most {separate['wall_s'] / sweep['training_s']:.1f}x its time on this device.")


def main():
  if len(sys.argv) == 3 and sys.argv[1] == "--rejax-worker":
    return rejax_worker(int(sys.argv[2]))
  sys.path.insert(0, ROOT)
  sys.path.append(os.path.join(ROOT, "benchmarks"))
  import results_file

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rejax-python", required=True, help="a Python with rejax installed (see the docstring)")
  parser.add_argument("--separate", type=int, default=8, choices=(1, 2, 4, 8, 16, 32, 64),
                      help="how many of the 64 separate runs to time (the rest scaled from them)")
  parser.add_argument("--steps", type=int, default=None, help=f"steps per member (default {STEPS:,})")
  parser.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS:,} steps, 1 separate run")
  parser.add_argument("--results", default=None, help="where the table goes (default: RESULTS.md if complete)")
  args = parser.parse_args()
  steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
  separate = 1 if args.quick else args.separate
  incomplete = "--quick" if args.quick else ("--steps" if args.steps not in (None, STEPS) else None)
  path = results_file.destination(args.results, incomplete)
  if path:
    results_file.check(path, [NAME])
  with tempfile.TemporaryDirectory(prefix="distrl-sweep-") as scratch:
    print(f"distrl, the sweep of {len(members())} members in one program ...", flush=True)
    rows = [distrl_sweep(steps, scratch)]
    print(f"  {rows[-1]['wall_s']:.1f} s", flush=True)
    if CORES > 1:
      print(f"distrl, the sweep on {CORES} CPU devices, a group of members each ...", flush=True)
      rows.append(distrl_sweep(steps, scratch, groups=CORES))
      print(f"  {rows[-1]['wall_s']:.1f} s", flush=True)
    print(f"distrl, {separate} of the separate runs ...", flush=True)
    rows.append(distrl_separate(steps, scratch, separate))
    print("rejax, the 64 configurations vmapped ...", flush=True)
    rows.append(rejax_sweep(steps, args.rejax_python))
    print(f"  {rows[-1]['wall_s']:.1f} s", flush=True)
  alone = next(r for r in rows if "separate" in r["row"])
  gaps = [abs(r - rows[0]["returns"][m]) for m, r in zip(alone["members"], alone["returns"])]
  text = (f"{len(members())} PPO CartPole-v1 configurations, {steps:,} steps each, one seed each; "
          f"walls from process start to end.\n\n{table(rows)}\n\nThe {len(gaps)} member(s) trained alone against "
          f"the same in the sweep, final greedy evaluation: {sum(g < 1e-3 for g in gaps)} equal, largest "
          f"difference {max(gaps):.1f}.")
  text += "\n\n" + pace(rows[0], alone, steps)
  print("\n" + text)
  if path:
    results_file.write(path, {NAME: text})
  else:
    results_file.not_written(incomplete)


if __name__ == "__main__":
  main()
