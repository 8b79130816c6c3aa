"""The value-based family's targets (issue 13), each measured from the command line as a user runs it.

  python benchmarks/value_based.py speed [--repeats 3]       # DQN CartPole steps/s vs the reference DQN, interleaved
  python benchmarks/value_based.py steady [--repeats 7]      # the same, steady state, alternated in one process
  python benchmarks/value_based.py returns [--algos dqn pqn] # final greedy evaluation, seeds 0-2, 1 and 2 devices
  python benchmarks/value_based.py to475 [--repeats 3]       # PQN vs PPO: command -> first logged return >= 475
  python benchmarks/value_based.py minatar [--steps 1e7]     # PQN vs PPO on the four MinAtar games (MLP torsos)

`speed` runs the reference single-file DQN (shared/reference/purejaxrl/dqn.py, which needs
`pip install flashbax==0.1.3 chex`; `--reference-python` names another interpreter that has them) and
distrl's DQN alternately, each in a fresh process on 1 CPU device, and prints every run and the medians.
The reference's steps/s is its whole run (compilation excluded, no evaluation); distrl's "train" steps/s
is the same: steps over the summed time of its chunks (compilation, evaluations and checkpoints
excluded), and "run" adds the evaluations and checkpoints (every time after compilation). Two distrl
configs are timed: the default, and `--config=dqn:CleanRL`, the reference's own settings (same network,
batch and gradient steps per environment step), so that the ratio at equal work is on the same line.
`steady` compiles the reference's training function (its own settings, 50,000 steps, learning from the start)
and distrl's chunk (5,000 updates, learning from the start) in one process and times them alternately: the
cost of a learning step, with no start-up, evaluation or exploration-only phase in either.
Speed ratios are only meaningful within one invocation.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(os.path.dirname(ROOT), "shared", "reference", "purejaxrl")
GAMES = ("Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar")


def _env(devices: int) -> dict:
  return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def distrl_run(config: str, flags=(), devices: int = 1) -> dict:
  """One `python -m distrl.launch` run: steps/s (train and run), seconds to the first return >= 475, final records."""
  workdir = tempfile.mkdtemp(prefix="distrl-vb-")
  command = [sys.executable, "-m", "distrl.launch", f"--config={config}", f"--workdir={workdir}", *flags]
  start = time.perf_counter()
  proc = subprocess.Popen(command, cwd=ROOT, env=_env(devices), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  to_475 = compile_s = None
  output = []
  for line in proc.stdout:
    output.append(line)
    if compile_s is None and (m := re.search(r"compiled .* in ([\d.]+)s", line)):
      compile_s = float(m.group(1))
    if to_475 is None and (m := re.search(r"return ([\d.e+]+)", line)) and float(m.group(1)) >= 475:
      to_475 = time.perf_counter() - start
  if proc.wait() != 0:
    raise SystemExit(f"{' '.join(command)} failed:\n{''.join(output[-20:])}")
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  steps = [r["step"] - p["step"] for p, r in zip([{"step": 0}] + records[:-1], records)]
  train_s = sum(n / r["perf/sps"] for n, r in zip(steps, records))
  return {"train_sps": records[-1]["step"] / train_s, "run_sps": records[-1]["step"] / (records[-1]["time"] - compile_s),
          "to_475_s": to_475, "wall_s": time.perf_counter() - start, "last": records[-1]}


def reference_run(python: str) -> dict:
  out = subprocess.run([python, "dqn.py"], cwd=REFERENCE, env={**_env(1), "PYTHONPATH": REFERENCE},
                       capture_output=True, text=True, check=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def speed(args) -> None:
  rows = {"reference dqn.py": [], "distrl --config=dqn": [], "distrl --config=dqn:CleanRL": []}
  runs = {"distrl --config=dqn": "dqn", "distrl --config=dqn:CleanRL": "dqn:CleanRL"}
  for repeat in range(args.repeats):
    rows["reference dqn.py"].append({"train_sps": reference_run(args.reference_python)["sps"]})
    for name, config in runs.items():
      rows[name].append(distrl_run(config))
    print(f"round {repeat + 1}: " + ", ".join(f"{name} {r[-1]['train_sps']:,.0f}" for name, r in rows.items()),
          flush=True)
  reference = statistics.median(r["train_sps"] for r in rows["reference dqn.py"])
  print(f"{'':30s} {'train steps/s':>13} {'vs reference':>12} {'run steps/s':>11}   (medians of {args.repeats})")
  for name, results in rows.items():
    train = statistics.median(r["train_sps"] for r in results)
    run = statistics.median(r.get("run_sps", r["train_sps"]) for r in results)
    print(f"{name:30s} {train:13,.0f} {train / reference:11.2f}x {run:11,.0f}")


def steady(args) -> None:
  os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
  sys.path.insert(0, REFERENCE)
  import jax
  import dqn as reference  # noqa: E402  (shared/reference/purejaxrl/dqn.py)
  from distrl import sharding
  from distrl.runtime import programs
  from distrl.configs import dqn as dqn_config

  steps = 50_000
  # The reference's own settings (its main()), learning from the start.
  settings = {"NUM_ENVS": 10, "BUFFER_SIZE": 10000, "BUFFER_BATCH_SIZE": 128, "TOTAL_TIMESTEPS": steps,
              "EPSILON_START": 1.0, "EPSILON_FINISH": 0.05, "EPSILON_ANNEAL_TIME": 25e4, "TARGET_UPDATE_INTERVAL": 500,
              "LR": 2.5e-4, "LEARNING_STARTS": 0, "TRAINING_INTERVAL": 10, "LR_LINEAR_DECAY": False, "GAMMA": 0.99,
              "TAU": 1.0, "ENV_NAME": "CartPole-v1", "SEED": 0, "NUM_SEEDS": 1}
  key = jax.random.PRNGKey(0)
  reference_train = jax.jit(reference.make_train(settings)).lower(key).compile()
  timed = {"reference dqn.py": lambda: jax.block_until_ready(reference_train(key))}
  for name, preset in (("distrl --config=dqn", None), ("distrl --config=dqn:CleanRL", "CleanRL")):
    config = dqn_config.get_config(preset)
    config.learning_starts = 0
    program = programs.build(config, sharding.make_mesh(jax.devices()[:1]))
    runner, box = program.runner, {"state": program.runner.put(program.state)}
    runner.compile(box["state"])

    def run(runner=runner, box=box, updates=steps // program.sizes.steps_per_update):
      box["state"] = runner(box["state"], updates).state
      jax.block_until_ready(box["state"])

    timed[name] = run
  times = {name: [] for name in timed}
  for repeat in range(args.repeats + 1):
    for name, run in timed.items():
      start = time.perf_counter()
      run()
      if repeat:  # the first round warms up
        times[name].append(time.perf_counter() - start)
  reference_sps = steps / statistics.median(times["reference dqn.py"])
  for name, values in times.items():
    sps = steps / statistics.median(values)
    print(f"{name:30s} {sps:10,.0f} steps/s {sps / reference_sps:6.2f}x   (runs: "
          + ", ".join(f"{steps / v:,.0f}" for v in values) + ")")


def returns(args) -> None:
  """Final greedy evaluation of seeds 0-2 (one 3-agent run: each agent equals its seed's run) on 1 and 2 devices."""
  for algo in args.algos:
    for devices in (1, 2):
      result = distrl_run(algo, ["--config.num_seeds=3"], devices)
      final = [result["last"][f"eval/return/seed_{s}"] for s in range(3)]
      print(f"{algo} CartPole-v1, {devices} device(s): final greedy evaluation per seed {final} "
            f"({result['wall_s']:.0f} s)", flush=True)


def to475(args) -> None:
  times = {"ppo": [], "pqn": []}
  for _ in range(args.repeats):
    for config in times:
      times[config].append(distrl_run(config)["to_475_s"])
  for config, values in times.items():
    known = [v for v in values if v is not None]
    print(f"{config}: command -> first logged return >= 475: median {statistics.median(known):.1f} s "
          f"(runs: {', '.join('never' if v is None else f'{v:.1f}' for v in values)})")


def minatar(args) -> None:
  """PQN's and PPO's MinAtar presets with MLP torsos (the CNNs are slow on a CPU) at the same budget."""
  steps = int(float(args.steps))
  for game in args.games:
    for algo in ("pqn", "ppo"):
      flags = ["--config.torso=mlp", f"--config.total_timesteps={steps}", *args.flags]
      result = distrl_run(f"{algo}:{game}", flags)
      last = result["last"]
      print(f"{game} {algo}: final train return {last.get('train/episode_return', float('nan')):.1f}, final greedy "
            f"evaluation {last['eval/return']:.1f} at {last['step']:,} steps ({result['wall_s'] / 60:.0f} min)",
            flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="target", required=True)
  p = sub.add_parser("speed")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--reference-python", default=sys.executable, help="an interpreter with flashbax==0.1.3 and chex")
  p = sub.add_parser("steady")
  p.add_argument("--repeats", type=int, default=7)
  p = sub.add_parser("returns")
  p.add_argument("--algos", nargs="+", default=["dqn", "pqn"])
  p = sub.add_parser("to475")
  p.add_argument("--repeats", type=int, default=3)
  p = sub.add_parser("minatar")
  p.add_argument("--steps", default="1e7")
  p.add_argument("--games", nargs="+", default=list(GAMES))
  p.add_argument("--flags", nargs=argparse.REMAINDER, default=[], help="extra launcher flags for both algorithms")
  args = parser.parse_args()
  {"speed": speed, "steady": steady, "returns": returns, "to475": to475, "minatar": minatar}[args.target](args)


if __name__ == "__main__":
  main()
