"""Host environments (distrl/host/): their raw ceiling, training's fraction of it, and the CartPole learning runs.

  python benchmarks/host_envs.py              # every row (~6 min on a 2-core CPU)
  python benchmarks/host_envs.py --quick      # fewer steps: the pipeline only (RESULTS.md not written)

Speed rows, each in a fresh worker process with one CPU device, in one invocation:
- "raw": the environments alone, stepped with uniformly random actions from this process (envpool in its
  synchronous mode on its own threads; gymnasium's synchronous vector environment), the ceiling of what training on
  them can reach here;
- "distrl, lag L": training with the preset's settings and `actor_lag=L` (the actor thread acting and the learner
  learning, overlapped where L = 1), timed over whole updates after two warm-up updates (compiles and first rollouts);
- for CartPole, the compiled path's gymnax CartPole-v1 with the same settings, for scale.
The fraction is training's steps/s over the raw row of the same environment.

Learning rows: the `ppo:envpool:CartPole-v1` and `ppo:gymnasium:CartPole-v1` presets (8 environments, 5e5 steps)
from the launcher; the first step whose greedy evaluation (8 episodes) reached 475, and the last evaluation.

The tables are written into benchmarks/RESULTS.md between the `host-speed` and `host-learning` markers by a complete
run (not --quick), under the command, machine and date.
"""

import argparse
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
SPEED = [  # (environment, preset, overrides)
    ("envpool:CartPole-v1", "envpool:CartPole-v1", {}),
    ("gymnasium:CartPole-v1", "gymnasium:CartPole-v1", {}),
    ("CartPole-v1", "CartPole-v1", {"num_envs": 8}),
    ("envpool:Breakout-v5", "envpool:Breakout-v5", {"num_envs": 8, "num_steps": 32, "num_minibatches": 4}),
]


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


def train(preset: str, overrides: dict, updates: int) -> float:
  """Steps/s of training `preset` over `updates` updates after two warm-up updates."""
  import jax
  from distrl import sharding
  from distrl.configs import ppo
  from distrl.runtime import programs
  config = ppo.get_config(preset)
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
  for name, preset, overrides in SPEED:
    atari = "Breakout" in name
    num_envs = overrides.get("num_envs", 8)
    ceiling = None
    if ":" in name:
      ceiling = run_worker("raw", {"name": name, "num_envs": num_envs, "steps": 2_000 if quick else 40_000})
      rows.append(f"| {name} | raw: {num_envs} environments, random actions | {ceiling:,.0f} | 1 |")
    lags = (1, 0) if ":" in name else (None,)
    for lag in lags:
      updates = 1 if quick or atari else 20
      fields = {**overrides, **({} if lag is None else {"actor_lag": lag})}
      sps = run_worker("train", {"preset": preset, "overrides": fields, "updates": updates})
      what = "distrl PPO, compiled path (gymnax)" if lag is None else f"distrl PPO, actor_lag={lag}"
      fraction = f"{sps / ceiling:.2f}" if ceiling else ""
      rows.append(f"| {name} | {what}, {num_envs} x {fields.get('num_steps', 128)} steps an update | {sps:,.0f} | "
                  f"{fraction} |")
      print(rows[-1], flush=True)
  return "\n".join(rows)


def learning_table(quick: bool) -> str:
  rows = ["| preset | steps | first step with eval >= 475 | final eval return | wall s |", "| --- | --- | --- | --- | --- |"]
  for preset in ("envpool:CartPole-v1", "gymnasium:CartPole-v1"):
    with tempfile.TemporaryDirectory() as scratch:
      workdir = os.path.join(scratch, "run")
      total = 20_480 if quick else 500_000
      start = time.time()
      out = subprocess.run([sys.executable, "-m", "distrl.launch", f"--config=ppo:{preset}", f"--workdir={workdir}",
                            f"--config.total_timesteps={total}"], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
      seconds = time.time() - start
      if out.returncode != 0:
        raise SystemExit(f"training {preset} failed:\n{out.stderr[-3000:]}")
      records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    evals = [r for r in records if "eval/return" in r]
    first = next((f"{r['step']:,}" for r in evals if r["eval/return"] >= 475), "not reached")
    rows.append(f"| ppo:{preset} | {records[-1]['step']:,} | {first} | {evals[-1]['eval/return']:.1f} | "
                f"{seconds:.0f} |")
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
