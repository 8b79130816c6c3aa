"""Host environments (distrl/envs/host.py on the host architecture): their raw ceiling, training's fraction of it,
and the CartPole learning runs.

  python benchmarks/host_envs.py              # every row (~10 min on a 2-core CPU)
  python benchmarks/host_envs.py --quick      # fewer steps: the pipeline only (RESULTS.md not written)

Speed rows, each in a fresh worker process with one CPU device, in one invocation:
- "raw": the environments alone, stepped with uniformly random actions from this process (envpool in its
  synchronous mode on its own threads; gymnasium's synchronous vector environment), the ceiling of what training on
  them can reach here;
- "distrl ALGO, lag L": training PPO's or IMPALA's preset with `actor_lag=L` (the actor thread acting and the learner
  learning, overlapped where L >= 1), timed over whole updates after two warm-up updates (compiles and first
  rollouts);
- for CartPole, the compiled path's gymnax CartPole-v1 with the same settings, for scale.
The fraction is training's steps/s over the raw row of the same environment.

Learning rows: the `ppo:envpool:CartPole-v1` and `ppo:gymnasium:CartPole-v1` presets (8 environments, 5e5 steps),
and `impala:envpool:CartPole-v1` with its actor 4 updates behind, from the launcher; the first step whose greedy
evaluation (8 episodes) reached 475, and the last evaluation.

The tables are written into benchmarks/RESULTS.md between the `host-speed` and `host-learning` markers by a complete
run (not --quick), under the command, machine and date.
"""

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.append(os.path.join(ROOT, "benchmarks"))
import results_file  # noqa: E402

NAMES = ("host-speed", "host-learning")
# The preset's agent (the IMPALA CNN) with 8 environments x 32 steps: on this CPU one update takes a minute or more.
BREAKOUT = {"num_envs": 8, "num_steps": 32, "num_minibatches": 4}
SPEED = [  # (environment, algorithm, preset, overrides, actor lags; None: the compiled path)
    ("envpool:CartPole-v1", "ppo", "envpool:CartPole-v1", {}, (1, 0)),
    ("envpool:CartPole-v1", "impala", "envpool:CartPole-v1", {}, (1, 4)),
    ("gymnasium:CartPole-v1", "ppo", "gymnasium:CartPole-v1", {}, (1, 0)),
    ("CartPole-v1", "ppo", "CartPole-v1", {"num_envs": 8}, (None,)),
    ("envpool:Breakout-v5", "ppo", "envpool:Breakout-v5", BREAKOUT, (1, 0)),
    ("envpool:Breakout-v5", "impala", "envpool:Breakout-v5", {**BREAKOUT, "num_steps": 20}, (1, 4)),
]
LEARNING = [("ppo", "envpool:CartPole-v1", {}), ("ppo", "gymnasium:CartPole-v1", {}),
            ("impala", "envpool:CartPole-v1", {"actor_lag": 4})]


