"""Training throughput from the command line, as a user runs it.

  python benchmarks/train_speed.py [--config ppo] [--devices 1 2 8] [--repeats 3] \
      [--flags --config.num_envs=8 ...]

For each device count, runs `python -m distrl.launch --config=CONFIG` `--repeats` times and
prints medians of: compile seconds, training steps/s (median chunk after the first), wall seconds from
the command to the first logged mean training return >= 475 (CartPole's bar), total wall
seconds, and peak resident memory (of the process this script waits on: process 0's launcher).
With `--processes P`, each run is P local processes of `--devices` devices (launch/local.sh).
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


def run_once(config: str, processes: int, devices: int, flags: list[str]) -> dict:
  """One run of `processes` processes with `devices` emulated devices each (launch/local.sh for several)."""
  workdir = tempfile.mkdtemp(prefix="distrl-bench-")
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "PYTHON": sys.executable}
  command = [sys.executable, "-m", "distrl.launch", f"--config={config}", f"--workdir={workdir}", *flags]
  if processes > 1:
    command = ["bash", "launch/local.sh", str(processes), str(devices), *command[3:]]
  start = time.perf_counter()
  proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
  to_475 = compile_s = None
  for line in proc.stdout:
    if compile_s is None and (m := re.search(r"compiled .* in ([\d.]+)s", line)):
      compile_s = float(m.group(1))
    if to_475 is None and (m := re.search(r"return ([\d.e+]+)", line)) and float(m.group(1)) >= 475:
      to_475 = time.perf_counter() - start
  _, status, usage = os.wait4(proc.pid, 0)
  if status != 0:
    raise SystemExit(f"run of {processes} x {devices} device(s) failed with status {status}")
  wall = time.perf_counter() - start
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  # Training throughput: the median chunk after the first (which warms up caches); evaluation and
  # logging between chunks are excluded here and included in the wall times.
  sps = statistics.median(r["perf/sps"] for r in records[1:]) if len(records) > 1 else records[0]["perf/sps"]
  return {"compile_s": compile_s, "sps": sps, "to_475_s": to_475, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def median(values):
  values = [v for v in values if v is not None]
  return statistics.median(values) if values else float("nan")


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="ppo", help="a shipped config (ppo, dqn:Acrobot-v1) or a config file")
  parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 8])
  parser.add_argument("--processes", type=int, default=1, help="processes per run, each with --devices devices")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--flags", nargs=argparse.REMAINDER, default=[], help="extra launcher flags")
  args = parser.parse_args()
  print(f"{'procs x devices':>15} {'compile s':>9} {'steps/s':>9} {'to 475 s':>8} {'wall s':>7} {'peak MB':>8}  "
        f"(median of {args.repeats}; {args.config} {' '.join(args.flags)})", flush=True)
  for devices in args.devices:
    runs = [run_once(args.config, args.processes, devices, args.flags) for _ in range(args.repeats)]
    row = {key: median([r[key] for r in runs]) for key in runs[0]}
    print(f"{f'{args.processes} x {devices}':>15} {row['compile_s']:>9.2f} {row['sps']:>9,.0f} {row['to_475_s']:>8.1f} "
          f"{row['wall_s']:>7.1f} {row['peak_rss_mb']:>8.0f}   runs: "
          + ", ".join(f"{r['sps']:,.0f}" for r in runs), flush=True)


if __name__ == "__main__":
  main()
