"""The benchmark tables: distrl beside the single-file reference, device scaling, and command -> return 475.

  python benchmarks/table.py                     # every table (about half an hour on 2 cores)
  python benchmarks/table.py --quick             # a smoke run: short runs of every part, one round
  python benchmarks/table.py --rows ppo-default --devices 1 2 --rounds 5

Machines differ (AVX-512 or not, other work on them), so every number here is taken in this one
invocation, and the ratios are taken within each round: a round measures every row and device count
once, the reference runs right after distrl's 1-device measurement of its row, and the ratio printed
is the median over rounds of the round's ratio.

1. **distrl / reference**: training steps/s of distrl's config on 1 device against the reference
   (`../shared/reference/purejaxrl/`, PureJaxRL's single-file PPO and DQN, run from there, never
   copied) on the same config: same environment, environments, rollout length, epochs, minibatches
   and network; except `dqn-default`, distrl's default DQN (a lighter learner than the reference's: a 64-64
   network, batches of 64) against the reference's own settings, which `dqn-cleanrl` runs in distrl.
   distrl's steps/s is the median of `--chunks` compiled chunks after a warm-up chunk; the reference's
   is its whole run (one jitted program, compile excluded) over its steps. Rows whose reference cannot
   run (no `../shared`, or flashbax missing for DQN) say why.
2. **Device scaling**: each row on 1, 2 and 8 emulated devices, as-is and with one thread per
   device (`--xla_cpu_multi_thread_eigen=false`: each device's operations run on the thread
   that runs the device). On 2 cores one device's matrix products use both cores as-is, so N devices
   cannot be N times faster; with one thread per device N devices vs 1 shows what sharding costs
   (the ideal is min(N, cores)). Beside them: the raw ceiling (the same environments stepped with
   random actions in a jitted scan sharded the same way), training / raw, compile seconds and peak
   memory, as-is.
3. **Command -> return 475**: `python -m distrl.launch --config=ppo` from the command to its first
   logged mean training return >= 475 (imports, compile and evaluation included), with JAX's
   persistent compilation cache empty (cold) and filled (warm), against the reference's
   compile + run seconds (and its whole process) on the same config.

Every measurement runs in a fresh process with XLA_FLAGS set for its device count and mode; distrl's workers add
distrl's own XLA option when they import it (distrl/xla_options.py), the reference runs with XLA's defaults.

The tables are printed, and each is written into benchmarks/RESULTS.md between its markers (`table.py reference`,
`table.py scaling`, `table.py 475`; results_file.py) under a line giving the command, the machine and the date,
only by a complete run: every row (no --rows), not --quick (--no-475 leaves the 475 table as it was). A partial run
prints its tables and says that it did not write them; `--results PATH` writes them to PATH whatever ran.
"""

import argparse
import dataclasses
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(ROOT, "benchmarks") not in sys.path:  # results_file, beside this script, when it is loaded by path
  sys.path.append(os.path.join(ROOT, "benchmarks"))
import results_file  # noqa: E402
REFERENCE = os.path.join(os.path.dirname(ROOT), "shared", "reference", "purejaxrl")  # ../shared beside the repo
MODES = {"as-is": "", "1 thread/device": "--xla_cpu_multi_thread_eigen=false"}


@dataclasses.dataclass(frozen=True)
class Row:
  config: str  # a shipped config
  preset: str | None
  overrides: dict
  chunk: int  # updates per timed chunk
  reference: tuple[str, ...] | None  # the reference script and its arguments on the same config
  warmup: int = 0  # updates run before timing (besides one chunk), e.g. to get past DQN's learning_starts


ROWS = {
    "ppo-default": Row("ppo", None, {}, 20, ("ppo.py", "CartPole-v1")),
    "ppo-256-envs": Row("ppo", None, {"num_envs": 256}, 4, ("ppo.py", "CartPole-v1", "NUM_ENVS=256",
                                                             "TOTAL_TIMESTEPS=4e6")),
    "dqn-default": Row("dqn", None, {}, 500, ("dqn.py",), warmup=1000),  # learning starts at 10,000 steps
    # The reference's own DQN settings (its 120-84 network, batches of 128, one-step targets, constant step size):
    # the same work per step as the reference; distrl's default is a lighter learner (64-64, batches of 64).
    "dqn-cleanrl": Row("dqn", "CleanRL", {}, 500, ("dqn.py",), warmup=1000),
    # PureJaxRL's MinAtar settings with its MLP (two hidden layers of 64); shortened runs (steps/s does not
    # depend on the length).
    "ppo-minatar-mlp": Row("ppo", "Breakout-MinAtar-mlp", {}, 1, ("ppo.py", "Breakout-MinAtar", "TOTAL_TIMESTEPS=1e6")),
    "ppo-minatar-cnn": Row("ppo", "Breakout-MinAtar", {}, 1, None),
}
QUICK_REFERENCE = {"ppo.py": ["TOTAL_TIMESTEPS=2e4"], "dqn.py": []}  # --quick: short reference runs


