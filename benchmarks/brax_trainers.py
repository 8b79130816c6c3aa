"""Brax's own trainers beside distrl's, on the same Brax environment and machine, in one invocation.

  python benchmarks/brax_trainers.py                  # both pairs (10-25 min on a 2-core CPU)
  python benchmarks/brax_trainers.py --pairs sac --results ''
  python benchmarks/brax_trainers.py --quick          # tiny budgets (~4 min, mostly compiling): the pipeline only

Pairs, on Brax's inverted_pendulum (positional backend, episodes of at most 1,000 steps, the same seed):
- ppo: `brax.training.agents.ppo.train` with the settings of Brax's training colab (2048 environments, unrolls of 5,
  batches of 1024 x 32 minibatches, 4 epochs, discount 0.97, lr 3e-4, entropy 1e-2, normalised observations, reward
  scaling 10) against `--config=ppo:brax:inverted_pendulum`, which maps them onto distrl's fields (configs/ppo.py):
  the same samples per update and the same budget, 12 updates of 163,840 steps. Brax's PPO runs twice: with
  distrl's networks (policy and value MLPs of 64-64, tanh), the pair the ratio is taken against, and with its own
  (policy 4x32, value 5x256, swish), as the colab trains it. The policies still differ: Brax's is a tanh-squashed
  Gaussian, distrl's PPO a Gaussian.
- sac: `brax.training.agents.sac.train` against `--config=sac:brax:inverted_pendulum`, both set from one CPU-sized
  dict (`SAC`): 64 environments, 32 gradient steps of batches of 256 per step of every environment (Brax's
  grad_updates_per_step; distrl's train_frequency=64, gradient_steps=32), 64-64 ReLU networks, lr 6e-4 for actor and
  critics, discount 0.97, tau 0.005, normalised observations, 8,192 steps before learning, a replay of 131,072,
  target entropy -0.5 |A| (Brax's, fixed; distrl's target_entropy_per_dim=-0.5), no reward scale.
Brax's budget is given so that its epochs end where distrl's are counted (`num_evals - 1` epochs of whole
iterations): the steps are the same on both sides, and so are the evaluations between them (128 episodes each,
Brax's `deterministic_eval=True`, distrl's greedy mean action), Brax adding one at step 0; Brax's SAC evaluates
after its replay prefill, min_replay_size steps after distrl's. distrl writes one checkpoint, at the end.

Each run is a fresh process, timed from its start to its exit (imports included), with XLA_FLAGS giving one CPU
device (distrl adds its own option when imported, distrl/xla_options.py) and no persistent compilation cache.
"compile s" is the wall time during which JAX traced, lowered or compiled (the union of its `jaxpr_trace`,
`jaxpr_to_mlir_module` and `backend_compile` spans, which overlap where distrl compiles two programs at once): read
from JAX's own log (JAX_LOG_COMPILES) for distrl's launcher, from a listener on the same spans in Brax's worker.
"train steps/s" leaves out compilation and evaluation: distrl's `perf/sps` over the log intervals after
learning_starts, Brax's `training/sps` over its epochs after the first (which compiles). The ratio column is distrl
over the Brax row beside it, for train steps/s and for steps per second of the wall time without compile. "load"
is the 1-minute load average before and after the run: on a shared machine only ratios of runs taken together
mean much.

The table is printed, and written into benchmarks/RESULTS.md between its `brax-trainers` markers (results_file.py)
under a line giving the command, the machine and the date, only by a complete run: both pairs, not --quick. A
partial run prints its table and says that it did not write it; `--results PATH` writes it to PATH whatever ran.
"""

import argparse
import dataclasses
import functools
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # distrl's configs, beside benchmarks/
  sys.path.insert(0, ROOT)
if os.path.join(ROOT, "benchmarks") not in sys.path:  # results_file, beside this script
  sys.path.append(os.path.join(ROOT, "benchmarks"))
import results_file  # noqa: E402

NAME = "brax-trainers"  # the table's markers in RESULTS.md
ENV, BACKEND, EPISODE_LENGTH = "inverted_pendulum", "positional", 1000
SOLVED = 1000.0  # inverted_pendulum's maximum return: the pole up for all 1,000 steps
XLA_FLAGS = "--xla_force_host_platform_device_count=1"  # both sides on one CPU device
BRAX_PMAP_AXIS = "i"  # the axis name Brax's trainers pmap over (`_PMAP_AXIS_NAME` in each train.py)
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")
# JAX's log line of the same spans (JAX_LOG_COMPILES): its end time (absl's prefix) and its duration.
COMPILE_LOG = re.compile(r"^\w\d{4} (\d\d):(\d\d):(\d\d\.\d+) .*\] Finished (?:tracing|jaxpr to MLIR module conversion|"
                         r"XLA compilation) .* in ([\d.e+-]+) sec")
