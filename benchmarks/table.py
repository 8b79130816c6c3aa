"""The benchmark table: compile time, training throughput, its ceiling, and memory per config and device count.

  python benchmarks/table.py                      # every row below on 1, 2 and 8 emulated devices
  python benchmarks/table.py --rows ppo-default --devices 1 2 --repeats 5

For each row and device count a fresh process (with XLA_FLAGS set for that device count) builds
the config's state, compiles one chunk ahead of time (compile seconds), then times `--repeats`
chunks and reports the median training steps/s. The ceiling is the same environments stepped with
uniformly random actions in a jitted scan sharded the same way: the most steps/s this hardware
gives that config without any learning. Peak memory is the process's maximum resident set.
A row whose environment count does not divide over the devices is shown as such.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ROWS = {  # name: (shipped config, preset, overrides, chunk size in updates)
    "ppo-default": ("ppo", None, {}, 10),
    "ppo-256-envs": ("ppo", None, {"num_envs": 256}, 2),
    "dqn-default": ("dqn", None, {}, 500),
    "ppo-breakout-minatar": ("ppo", "Breakout-MinAtar", {}, 1),
}


def measure(config_name: str, preset: str | None, overrides: dict, chunk: int, repeats: int) -> dict:
  """Runs in the worker process: one row on this process's devices."""
  import importlib

  import jax
  import jax.numpy as jnp
  from jax.sharding import PartitionSpec as P

  from distrl import envs, sharding, trainer

  config = importlib.import_module(f"distrl.configs.{config_name}").get_config(preset)
  config.update(overrides)
  config.eval_episodes = jax.device_count()
  mesh = sharding.make_mesh()
  if config.num_envs % mesh.size:
    return {"skipped": f"{config.num_envs} envs do not split over {mesh.size} devices"}
  program = trainer.build(config, mesh)  # exactly what training runs
  sizes, env, runner = program.sizes, program.env, program.runner
  state = runner.put(program.state)
  start = time.perf_counter()
  runner.compile(state)
  compile_s = time.perf_counter() - start
  state, sums = runner(state, chunk)  # warm-up
  jax.block_until_ready(sums)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    state, sums = runner(state, chunk)
    jax.block_until_ready(sums)
    times.append(time.perf_counter() - start)
  sps = chunk * sizes.steps_per_update / statistics.median(times)

  # The ceiling: the same environments, random actions, one jitted scan per device.
  local, num_steps = config.num_envs // mesh.size, 1000

  def random_steps(key):
    obs, env_state, keys = envs.reset_batch(env, key, sharding.global_index(local))

    def step(env_state, step_key):
      action_key, env_key = jax.random.split(step_key)
      action = jax.random.randint(action_key, (local,), 0, env.num_actions)
      _, env_state, reward, _, _, _ = jax.vmap(env.step)(jax.random.split(env_key, local), env_state, action)
      return env_state, reward

    env_state, rewards = jax.lax.scan(step, sharding.per_device(env_state), jax.random.split(keys[0], num_steps))
    return sharding.psum(jnp.sum(rewards))

  raw = jax.jit(jax.shard_map(random_steps, mesh=mesh, in_specs=P(), out_specs=P()))
  jax.block_until_ready(raw(jax.random.PRNGKey(0)))
  raw_times = []
  for i in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(raw(jax.random.PRNGKey(i + 1)))
    raw_times.append(time.perf_counter() - start)
  raw_sps = config.num_envs * num_steps / statistics.median(raw_times)
  return {"compile_s": compile_s, "sps": sps, "raw_sps": raw_sps, "envs": config.num_envs,
          "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
  parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 8])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--worker", nargs=2, metavar=("ROW", "DEVICES"), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(measure(*ROWS[args.worker[0]], args.repeats)))
    return

  print(f"| config | devices | envs | compile s | steps/s | vs first | raw env steps/s | train / raw | peak MB |")
  print(f"| --- | --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
  for row in args.rows:
    first = None  # steps/s on the row's first device count: the ratio is taken within this one run
    for devices in args.devices:
      env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
             "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
      out = subprocess.run([sys.executable, __file__, "--worker", row, str(devices), "--repeats", str(args.repeats)],
                           env=env, cwd=ROOT, capture_output=True, text=True)
      if out.returncode != 0:
        print(f"| {row} | {devices} | failed: {out.stderr.strip().splitlines()[-1]} |", flush=True)
        continue
      r = json.loads(out.stdout.strip().splitlines()[-1])
      if "skipped" in r:
        print(f"| {row} | {devices} | {r['skipped']} | | | | | | |", flush=True)
        continue
      first = first or r["sps"]
      print(f"| {row} | {devices} | {r['envs']} | {r['compile_s']:.2f} | {r['sps']:,.0f} | {r['sps'] / first:.2f}x | "
            f"{r['raw_sps']:,.0f} | {r['sps'] / r['raw_sps']:.2f} | {r['peak_mb']:.0f} |", flush=True)


if __name__ == "__main__":
  main()
