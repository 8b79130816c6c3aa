"""The suites' training throughput beside their raw ceiling, on 1 and 8 emulated devices, in one invocation.

  python benchmarks/suites.py                       # every suite row on 1 and 8 devices
  python benchmarks/suites.py --rows jumanji-snake --devices 1 2 --chunks 5

For each row and device count, a fresh process (XLA_FLAGS set for its device count, as in table.py) builds the
PPO program training runs (`programs.build`), compiles it, and times `--chunks` chunks after a warm-up chunk
(steps/s: the median chunk). Beside it, the raw ceiling: the same environments stepped with random actions
(`action_space.sample`: discrete or continuous) in one jitted scan, sharded the same way. train / raw is what the
learner costs on top of the environment. Sizes are CPU-sized (the presets' 1024-4096 environments are for an
accelerator): the rows say which.
"""

import argparse
import dataclasses
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import table  # noqa: E402  (its per-device-count worker environment and result parsing)


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


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
  parser.add_argument("--devices", type=int, nargs="+", default=[1, 8])
  parser.add_argument("--chunks", type=int, default=3, help="timed chunks (and ceiling scans) per measurement")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(measure(ROWS[args.worker], args.chunks)))
    return
  print("| suite row | preset | devices | envs x steps | PPO steps/s | raw steps/s | PPO / raw | vs 1 device | "
        "compile s | raw compile s |")
  print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
  for name in args.rows:
    first = None
    for devices in args.devices:
      command = [sys.executable, os.path.abspath(__file__), "--worker", name, "--chunks", str(args.chunks)]
      out = table._last_json(subprocess.run(command, env=table._env(devices), cwd=table.ROOT, capture_output=True,
                                            text=True))
      if "failed" in out:
        print(f"| {name} | {ROWS[name].preset} | {devices} | failed: {out['failed']} |||||||", flush=True)
        continue
      first = first or out
      print(f"| {name} | {ROWS[name].preset} | {devices} | {out['envs']} x {out['steps']} | {out['sps']:,.0f} | "
            f"{out['raw_sps']:,.0f} | {out['sps'] / out['raw_sps']:.2f} | {out['sps'] / first['sps']:.2f}x | "
            f"{out['compile_s']:.1f} | {out['raw_compile_s']:.1f} |", flush=True)


if __name__ == "__main__":
  main()
