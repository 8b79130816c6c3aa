"""DQN's distributional heads and Rainbow against DQN (issue 48): training steps/s of each on the same config.

  python benchmarks/distributional.py                 # CartPole-v1 and Breakout-MinAtar, 3 rounds (~10 min, 2 cores)
  python benchmarks/distributional.py --rounds 1 --results ''   # a quick look, nothing written

Each row is a shipped config with one change (`distributional`: C51's 51 atoms, QR-DQN's 51 quantiles), so that it
does the same work per step as DQN but for its head; Rainbow is `--config=rainbow` (its own settings: see its
`updates per step`). Every measurement runs in a fresh process on one CPU device: the program training builds,
warmed up past `learning_starts` and one chunk, then the median of `--chunks` chunks (`table.time_program`). A round
measures every row once; a row's ratio is the median over rounds of its steps/s over DQN's of the same round.
The table goes into benchmarks/RESULTS.md between its markers (`distributional.py`) unless `--results ''`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results_file  # noqa: E402
import table  # noqa: E402  (time_program, the worker environment and result parsing)

# name -> (config, preset, overrides, updates per timed chunk); each environment's dqn row is its ratios' baseline.
ROWS = {
    "dqn CartPole-v1": ("dqn", None, {}, 500),
    "c51 CartPole-v1": ("dqn", None, {"distributional": "c51"}, 500),
    "qr CartPole-v1": ("dqn", None, {"distributional": "qr"}, 500),
    "rainbow CartPole-v1": ("rainbow", None, {}, 200),
    "dqn Breakout-MinAtar": ("dqn", "Breakout-MinAtar", {}, 60),
    "c51 Breakout-MinAtar": ("dqn", "Breakout-MinAtar", {"distributional": "c51"}, 60),
    "qr Breakout-MinAtar": ("dqn", "Breakout-MinAtar", {"distributional": "qr"}, 60),
    "rainbow Breakout-MinAtar": ("rainbow", "Breakout-MinAtar", {}, 100),
}


def measure(name: str, chunks: int) -> dict:
  """Runs in a worker process: one row on this process's one device."""
  import importlib

  import jax

  from distrl import sharding
  from distrl.runtime import programs

  module, preset, overrides, chunk = ROWS[name]
  config = importlib.import_module(f"distrl.configs.{module}").get_config(preset)
  config.update(overrides)
  program = programs.build(config, sharding.make_mesh(jax.devices()[:1]))
  warmup = config.learning_starts // program.sizes.steps_per_update + 1  # past the exploration-only steps
  compile_s, sps = table.time_program(program, chunk, chunks, warmup)
  return {"sps": sps, "compile_s": compile_s,
          "updates_per_step": config.gradient_steps / config.train_frequency}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--chunks", type=int, default=3)
  parser.add_argument("--results", default=results_file.RESULTS, help="where the table goes ('' for nowhere)")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(measure(args.worker, args.chunks)))
    return
  if args.results:
    results_file.check(args.results, ["distributional.py"])
  runs = {name: [] for name in ROWS}
  for round_ in range(args.rounds):
    for name in ROWS:
      command = [sys.executable, os.path.abspath(__file__), "--worker", name, "--chunks", str(args.chunks)]
      result = table._last_json(subprocess.run(command, env=table._env(1), cwd=table.ROOT, capture_output=True,
                                               text=True))
      if "failed" in result:
        sys.exit(f"{name}: {result['failed']}")
      runs[name].append(result)
      print(f"round {round_ + 1}: {name}: {result['sps']:,.0f} steps/s", flush=True)
  text = _table(runs)
  print(text)
  if args.results:
    results_file.write(args.results, {"distributional.py": text})


def _table(runs: dict) -> str:
  lines = ["| row | gradient steps per env step | steps/s | / DQN's | compile s |", "| --- | --- | --- | --- | --- |"]
  for name, results in runs.items():
    baseline = runs[f"dqn {name.split(' ', 1)[1]}"]
    ratio = statistics.median(r["sps"] / b["sps"] for r, b in zip(results, baseline))
    lines.append(f"| {name} | {results[0]['updates_per_step']:g} | {statistics.median(r['sps'] for r in results):,.0f} "
                 f"| {ratio:.2f} | {statistics.median(r['compile_s'] for r in results):.1f} |")
  return "\n".join(lines)


if __name__ == "__main__":
  main()