DISTRL_EVAL = re.compile(r"step ([\d,]+)/[\d,]+ .*\| eval ")

# The SAC pair's settings, CPU-sized (a run of either side takes 2-4 minutes on 2 cores): Brax's names, mapped onto
# distrl's fields in `sac_pair`. Budget: about 150k steps, where both reach the maximum return in ~50-70k.
SAC = {"num_envs": 64, "grad_updates_per_step": 32, "batch_size": 256, "hidden_layer_sizes": (64, 64),
       "learning_rate": 6e-4, "discounting": 0.97, "tau": 0.005, "min_replay_size": 8192,
       "max_replay_size": 131_072, "num_evals": 11, "num_eval_envs": 128, "budget": 150_000}
SAC_QUICK = {**SAC, "num_envs": 16, "grad_updates_per_step": 4, "batch_size": 64, "min_replay_size": 512,
             "max_replay_size": 4096, "num_evals": 3, "num_eval_envs": 16, "budget": 4096}


@dataclasses.dataclass(frozen=True)
class Run:
  """One side of a pair: distrl's launcher flags, or the Brax worker's spec (agent, train kwargs, networks)."""

  trainer: str  # the table's name for it
  flags: tuple[str, ...] = ()  # distrl: `python -m distrl.launch` flags
  brax: dict | None = None  # Brax: {"agent": "ppo" | "sac", "kwargs": {...}, "networks": {...} | None}
  learning_starts: int = 0  # distrl: steps before learning, left out of its train steps/s


@dataclasses.dataclass(frozen=True)
class Pair:
  name: str
  runs: tuple[Run, ...]  # distrl's first, then Brax's; the ratios are distrl over each Brax run


def ppo_pair(seed: int, quick: bool) -> Pair:
  """distrl's preset against Brax's PPO with the colab's settings (quick: 4 updates of 64 x 16 steps, and no run
  with the colab's networks)."""
  from distrl.configs import ppo

  config = ppo.get_config("brax:inverted_pendulum")
  distrl_flags = {"seed": seed, "eval_every": 2}  # Brax evaluates every 2 updates of this budget (num_evals=7)
  brax_sizes = {"num_envs": 2048, "batch_size": 1024, "num_minibatches": 32, "unroll_length": 5}  # the colab's
  if quick:
    distrl_flags.update(num_envs=64, num_steps=16, num_minibatches=4, total_timesteps=4 * 64 * 16, eval_episodes=16)
    brax_sizes = {"num_envs": 64, "batch_size": 32, "num_minibatches": 4, "unroll_length": 8}
  config.update(distrl_flags)
  per_update = config.num_envs * config.num_steps
  if brax_sizes["batch_size"] * brax_sizes["num_minibatches"] * brax_sizes["unroll_length"] != per_update:
    raise SystemExit(f"Brax's PPO would take {brax_sizes} samples per update, distrl's {per_update}")
  updates = config.total_timesteps // per_update
  if updates % config.eval_every:
    raise SystemExit(f"{updates} updates are not whole epochs of eval_every={config.eval_every}")
  kwargs = {**brax_sizes, "num_timesteps": updates * per_update, "num_evals": updates // config.eval_every + 1,
            "episode_length": EPISODE_LENGTH, "num_updates_per_batch": config.update_epochs,
            "discounting": config.gamma, "learning_rate": config.lr, "entropy_cost": config.ent_coef,
            "clipping_epsilon": config.clip_eps, "gae_lambda": config.gae_lambda,
            "normalize_observations": config.normalize_obs, "reward_scaling": 10.0, "action_repeat": 1,
            "num_eval_envs": config.eval_episodes, "deterministic_eval": True, "seed": seed}
  same = {"policy_hidden_layer_sizes": list(config.hidden_sizes), "value_hidden_layer_sizes": list(config.hidden_sizes),
          "activation": config.activation}
  colab = () if quick else (Run("brax ppo, colab networks", brax={"agent": "ppo", "kwargs": kwargs, "networks": None}),)
  return Pair("ppo", (
      Run("distrl ppo", ("--config=ppo:brax:inverted_pendulum", *flags(distrl_flags))),
      Run("brax ppo, distrl's networks", brax={"agent": "ppo", "kwargs": kwargs, "networks": same}), *colab))


