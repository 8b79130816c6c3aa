"""What agreeing on a stop costs: the one all-gather per call of the compiled chunk that a run of several processes
makes (`distrl.runtime.stopping.agree`), timed in 2 local processes of 4 emulated CPU devices each (gloo on loopback).

  python benchmarks/agreement.py [--processes 2] [--devices 4] [--calls 200]

Prints the median and 90th percentile microseconds per call, next to one PPO CartPole chunk call for scale.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker(port: int, processes: int, process_id: int, calls: int) -> None:
  import jax

  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(f"localhost:{port}", processes, process_id)
  from distrl.runtime import stopping

  stopping.agree(None, 5)  # warm-up: compiles the all-gather
  times = []
  for i in range(calls):
    start = time.perf_counter()
    stopping.agree(None, 5 + i % 3)
    times.append(time.perf_counter() - start)
  if process_id == 0:
    times.sort()
    print(f"agree(): median {1e6 * statistics.median(times):,.0f} us, p90 {1e6 * times[int(0.9 * len(times))]:,.0f} us "
          f"over {calls} calls, {processes} processes x {jax.local_device_count()} devices", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--processes", type=int, default=2)
  parser.add_argument("--devices", type=int, default=4)
  parser.add_argument("--calls", type=int, default=200)
  parser.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return worker(args.worker[0], args.processes, args.worker[1], args.calls)
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={args.devices}",
         "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
  runs = [subprocess.Popen([sys.executable, __file__, "--worker", str(port), str(i), "--processes", str(args.processes),
                            "--calls", str(args.calls)], env=env) for i in range(args.processes)]
  sys.exit(max(run.wait() for run in runs))


if __name__ == "__main__":
  main()
