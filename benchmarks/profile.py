"""Where an update's time goes: the compiled training program of a benchmark row, split by part of the update.

  python benchmarks/profile.py                                   # ppo-default, dqn-default, ppo-minatar-mlp
  python benchmarks/profile.py --rows dqn-default --devices 1 --chunks 5
  python benchmarks/profile.py --rows ppo-rnn-4-envs ppo-rnn-4-envs-ff   # recurrent PPO and without memory

For each row of `benchmarks/table.py` or `benchmarks/recurrent.py` (the same config, built by `programs.build` as training builds it), in a
fresh process on `--devices` emulated devices: the chunk is compiled, warmed up, timed untraced over `--chunks`
chunks (steps/s, ms per update), then run again under JAX's profiler. Every operation XLA executed in the
program is attributed, by the named scope it was traced under (`jax.named_scope` in distrl: acting/policy,
acting/environment, advantages, minibatches, gradient, optimizer, replay_write, sampling, target, metrics), to a
part of the update; its share of the summed operation time, times the untraced ms per update, is that part's cost.
XLA fuses neighbouring operations: a fusion counts for the scope of its root, so the split is that close.
"Other" is what no scope names: the chunk's loop, normalisation, key splitting and metric sums. The host's work
between chunks (fetching metrics, logging) is not in the program; compare with `train_speed.py`.
"""

import argparse
import collections
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recurrent  # noqa: E402  (its rows: recurrent PPO and the same config without memory)
import table  # noqa: E402  (the rows, their worker environment and result parsing)

ROWS = {**table.ROWS, **recurrent.PROFILED}

# (part, the named-scope path that marks it), first match wins: acting's inner scopes before acting itself.
PARTS = [("acting: policy", "acting/(.*/)?policy"), ("acting: environment step", "acting/(.*/)?environment"),
         ("acting: keys, stacking", "acting"), ("replay write", "replay_write"), ("sampling", "sampling"),
         ("advantages / targets", "advantages"), ("minibatch gathering", "minibatches"),
         ("gradient (forward, backward, all-reduce)", "gradient"), ("optimizer", "optimizer"),
         ("target network", "target"), ("episode metrics", "metrics")]
# Their time is their body's operations': not counted twice. A `call` left in a compiled CPU program is a while
# loop compiled whole into one function (distrl/xla_options.py): its body's operations are not traced, so it counts.
CONTAINERS = {"while", "conditional"}


def part_of(op_name: str) -> str:
  for part, scope in PARTS:
    if re.search(rf"(^|/){scope}(/|$)", op_name):
      return part
  return "other (chunk loop, normalisation, keys, sums)"


def operations(hlo_text: str) -> dict[str, tuple[str, str]]:
  """{instruction name: (opcode, op_name metadata)} of a compiled module's text ("" -> its module name)."""
  module = re.match(r"HloModule ([\w.\-]+)", hlo_text)
  found = {"": ("module", module[1] if module else "")}
  for line in hlo_text.splitlines():
    match = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = .*? ([\w\-]+)\(.*?metadata=\{op_name=\"([^\"]*)\"", line)
    if match:
      found[match[1]] = (match[2], match[3])
  return found


def measure(name: str, chunks: int) -> dict:
  """Runs in a worker process: one row on this process's devices."""
  import importlib

  import jax
  from jax.profiler import ProfileData

  from distrl import sharding
  from distrl.runtime import programs

  row = ROWS[name]
  config = importlib.import_module(f"distrl.configs.{row.config}").get_config(row.preset)
  config.update(row.overrides)
  config.eval_episodes = jax.device_count()
  program = programs.build(config, sharding.make_mesh())
  runner = program.runner
  state = runner.put(program.state)
  runner.compile(state)
  for n in (row.warmup, row.chunk):
    state, sums, _ = runner(state, n)
    jax.block_until_ready(sums)
  start = time.perf_counter()
  for _ in range(chunks):
    state, sums, _ = runner(state, row.chunk)
    jax.block_until_ready(sums)
  ms_per_update = (time.perf_counter() - start) * 1000 / (chunks * row.chunk)

  ops = operations(runner.compiled_text())
  trace = tempfile.mkdtemp(prefix="distrl-profile-")
  jax.profiler.start_trace(trace)
  for _ in range(chunks):
    state, sums, _ = runner(state, row.chunk)
    jax.block_until_ready(sums)
  jax.profiler.stop_trace()
  (path,) = glob.glob(os.path.join(trace, "**", "*.xplane.pb"), recursive=True)
  total, module = collections.Counter(), ops.pop("")[1]
  for plane in ProfileData.from_file(path).planes:
    for line in plane.lines:
      for event in line.events:
        stats = dict(event.stats)
        op = ops.get(stats.get("hlo_op", "")) if stats.get("hlo_module") == module else None
        if op and op[0] not in CONTAINERS:
          total[part_of(op[1])] += event.duration_ns
  summed = sum(total.values())
  return {"ms_per_update": ms_per_update, "sps": program.sizes.steps_per_update / ms_per_update * 1000,
          "parts": {part: ns / summed for part, ns in total.most_common()}}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rows", nargs="+", default=["ppo-default", "dqn-default", "ppo-minatar-mlp"],
                      choices=list(ROWS))
  parser.add_argument("--devices", type=int, default=1)
  parser.add_argument("--chunks", type=int, default=3)
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(measure(args.worker, args.chunks)))
    return

  print("| row | devices | steps/s | ms/update | part | share | ms/update of it |")
  print("| --- | --- | --- | --- | --- | --- | --- |")
  for name in args.rows:
    command = [sys.executable, os.path.abspath(__file__), "--worker", name, "--chunks", str(args.chunks)]
    result = table._last_json(subprocess.run(command, env=table._env(args.devices), cwd=table.ROOT,
                                             capture_output=True, text=True))
    if "failed" in result:
      print(f"| {name} | {args.devices} | failed: {result['failed']} |||||", flush=True)
      continue
    for i, (part, share) in enumerate(result["parts"].items()):
      head = (f"| {name} | {args.devices} | {result['sps']:,.0f} | {result['ms_per_update']:.2f}" if i == 0
              else "| | | |")
      print(f"{head} | {part} | {share:.1%} | {share * result['ms_per_update']:.3f} |", flush=True)


if __name__ == "__main__":
  main()
