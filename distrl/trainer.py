"""The host loop every algorithm shares: build, restore, compile once, run chunks, log, checkpoint.

The trainer knows an algorithm only through the contract of `distrl.algorithms` (`sizes`, `init`,
`update`, `act`), resolved from `config.algo`; `build` makes what a run executes, for training,
`distrl.evaluate` and the benchmarks alike.
"""

import dataclasses
import functools
import json
import math
import os
import signal
import threading
import time

import jax
import ml_collections
import numpy as np

from distrl import algorithms, envs, evaluation, metrics, seeds, sharding
from distrl.checkpoint import Checkpoints, IncompatibleCheckpoint
from distrl.errors import ConfigError, require, require_divisible, require_positive
from distrl.state import TrainState


class TrainingDiverged(RuntimeError):
  """A loss became NaN or infinite; the last good checkpoint is kept."""


@dataclasses.dataclass
class Result:
  state: TrainState  # the final state, global layout
  history: list[dict]  # every logged record: step, update, time and scalars
  compile_seconds: float
  traces: int  # times the chunk was traced (1 in a healthy run)
  layout_traces: int  # times a pmap layout conversion was traced (0 under shard_map, 2 under pmap)
  stopped: bool  # ended early by SIGTERM/SIGINT, after saving


class _StopRequest:
  """Turns SIGTERM/SIGINT into a flag checked between chunks (main thread only)."""

  def __init__(self):
    self.signal = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    if self.signal is not None:  # a second signal: stop now
      raise KeyboardInterrupt
    self.signal = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def check_run_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """The fields every algorithm's config has: intervals, backend, and what must split over devices."""
  missing = [field for field in algorithms.RUN_FIELDS if field not in config]
  require(not missing, f"the config lacks {', '.join(missing)}: every config has the fields "
                       f"{', '.join(algorithms.RUN_FIELDS)} (see distrl/algorithms.py)")
  require_positive(config, "num_seeds", "num_envs", "log_every", "checkpoint_every", "keep_checkpoints", "eval_every",
                   "eval_episodes")
  require(config.backend in sharding.BACKENDS, f"backend={config.backend!r} must be one of {sharding.BACKENDS}")
  suggestion = num_devices * max(1, -(-config.num_envs // num_devices))  # the next multiple up
  require_divisible("num_envs", config.num_envs, "the number of devices", num_devices,
                    f"use a multiple of {num_devices}, e.g. --config.num_envs={suggestion}")
  require_divisible("eval_episodes", config.eval_episodes, "the number of devices", num_devices,
                    f"use a multiple of {num_devices}")


@dataclasses.dataclass
class Program:
  """What a run executes, built one way (`build`) for training, `distrl.evaluate` and the benchmarks."""

  config: ml_collections.ConfigDict
  algorithm: algorithms.Algorithm
  env: envs.Env
  mesh: jax.sharding.Mesh
  sizes: algorithms.Sizes
  state: TrainState  # the initial state of every agent (`config.num_seeds`), global layout, on `mesh`
  runner: sharding.Runner  # one chunk of updates, of every agent (not compiled until `runner.compile`)

  def evaluator(self, episodes: int):
    """evaluate(learner, keys) -> {"return", "length"}: greedy episodes of every agent, split over the mesh."""
    return evaluation.make_evaluate(self.algorithm.act, self.config, self.env, self.mesh, episodes)


def build(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> Program:
  """Resolves the algorithm and environment of `config`, validates it for `mesh`, and builds the initial state
  (placed on the mesh) and the runner of its update. Raises ConfigError for anything a user can fix."""
  check_run_config(config, mesh.size)
  algorithm = algorithms.get(config.algo)
  env = envs.make(config.env_name, config.env_kwargs)
  sizes = algorithm.sizes(config, mesh.size)
  init = functools.partial(algorithm.init, config=config, env=env, sizes=sizes)
  state = sharding.init_sharded(seeds.init(init, config), seeds.keys(config), mesh)
  update = seeds.update(functools.partial(algorithm.update, config=config, env=env, sizes=sizes), config)
  return Program(config=config, algorithm=algorithm, env=env, mesh=mesh, sizes=sizes, state=state,
                 runner=sharding.Runner(update, mesh, config.backend, state))


def _record_config(config: ml_collections.ConfigDict) -> dict:
  """The config as JSON-like values (tuples become lists), as config.json holds it."""
  return json.loads(config.to_json_best_effort())


def _config_changes(workdir: str, config: ml_collections.ConfigDict) -> list[str]:
  """"field: old -> new" for every field that differs from the run's recorded config.json."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    old = json.load(f)
  new = _record_config(config)
  return [f"{k}: {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}"
          for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]


def _make_workdir(workdir: str) -> None:
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir={workdir} is a file, not a directory; pick another path")
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write-test-{jax.process_index()}")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as error:
    raise ConfigError(f"cannot write to --workdir={workdir}: {error.strerror}; pick a writable directory") from error


def _write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Process 0 replaces config.json atomically: other processes may be reading the old one meanwhile."""
  if jax.process_index() == 0:
    path = os.path.join(workdir, "config.json")
    with open(path + ".tmp", "w") as f:
      json.dump(_record_config(config), f, indent=2, sort_keys=True)
      f.write("\n")
    os.replace(path + ".tmp", path)


def _truncate_metrics(workdir: str, update: int) -> None:
  """Drops records past `update` (logged, then lost by a crash) so that a resumed run does not repeat them."""
  path = os.path.join(workdir, "metrics.jsonl")
  if jax.process_index() != 0 or not os.path.exists(path):
    return
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  kept = [line for line in lines if json.loads(line)["update"] <= update]
  if len(kept) < len(lines):
    with open(path + ".tmp", "w") as f:
      f.writelines(kept)
    os.replace(path + ".tmp", path)


def train(config: ml_collections.ConfigDict, workdir: str, *, devices=None) -> Result:
  """Trains `config` in `workdir`, resuming from its latest checkpoint if it has one."""
  program = build(config, sharding.make_mesh(devices))
  mesh, sizes, state, runner = program.mesh, program.sizes, program.state, program.runner
  _make_workdir(workdir)
  primary = jax.process_index() == 0
  say = print if primary else (lambda *args, **kwargs: None)
  total_steps = sizes.num_updates * sizes.steps_per_update

  checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints)
  best = Checkpoints(os.path.join(workdir, "best"), keep=1, best_of="eval/return")  # the mean over agents
  writer = None
  try:
    try:
      restored, state = checkpoints.restore_latest(state, warn=lambda text: say(text, flush=True))
    except IncompatibleCheckpoint as error:
      changes = _config_changes(workdir, config)
      fields = f"; fields that differ from {workdir}/config.json: {', '.join(changes)}" if changes else ""
      raise ConfigError(f"{error}{fields}. Resume with the config the run was started with, or use a new "
                        f"--workdir.") from None
    if restored is not None:
      changes = _config_changes(workdir, config)
      say(f"resuming {workdir} from update {restored} (step {restored * sizes.steps_per_update:,})"
          + (f" with changed settings: {', '.join(changes)}" if changes else ""), flush=True)
    else:
      say(f"training {config.algo} on {config.env_name}: {sizes.num_updates} updates of "
          f"{sizes.steps_per_update} steps on {mesh.size} device(s); workdir {workdir}", flush=True)
    _write_config(workdir, config)
    update = restored or 0
    _truncate_metrics(workdir, update)
    writer = metrics.Writer(workdir, total_steps=total_steps, name=f"{config.algo} {config.env_name}",
                            enabled=primary, resume_step=update * sizes.steps_per_update)

    state = runner.put(state)
    start = time.perf_counter()
    runner.compile(state)
    compile_seconds = time.perf_counter() - start
    writer.print(f"compiled the {config.log_every}-update chunk in {compile_seconds:.1f}s")

    evaluate = program.evaluator(config.eval_episodes)
    # Evaluation after update u of the agent of seed s uses fold_in(fold_in(PRNGKey(s), 1), u).
    eval_key = seeds.vmap(lambda key, u: jax.random.fold_in(jax.random.fold_in(key, 1), u), config, in_axes=(0, None))
    history, last_saved = [], update
    with _StopRequest() as stop:
      while update < sizes.num_updates and stop.signal is None:
        n = min(config.log_every, sizes.num_updates - update)
        chunk_start = time.perf_counter()
        state, sums = runner(state, n)
        sums = sharding.to_host(sums)
        finite_learner = bool(sums.pop(sharding.FINITE_LEARNER)[0])
        scalars = metrics.summarize(sums, first_seed=config.seed)
        update += n
        scalars["perf/sps"] = n * sizes.steps_per_update / (time.perf_counter() - chunk_start)
        bad = sorted(k for k, v in scalars.items() if not math.isfinite(v))
        bad += [] if finite_learner else ["parameters or optimizer state"]
        if bad:
          kept = (f"the last good checkpoint (update {checkpoints.latest()}) is kept in {checkpoints.directory}"
                  if checkpoints.latest() is not None else "no checkpoint had been saved yet")
          raise TrainingDiverged(f"non-finite {', '.join(bad)} in updates {update - n + 1}..{update} "
                                 f"(step {update * sizes.steps_per_update:,}); {kept}. A lower lr or "
                                 f"max_grad_norm usually helps")
        if update // config.eval_every > (update - n) // config.eval_every or update == sizes.num_updates:
          learner = runner.get(state).learner
          results = sharding.to_host(evaluate(learner, eval_key(seeds.keys(config), update)))
          episodes = {f"eval/{name}": (values.sum(-1), np.full(values.shape[:-1], values.shape[-1]))
                      for name, values in results.items()}  # per agent: (sum, count) over its episodes
          scalars.update(metrics.summarize(episodes, first_seed=config.seed))
          best.save(update, runner.get(state), metrics={"eval/return": scalars["eval/return"]})
        record = {"step": update * sizes.steps_per_update, "update": update,
                  "time": time.perf_counter() - start, **scalars}
        history.append(record)
        writer.write(step=record["step"], update=update, time=record["time"], scalars=scalars)
        if update // config.checkpoint_every > last_saved // config.checkpoint_every:
          checkpoints.save(update, runner.get(state))
          last_saved = update
      stopped = stop.signal is not None
    checkpoints.save(update, runner.get(state))
    if stopped:
      writer.print(f"stopped by {stop.signal}: saved update {update} to {checkpoints.directory}; "
                   f"run the same command to resume")
    return Result(state=runner.get(state), history=history, compile_seconds=compile_seconds,
                  traces=runner.traces, layout_traces=runner.layout_traces, stopped=stopped)
  finally:
    checkpoints.close()  # waits for a save in flight
    best.close()
    if writer is not None:
      writer.close()