def sac_pair(seed: int, quick: bool) -> Pair:
  """`SAC` (quick: `SAC_QUICK`) as Brax's SAC and distrl's: the same steps, updates, batches and networks."""
  s = SAC_QUICK if quick else SAC
  n, epochs = s["num_envs"], s["num_evals"] - 1
  prefill = -(-s["min_replay_size"] // n) * n  # Brax fills the replay in whole steps of every environment
  per_epoch = -(-(s["budget"] - prefill) // (epochs * n))  # iterations between evaluations
  steps = prefill + epochs * per_epoch * n
  kwargs = {"num_timesteps": steps, "episode_length": EPISODE_LENGTH, "num_envs": n,
            "num_eval_envs": s["num_eval_envs"], "learning_rate": s["learning_rate"], "discounting": s["discounting"],
            "seed": seed, "batch_size": s["batch_size"], "num_evals": s["num_evals"], "normalize_observations": True,
            "reward_scaling": 1.0, "tau": s["tau"], "min_replay_size": s["min_replay_size"],
            "max_replay_size": s["max_replay_size"], "grad_updates_per_step": s["grad_updates_per_step"],
            "deterministic_eval": True}
  distrl_flags = {"seed": seed, "total_timesteps": steps, "num_envs": n, "train_frequency": n,
                  "gradient_steps": s["grad_updates_per_step"], "batch_size": s["batch_size"],
                  "buffer_size": s["max_replay_size"], "learning_starts": s["min_replay_size"],
                  "hidden_sizes": tuple(s["hidden_layer_sizes"]), "activation": "relu",
                  "actor_lr": s["learning_rate"], "critic_lr": s["learning_rate"], "gamma": s["discounting"],
                  "tau": s["tau"], "normalize_obs": True, "target_entropy_per_dim": -0.5,
                  "eval_episodes": s["num_eval_envs"], "eval_every": per_epoch, "log_every": per_epoch,
                  "checkpoint_every": steps // n}
  networks = {"hidden_layer_sizes": list(s["hidden_layer_sizes"])}
  return Pair("sac", (
      Run("distrl sac", ("--config=sac:brax:inverted_pendulum", *flags(distrl_flags)),
          learning_starts=s["min_replay_size"]),
      Run("brax sac", brax={"agent": "sac", "kwargs": kwargs, "networks": networks})))


PAIRS = {"ppo": ppo_pair, "sac": sac_pair}


def flags(values: dict) -> list[str]:
  """`--config.NAME=VALUE` for each of `values` (tuples as `(64,64)`, which ml_collections parses)."""
  text = lambda v: "(" + ",".join(map(str, v)) + ")" if isinstance(v, tuple) else str(v)
  return [f"--config.{name}={text(value)}" for name, value in values.items()]


def union_seconds(spans: list[tuple[float, float]]) -> float:
  """The time covered by (start, end) spans, overlaps counted once."""
  total, reach = 0.0, -math.inf
  for start, end in sorted(spans):
    if end > reach:
      total += end - max(start, reach)
      reach = end
  return total


def compile_spans(log: str) -> list[tuple[float, float]]:
  """The (start, end) seconds of the day of each compile span in a JAX_LOG_COMPILES log."""
  spans = []
  for line in log.splitlines():
    if m := COMPILE_LOG.match(line):
      end = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
      spans.append((end - float(m[4]), end))
  return spans


def child_env(**extra) -> dict:
  return {**os.environ, "XLA_FLAGS": XLA_FLAGS, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
          **extra}


def weighted_sps(intervals: list[tuple[int, float]]) -> float:
  """Steps per second over (steps, steps/s) intervals: their steps over their summed seconds."""
  steps = sum(n for n, _ in intervals)
  seconds = sum(n / sps for n, sps in intervals)
  return steps / seconds if seconds else float("nan")


def run_distrl(run: Run) -> dict:
  """`python -m distrl.launch` in a scratch workdir; its steps, times and returns."""
  workdir = tempfile.mkdtemp(prefix="distrl-brax-trainers-")
  command = [sys.executable, "-m", "distrl.launch", f"--workdir={workdir}", "--compilation_cache=", *run.flags]
  log_path = os.path.join(workdir, "stderr.log")
  started, eval_times = time.perf_counter(), {}
  with open(log_path, "w") as log:
    proc = subprocess.Popen(command, cwd=ROOT, env=child_env(JAX_LOG_COMPILES="1"), stdout=subprocess.PIPE,
                            stderr=log, text=True)
    for line in proc.stdout:
      if m := DISTRL_EVAL.search(line):
        eval_times[int(m[1].replace(",", ""))] = time.perf_counter() - started
        print(f"  [{run.trainer}] {line.strip()}", flush=True)
    status = proc.wait()
  wall = time.perf_counter() - started
  with open(log_path) as f:
    log = f.read()
  if status != 0:
    raise SystemExit(f"{' '.join(command)} failed with status {status}:\n{log[-3000:]}")
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f if line.strip()]
  before = [0] + [r["step"] for r in records]
  learning = [(r["step"] - b, r["perf/sps"]) for r, b in zip(records, before) if b >= run.learning_starts]
  evals = [(r["step"], r["eval/return"], eval_times.get(r["step"])) for r in records if "eval/return" in r]
  return {"steps": records[-1]["step"], "wall_s": wall, "compile_s": union_seconds(compile_spans(log)),
          "train_sps": weighted_sps(learning), "evals": evals}


def run_brax(run: Run) -> dict:
  """This script's --worker with the run's spec, in a fresh process; its steps, times and returns."""
  command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(run.brax)]
  started, result = time.perf_counter(), None
  proc = subprocess.Popen(command, cwd=ROOT, env=child_env(WORKER_STARTED=repr(time.time())), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  for line in proc.stdout:
    if line.startswith("RESULT "):
      result = json.loads(line[len("RESULT "):])
    else:
      print(f"  [{run.trainer}] {line.strip()}", flush=True)
  stderr = proc.stderr.read()
  status = proc.wait()
  wall = time.perf_counter() - started
  if status != 0 or result is None:
    raise SystemExit(f"Brax's {run.brax['agent']} failed with status {status}:\n{stderr[-3000:]}")
  return {**result, "wall_s": wall}


def install_device_put_shims() -> None:
  """`jax.device_put_replicated` and `jax.device_put_sharded`, which Brax 0.14.2's trainers call and JAX 0.10 removed,
  as JAX's changelog (0.8.1, deprecating them) says to replace them: `jax.device_put` with the sharding wanted. The
  values, stacked along a new leading axis of one entry per device, are split over that axis by a NamedSharding on
  a mesh of those devices whose axis is named as Brax's pmap axis (BRAX_PMAP_AXIS): the sharding `jax.pmap` (on
  shard_map since JAX 0.8) gives its outputs. On a mesh axis of another name (JAX's own old definition named it
  `_device_put_replicated`) the first epoch's outputs differ in sharding from its inputs, and Brax's PPO compiles
  its epoch a second time, inside its second epoch's timing (13 s here). Installed only where JAX lacks them."""
  import jax
  import numpy as np
  from jax.sharding import Mesh, NamedSharding, PartitionSpec

  def put_stacked(stacked, devices):
    sharding = NamedSharding(Mesh(np.array(devices), (BRAX_PMAP_AXIS,)), PartitionSpec(BRAX_PMAP_AXIS))
    return jax.device_put(stacked, sharding)

  def device_put_replicated(x, devices):
    return put_stacked(jax.tree.map(lambda v: np.stack([np.asarray(v)] * len(devices)), x), devices)

  def device_put_sharded(shards, devices):
    return put_stacked(jax.tree.map(lambda *v: np.stack([np.asarray(a) for a in v]), *shards), devices)

  if not hasattr(jax, "device_put_replicated"):
    jax.device_put_replicated = device_put_replicated
  if not hasattr(jax, "device_put_sharded"):
    jax.device_put_sharded = device_put_sharded


def brax_networks(agent: str, networks: dict | None):
  """Brax's network factory for `agent` with `networks`' keyword arguments (activation by name); None: its default."""
  if networks is None:
    return {}
  import flax.linen as nn
  from brax.training.agents.ppo import networks as ppo_networks
  from brax.training.agents.sac import networks as sac_networks

  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in networks.items()}
  if "activation" in kwargs:
    kwargs["activation"] = getattr(nn, kwargs["activation"])
  make = {"ppo": ppo_networks.make_ppo_networks, "sac": sac_networks.make_sac_networks}[agent]
  return {"network_factory": functools.partial(make, **kwargs)}


def worker(spec: dict) -> None:
  """Runs in a fresh process: Brax's trainer `spec["agent"]` on ENV, printing each evaluation and, last, a RESULT line
  (steps, compile seconds, train steps/s, evaluations with their seconds since the process started)."""
  started = float(os.environ["WORKER_STARTED"])  # the parent's clock (time.time()) when it started this process
  import jax
  import jax.monitoring

  jax.config.update("jax_enable_compilation_cache", False)
  spans = []
  jax.monitoring.register_event_time_span_listener(
      lambda event, start, end, **_: spans.append((start, end)) if event in COMPILE_EVENTS else None)
  install_device_put_shims()
  from brax import envs
  from brax.training.agents.ppo import train as ppo
  from brax.training.agents.sac import train as sac

  evals, epochs = [], []

  def progress(step, metrics):
    seconds = time.time() - started
    evals.append((int(step), float(metrics["eval/episode_reward"]), seconds))
    if "training/sps" in metrics:
      epochs.append((int(step), float(metrics["training/sps"])))
    print(f"step {int(step):,} | eval {evals[-1][1]:.1f} | {seconds:.0f}s", flush=True)

  train = {"ppo": ppo.train, "sac": sac.train}[spec["agent"]]
  train(envs.get_environment(ENV, backend=BACKEND), **spec["kwargs"],
        **brax_networks(spec["agent"], spec["networks"]), progress_fn=progress)
  steps = [s for s, _ in epochs]
  after_first = [(s - b, sps) for (s, sps), b in zip(epochs[1:], steps)]  # the first epoch compiles its program
  print("RESULT " + json.dumps({"steps": evals[-1][0], "compile_s": union_seconds(spans), "evals": evals,
                                "train_sps": weighted_sps(after_first or [(steps[0], epochs[0][1])])}), flush=True)


def summary(result: dict) -> dict:
  """A run's table fields: wall without compile, its end-to-end steps/s, the final return, the first solved eval."""
  wall_wo = result["wall_s"] - result["compile_s"]
  solved = next(((s, t) for s, r, t in result["evals"] if r >= SOLVED), None)
  return {**result, "wall_wo_s": wall_wo, "e2e_sps": result["steps"] / wall_wo, "final": result["evals"][-1][1],
          "solved": solved}


def table(rows: list[tuple[Pair, Run, dict]]) -> str:
  lines = ["| pair | trainer | steps | compile s | wall s (with compile) | wall s (without compile) | train steps/s | "
           f"first eval >= {SOLVED:g} (step, s) | final eval return | distrl/Brax steps/s (train; end-to-end) | "
           "load |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  distrl = {}
  for pair, run, r in rows:
    if run is pair.runs[0]:
      distrl[pair.name] = r
      ratio = ""
    else:
      d = distrl[pair.name]
      ratio = f"{d['train_sps'] / r['train_sps']:.2f}x; {d['e2e_sps'] / r['e2e_sps']:.2f}x"
    solved = f"{r['solved'][0]:,} ({r['solved'][1]:.0f} s)" if r["solved"] else "not reached"
    lines.append(f"| {pair.name} | {run.trainer} | {r['steps']:,} | {r['compile_s']:.1f} | {r['wall_s']:.1f} | "
                 f"{r['wall_wo_s']:.1f} | {r['train_sps']:,.0f} | {solved} | {r['final']:.1f} | {ratio} | "
                 f"{r['load'][0]:.1f} -> {r['load'][1]:.1f} |")
  return "\n".join(lines)


def incomplete(args: argparse.Namespace) -> str | None:
  """Why this run does not make the published table (None if it does)."""
  if args.quick:
    return "a --quick run"
  if set(args.pairs) != set(PAIRS):
    return f"--pairs ran {len(set(args.pairs))} of the {len(PAIRS)} pairs"
  return None


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
  parser.add_argument("--quick", action="store_true", help="tiny budgets (~4 min, mostly compiling): the pipeline only")
  parser.add_argument("--seed", type=int, default=0, help="the seed of every run")
  parser.add_argument("--results", help="where the table goes, between its markers ('' for none; default: "
                                        "benchmarks/RESULTS.md for a complete run, else none)")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    worker(json.loads(args.worker))
    return
  args.results = results_file.destination(args.results, incomplete(args))
  if args.results:  # before the measurements, not after
    results_file.check(args.results, [NAME])
  rows = []
  for name in args.pairs:
    pair = PAIRS[name](args.seed, args.quick)
    for run in pair.runs:
      print(f"{pair.name}: {run.trainer}", flush=True)
      load = os.getloadavg()[0]
      result = run_brax(run) if run.brax else run_distrl(run)
      rows.append((pair, run, summary({**result, "load": (load, os.getloadavg()[0])})))
  text = table(rows)
  print(text)
  if args.results:
    results_file.write(args.results, {NAME: text})
  else:
    results_file.not_written(incomplete(args) or "--results ''")


if __name__ == "__main__":
  main()