def time_program(program, chunk: int, chunks: int, warmup: int = 0) -> tuple[float, float]:
  """(compile seconds, training steps/s) of a built program: the median of `chunks` chunks of `chunk` updates,
  after `warmup` updates and one chunk."""
  import jax

  runner = program.runner
  state = runner.put(program.state)
  start = time.perf_counter()
  runner.compile(state)
  compile_s = time.perf_counter() - start
  for n in (warmup, chunk):  # warm-up
    state, sums, _ = runner(state, n)
    jax.block_until_ready(sums)
  times = []
  for _ in range(chunks):
    start = time.perf_counter()
    state, sums, _ = runner(state, chunk)
    jax.block_until_ready(sums)
    times.append(time.perf_counter() - start)
  return compile_s, chunk * program.sizes.steps_per_update / statistics.median(times)


def raw_ceiling(env, num_envs: int, mesh, steps: int, chunks: int) -> tuple[float, float]:
  """(compile seconds, steps/s) of the same environments stepped with random actions (`action_space.sample`:
  discrete or continuous) in one jitted scan per device, sharded as training shards them."""
  import jax
  import jax.numpy as jnp
  from jax.sharding import PartitionSpec as P

  from distrl import envs, sharding

  local = num_envs // mesh.size

  def random_steps(key):
    _, env_state, keys = envs.reset_batch(env, key, sharding.global_index(local))

    def step(env_state, step_key):
      action_key, env_key = jax.random.split(step_key)
      action = jax.vmap(env.action_space.sample)(jax.random.split(action_key, local))
      obs, env_state, reward, _, _, _ = env.step_batch(jax.random.split(env_key, local), env_state, action)
      # The observations too: a constant reward (inverted_pendulum's 1 a step) alone would let XLA drop the physics.
      return env_state, jnp.sum(reward) + sum(jnp.sum(x) for x in jax.tree.leaves(obs))

    env_state, totals = jax.lax.scan(step, env_state, jax.random.split(keys[0], steps))
    return sharding.psum(jnp.sum(totals))

  raw = jax.jit(sharding.shard_map(random_steps, mesh, in_specs=P(), out_specs=P()))
  start = time.perf_counter()
  jax.block_until_ready(raw(jax.random.PRNGKey(0)))
  compile_s = time.perf_counter() - start
  times = []
  for i in range(chunks):
    start = time.perf_counter()
    jax.block_until_ready(raw(jax.random.PRNGKey(i + 1)))
    times.append(time.perf_counter() - start)
  return compile_s, num_envs * steps / statistics.median(times)


