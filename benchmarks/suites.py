"""The suites' training throughput beside their raw ceiling, on 1 and 8 emulated devices, in one invocation.

  python benchmarks/suites.py                       # every suite row on 1 and 8 devices
  python benchmarks/suites.py --rows jumanji-snake --devices 1 2 --chunks 5

For each row and device count, a fresh process (XLA_FLAGS set for its device count, as in table.py) builds the
PPO program training runs (`programs.build`), compiles it, and times `--chunks` chunks after a warm-up chunk
(steps/s: the median chunk). Beside it, the raw ceiling: the same environments stepped with random actions
(`action_space.sample`: discrete or continuous) in one jitted scan, sharded the same way. train / raw is what the
learner costs on top of the environment. Sizes are CPU-sized (the presets' 1024-4096 environments are for an
accelerator): the rows say which.

The table is printed, and written into benchmarks/RESULTS.md between its `suites.py` markers (results_file.py)
under a line giving the command, the machine and the date, only by a complete run: every row (no --rows). A partial
run prints its table and says that it did not write it; `--results PATH` writes it to PATH whatever ran.
"""

import argparse
import dataclasses
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results_file  # noqa: E402
import table  # noqa: E402  (its per-device-count worker environment and result parsing)

NAME = "suites.py"  # the table's markers in RESULTS.md


@dataclasses.dataclass(frozen=True)
class Row:
  preset: str  # a PPO preset of the suite
  overrides: dict  # CPU-sized: environments, rollout, network
  chunk: int  # updates per timed chunk
  raw_steps: int  # steps of each environment in the ceiling's scan


ROWS = {
    "brax-inverted-pendulum": Row("brax:inverted_pendulum", {
        "num_envs": 64, "num_steps": 32, "num_minibatches": 4, "update_epochs": 10, "hidden_sizes": (64, 64),
        "env_kwargs": {"backend": "spring", "episode_length": 1000}}, 10, 1000),
    "craftax-classic": Row("craftax:Craftax-Classic-Symbolic-v1", {"num_envs": 64, "num_steps": 16}, 10, 500),
    "jumanji-snake": Row("jumanji:Snake-v1", {}, 2, 500),
}


def measure(row: Row, chunks: int) -> dict:
  """Runs in a worker process: one row on this process's devices."""
  import jax

  from distrl import sharding
  from distrl.runtime import programs
  from distrl.configs import ppo as ppo_config

  config = ppo_config.get_config(row.preset)
  config.update(row.overrides)
  config.eval_episodes = jax.device_count()
  mesh = sharding.make_mesh()
  program = programs.build(config, mesh)
  compile_s, sps = table.time_program(program, row.chunk, chunks)
  raw_compile_s, raw_sps = table.raw_ceiling(program.env, config.num_envs, mesh, row.raw_steps, chunks)
  return {"compile_s": compile_s, "sps": sps, "raw_compile_s": raw_compile_s, "raw_sps": raw_sps,
          "envs": config.num_envs, "steps": config.num_steps}


def run_worker(name: str, devices: int, chunks: int) -> dict:
  """One row on `devices` emulated devices, in a fresh process: its measurement, or {"failed": why}."""
  command = [sys.executable, os.path.abspath(__file__), "--worker", name, "--chunks", str(chunks)]
  return table._last_json(subprocess.run(command, env=table._env(devices), cwd=table.ROOT, capture_output=True,
                                         text=True))


def throughput_table(results: dict, rows: list[str], devices: list[int]) -> str:
  """One line per row and device count from `results` ((row, devices) -> measurement); 'vs 1 device' is the ratio to
  the row's first device count that did not fail."""
  lines = ["| suite row | preset | devices | envs x steps | PPO steps/s | raw steps/s | PPO / raw | vs 1 device | "
           "compile s | raw compile s |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for name in rows:
    first = None
    for d in devices:
      out = results[name, d]
      if "failed" in out:
        lines.append(f"| {name} | {ROWS[name].preset} | {d} | failed: {out['failed']} |||||||")
        continue
      first = first or out
      lines.append(f"| {name} | {ROWS[name].preset} | {d} | {out['envs']} x {out['steps']} | {out['sps']:,.0f} | "
                   f"{out['raw_sps']:,.0f} | {out['sps'] / out['raw_sps']:.2f} | {out['sps'] / first['sps']:.2f}x | "
                   f"{out['compile_s']:.1f} | {out['raw_compile_s']:.1f} |")
  return "\n".join(lines)


def incomplete(args: argparse.Namespace) -> str | None:
  """Why this run does not make the published table (None if it does): some of the rows."""
  if set(args.rows) != set(ROWS):
    return f"--rows ran {len(set(args.rows))} of the {len(ROWS)} rows"
  return None


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
  parser.add_argument("--devices", type=int, nargs="+", default=[1, 8])
  parser.add_argument("--chunks", type=int, default=3, help="timed chunks (and ceiling scans) per measurement")
  parser.add_argument("--results", help="where the table goes, between its markers ('' for none; default: "
                                        "benchmarks/RESULTS.md for a complete run, else none)")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(measure(ROWS[args.worker], args.chunks)))
    return
  args.results = results_file.destination(args.results, incomplete(args))
  if args.results:  # before the measurements, not after
    results_file.check(args.results, [NAME])
  results = {}
  for name in args.rows:
    for devices in args.devices:
      results[name, devices] = run_worker(name, devices, args.chunks)
      print(f"{name} on {devices} device(s) measured", file=sys.stderr, flush=True)
  text = throughput_table(results, args.rows, args.devices)
  print(text)
  if args.results:
    results_file.write(args.results, {NAME: text})
  else:
    results_file.not_written(incomplete(args) or "--results ''")


if __name__ == "__main__":
  main()