def raw(name: str, num_envs: int, steps: int) -> float:
  """Steps/s of `num_envs` host environments stepped with random actions."""
  import numpy as np
  from distrl import envs
  spec = envs.make(name, {"episodic_life": True, "reward_clip": True} if "Breakout" in name else {})
  batch = spec.open(num_envs, seed=0)
  batch.reset()
  rng = np.random.default_rng(0)
  act = lambda: rng.integers(0, spec.num_actions, num_envs)
  for _ in range(10):
    batch.step(act())
  start = time.perf_counter()
  for _ in range(steps // num_envs):
    batch.step(act())
  seconds = time.perf_counter() - start
  batch.close()
  return steps // num_envs * num_envs / seconds


def train(preset: str, overrides: dict, updates: int, algo: str = "ppo") -> float:
  """Steps/s of training `algo`'s `preset` over `updates` updates after two warm-up updates."""
  import jax
  from distrl import sharding
  from distrl.runtime import programs
  config = importlib.import_module(f"distrl.configs.{algo}").get_config(preset)
  config.update(overrides)
  program = programs.build(config, sharding.make_mesh())
  runner = program.runner
  state = runner.put(program.state)
  runner.compile(state)
  chunk = runner(state, 2)
  jax.block_until_ready(chunk.state)
  start = time.perf_counter()
  chunk = runner(chunk.state, updates, chunk.totals)
  jax.block_until_ready(chunk.state)
  seconds = time.perf_counter() - start
  program.close()
  return updates * program.sizes.steps_per_update / seconds


def worker(kind: str, args: dict) -> None:
  import distrl  # noqa: F401  (its XLA option, before JAX starts)
  value = raw(**args) if kind == "raw" else train(**args)
  print(json.dumps({"steps_per_second": value}))


def run_worker(kind: str, args: dict) -> float:
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "PYTHONPATH": ROOT}
  out = subprocess.run([sys.executable, __file__, "--worker", kind, json.dumps(args)], env=env, capture_output=True,
                       text=True, timeout=3600)
  if out.returncode != 0:
    raise SystemExit(f"the {kind} worker for {args} failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])["steps_per_second"]


def speed_table(quick: bool) -> str:
  rows = ["| environment | what runs | steps/s | fraction of raw |", "| --- | --- | --- | --- |"]
  ceilings = {}
  for name, algo, preset, overrides, lags in SPEED:
    atari = "Breakout" in name
    num_envs = overrides.get("num_envs", 8)
    if ":" in name and name not in ceilings:
      ceilings[name] = run_worker("raw", {"name": name, "num_envs": num_envs, "steps": 2_000 if quick else 40_000})
      rows.append(f"| {name} | raw: {num_envs} environments, random actions | {ceilings[name]:,.0f} | 1 |")
    ceiling = ceilings.get(name)
    for lag in lags:
      updates = 1 if quick else 10 if atari else 20
      fields = {**overrides, **({} if lag is None else {"actor_lag": lag})}
      sps = run_worker("train", {"preset": preset, "overrides": fields, "updates": updates, "algo": algo})
      what = f"distrl {algo}, " + ("compiled path (gymnax)" if lag is None else f"actor_lag={lag}")
      steps = fields.get("num_steps", importlib.import_module(f"distrl.configs.{algo}").get_config(preset).num_steps)
      fraction = f"{sps / ceiling:.2f}" if ceiling else ""
      rows.append(f"| {name} | {what}, {num_envs} x {steps} steps an update | {sps:,.0f} | {fraction} |")
      print(rows[-1], flush=True)
  return "\n".join(rows)


def learning_table(quick: bool) -> str:
  rows = ["| preset | steps | first step with eval >= 475 | final eval return | wall s |", "| --- | --- | --- | --- | --- |"]
  for algo, preset, overrides in LEARNING:
    with tempfile.TemporaryDirectory() as scratch:
      workdir = os.path.join(scratch, "run")
      total = 20_480 if quick else 500_000
      fields = [f"--config.{k}={v}" for k, v in {**overrides, "total_timesteps": total}.items()]
      start = time.time()
      out = subprocess.run([sys.executable, "-m", "distrl.launch", f"--config={algo}:{preset}", f"--workdir={workdir}",
                            *fields], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
      seconds = time.time() - start
      if out.returncode != 0:
        raise SystemExit(f"training {preset} failed:\n{out.stderr[-3000:]}")
      records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    evals = [r for r in records if "eval/return" in r]
    first = next((f"{r['step']:,}" for r in evals if r["eval/return"] >= 475), "not reached")
    label = " ".join([f"{algo}:{preset}", *[f"{k}={v}" for k, v in overrides.items()]])
    rows.append(f"| {label} | {records[-1]['step']:,} | {first} | {evals[-1]['eval/return']:.1f} | {seconds:.0f} |")
    print(rows[-1], flush=True)
  return "\n".join(rows)


def main():
  if len(sys.argv) > 1 and sys.argv[1] == "--worker":
    return worker(sys.argv[2], json.loads(sys.argv[3]))
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--results", default=None, help="the Markdown file to write the tables into ('' for none)")
  args = parser.parse_args()
  path = results_file.destination(args.results, "--quick" if args.quick else None)
  if path:
    results_file.check(path, list(NAMES))
  tables = {"host-speed": speed_table(args.quick), "host-learning": learning_table(args.quick)}
  print("\n\n".join(tables.values()))
  if path:
    results_file.write(path, tables)
  else:
    results_file.not_written("--quick")


if __name__ == "__main__":
  main()