def measure(row: Row, chunks: int) -> dict:
  """Runs in a worker process: one row on this process's devices (XLA_FLAGS set by the caller)."""
  import importlib

  import jax

  from distrl import sharding
  from distrl.runtime import programs

  config = importlib.import_module(f"distrl.configs.{row.config}").get_config(row.preset)
  config.update(row.overrides)
  config.eval_episodes = jax.device_count()
  mesh = sharding.make_mesh()
  if config.num_envs % mesh.size:
    return {"skipped": f"{config.num_envs} envs do not split over {mesh.size} devices"}
  program = programs.build(config, mesh)  # exactly what training runs
  compile_s, sps = time_program(program, row.chunk, chunks, row.warmup)
  _, raw_sps = raw_ceiling(program.env, config.num_envs, mesh, 1000, chunks)
  return {"compile_s": compile_s, "sps": sps, "raw_sps": raw_sps, "envs": config.num_envs,
          "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _env(devices: int, mode: str = "as-is") -> dict:
  flags = f"--xla_force_host_platform_device_count={devices} {MODES[mode]}".strip()
  return {**os.environ, "XLA_FLAGS": flags, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _last_json(out: subprocess.CompletedProcess) -> dict:
  if out.returncode != 0:
    lines = (out.stderr or out.stdout).strip().splitlines()
    return {"failed": lines[-1] if lines else f"exit status {out.returncode}"}
  return json.loads(out.stdout.strip().splitlines()[-1])


def run_distrl(name: str, devices: int, mode: str, chunks: int) -> dict:
  command = [sys.executable, os.path.abspath(__file__), "--worker", name, "--chunks", str(chunks)]
  return _last_json(subprocess.run(command, env=_env(devices, mode), cwd=ROOT, capture_output=True, text=True))


def reference_missing(script: str) -> str | None:
  """Why the reference `script` cannot run here, or None."""
  if not os.path.isdir(REFERENCE):
    return f"no reference: {REFERENCE} is absent (the repository is cloned with shared/ beside it)"
  if script == "dqn.py":
    try:
      import flashbax  # noqa: F401  (the reference DQN's replay buffer)
    except ImportError:
      return "the reference DQN needs flashbax: pip install flashbax==0.1.3 chex"
  return None


def run_reference(args: tuple[str, ...], quick: bool) -> dict:
  """The reference script on its config, on 1 device, from its own folder: its JSON line, plus the process's wall."""
  script, *rest = args
  if quick:
    rest = [a for a in rest if not a.startswith("TOTAL_TIMESTEPS=")] + QUICK_REFERENCE[script]
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "PYTHONPATH": REFERENCE}
  start = time.perf_counter()
  out = subprocess.run([sys.executable, script, *rest], env=env, cwd=REFERENCE, capture_output=True, text=True)
  result = _last_json(out)
  result["process_s"] = time.perf_counter() - start
  return result


def to_475(cold: bool) -> dict:
  """Seconds from `python -m distrl.launch --config=ppo` to its first logged training return >= 475, on 1 device."""
  workdir = tempfile.mkdtemp(prefix="distrl-bench-")
  cache = [f"--compilation_cache={tempfile.mkdtemp(prefix='distrl-cache-')}"] if cold else []
  command = [sys.executable, "-m", "distrl.launch", "--config=ppo", f"--workdir={workdir}", *cache]
  start = time.perf_counter()
  proc = subprocess.Popen(command, cwd=ROOT, env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  seconds = None
  for line in proc.stdout:
    if seconds is None and (m := re.search(r"return ([\d.e+-]+)", line)) and float(m.group(1)) >= 475:
      seconds = time.perf_counter() - start
  proc.wait()
  return {"seconds": seconds, "wall_s": time.perf_counter() - start}


def median(values):
  values = [v for v in values if v is not None]
  return statistics.median(values) if values else None


def _fmt(value, spec=",.0f", suffix=""):
  return "" if value is None else f"{value:{spec}}{suffix}"


REFERENCE_TABLE, SCALING_TABLE, TABLE_475 = "table.py reference", "table.py scaling", "table.py 475"  # their markers
CAPTIONS = {
    REFERENCE_TABLE: "**distrl / reference** (1 device, steps/s; ratio: median over rounds of each round's ratio)",
    SCALING_TABLE: "**Device scaling** (steps/s, medians over rounds; 'vs 1' is the median of each round's ratio to 1 "
                   "device in the same mode; ideal with one thread per device: min(N, cores))",
    TABLE_475: "**Command -> first logged return >= 475** (PPO CartPole default, 1 device, seconds, medians over "
               "rounds)",
}


def reference_table(results: dict, rows: list[str], mode: str, rounds) -> str:
  """distrl beside the reference, on 1 device in `mode`: one line per row."""
  lines = ["| config | distrl steps/s | reference steps/s | distrl / reference | distrl compile s | "
           "reference compile s |",
           "| --- | --- | --- | --- | --- | --- |"]
  for name in rows:
    row = ROWS[name]
    ours = [results[name, 1, mode, r] for r in rounds]
    sps = median([o.get("sps") for o in ours])
    compile_s = median([o.get("compile_s") for o in ours])
    why = "no reference for this config" if row.reference is None else reference_missing(row.reference[0])
    if why:
      lines.append(f"| {name} | {_fmt(sps)} | {why} | | {_fmt(compile_s, '.1f')} | |")
      continue
    theirs = [results[name, "reference", r] for r in rounds]
    ratios = [o["sps"] / t["sps"] for o, t in zip(ours, theirs) if "sps" in o and "sps" in t]
    failed = next((x["failed"] for x in ours + theirs if "failed" in x), "")
    lines.append(f"| {name} | {_fmt(sps)} | {_fmt(median([t.get('sps') for t in theirs]))} | "
                 f"{_fmt(median(ratios), '.2f', 'x')} {failed} | {_fmt(compile_s, '.1f')} | "
                 f"{_fmt(median([t.get('compile_s') for t in theirs]), '.1f')} |")
  return "\n".join(lines)


def scaling_table(results: dict, rows: list[str], devices: list[int], modes: list[str], rounds) -> str:
  """Each row on each device count: steps/s in each mode and its ratio to 1 device, beside the raw ceiling."""
  header = " | ".join(f"{m} steps/s | vs 1" for m in modes)
  lines = [f"| config | devices | envs | {header} | raw env steps/s | train / raw | compile s | peak MB |",
           "| --- | --- | --- | " + " | ".join("--- | ---" for _ in modes) + " | --- | --- | --- | --- |"]
  for name in rows:
    for d in devices:
      cells, first = [], results[name, d, modes[0], rounds[0]]
      if "skipped" in first or "failed" in first:
        lines.append(f"| {name} | {d} | {first.get('skipped') or 'failed: ' + first['failed']} |")
        continue
      for mode in modes:
        runs = [results[name, d, mode, r] for r in rounds]
        ones = [results[name, 1, mode, r] for r in rounds]
        vs = [x["sps"] / o["sps"] for x, o in zip(runs, ones) if "sps" in x and "sps" in o]
        cells.append(f"{_fmt(median([x.get('sps') for x in runs]))} | {_fmt(median(vs), '.2f', 'x')}")
      runs = [results[name, d, modes[0], r] for r in rounds]
      sps, raw = median([x.get("sps") for x in runs]), median([x.get("raw_sps") for x in runs])
      lines.append(f"| {name} | {d} | {first['envs']} | {' | '.join(cells)} | {_fmt(raw)} | "
                   f"{_fmt(None if sps is None or not raw else sps / raw, '.3f')} | "
                   f"{_fmt(median([x.get('compile_s') for x in runs]), '.1f')} | "
                   f"{_fmt(median([x.get('peak_mb') for x in runs]))} |")
  return "\n".join(lines)


def to_475_table(results: dict, rounds) -> str:
  """distrl's command -> return 475, cold and warm, beside the reference's compile + run and its whole process."""
  cold = median([results["475", True, r]["seconds"] for r in rounds])
  warm = median([results["475", False, r]["seconds"] for r in rounds])
  theirs = [results["475", "reference", r] for r in rounds]
  return "\n".join([
      "| distrl cold cache | distrl warm cache | reference compile + run | reference process |",
      "| --- | --- | --- | --- |",
      f"| {_fmt(cold, '.1f')} | {_fmt(warm, '.1f')} | "
      f"{_fmt(median([t.get('compile_s', 0) + t.get('run_s', 0) for t in theirs if 'run_s' in t]), '.1f')} | "
      f"{_fmt(median([t['process_s'] for t in theirs]), '.1f')} |"])


def make_tables(results: dict, rows: list[str], devices: list[int], modes: list[str], rounds,
                to_475: bool) -> dict[str, str]:
  """The run's tables by marker name, in the order printed: what is printed is what is written."""
  rounds = list(rounds)
  tables = {REFERENCE_TABLE: reference_table(results, rows, modes[0], rounds),
            SCALING_TABLE: scaling_table(results, rows, devices, modes, rounds)}
  if to_475:
    tables[TABLE_475] = to_475_table(results, rounds)
  return tables


def incomplete(args: argparse.Namespace) -> str | None:
  """Why this run does not make the published tables (None if it does): a smoke run or some of the rows."""
  if args.quick:
    return "a --quick run"
  if set(args.rows) != set(ROWS):
    return f"--rows ran {len(set(args.rows))} of the {len(ROWS)} rows"
  return None


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
  parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 8])
  parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
  parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every measurement")
  parser.add_argument("--chunks", type=int, default=3, help="timed chunks per distrl measurement")
  parser.add_argument("--no-475", dest="to_475", action="store_false", help="skip command -> return 475")
  parser.add_argument("--quick", action="store_true", help="one round, short reference runs, no 475 (a smoke run)")
  parser.add_argument("--results", help="where the tables go, each between its markers ('' for none; default: "
                                        "benchmarks/RESULTS.md for a complete run, else none)")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(measure(ROWS[args.worker], args.chunks)))
    return
  if args.quick:
    args.rounds, args.chunks, args.to_475 = 1, 1, False
  args.results = results_file.destination(args.results, incomplete(args))
  if args.results:  # before half an hour of measurements, not after
    results_file.check(args.results, [REFERENCE_TABLE, SCALING_TABLE] + [TABLE_475] * args.to_475)

  devices = sorted(set(args.devices) | {1})  # every ratio is to 1 device
  results = {}  # (row, devices, mode, round) -> distrl result; (row, "reference", round) -> reference result
  for r in range(args.rounds):
    for name in args.rows:
      row = ROWS[name]
      for d in devices:
        for mode in args.modes:
          results[name, d, mode, r] = run_distrl(name, d, mode, args.chunks)
        if d == 1 and row.reference and not reference_missing(row.reference[0]):
          results[name, "reference", r] = run_reference(row.reference, args.quick)
      print(f"round {r + 1}/{args.rounds}: {name} measured", file=sys.stderr, flush=True)
    if args.to_475:
      for cold in (True, False):
        results["475", cold, r] = to_475(cold)
      results["475", "reference", r] = run_reference(ROWS["ppo-default"].reference, quick=False)

  tables = make_tables(results, args.rows, devices, args.modes, range(args.rounds), args.to_475)
  for name, text in tables.items():
    print(f"\n{CAPTIONS[name]}\n\n{text}")
  if args.results:
    results_file.write(args.results, tables)
  else:
    results_file.not_written(incomplete(args) or "--results ''")


if __name__ == "__main__":
  main()
