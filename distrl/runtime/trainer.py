"""The host loop every algorithm shares: build, restore, compile once, run chunks, log, checkpoint.

The trainer knows an algorithm only through the contract of `distrl.algorithms` (`sizes`, `init`,
`update`, `act`), resolved from `config.algo`; `build` makes what a run executes, for training,
`distrl.evaluate` and the benchmarks alike.

Chunks: the compiled program runs a dynamic number of updates, so the loop runs each log interval
(`log_every` updates) as one or more calls of at most ~`MAX_CHUNK_SECONDS`: a stop request waits at
most that long. With several processes, every process agrees on stopping and on each call's length.
"""

import concurrent.futures
import dataclasses
import functools
import json
import math
import os
import sys
import time

import jax
import ml_collections
import numpy as np

from distrl import algorithms, configs, envs, sharding
from distrl.runtime import greedy_eval, metrics, seeds, stopping
from distrl.runtime.checkpoint import Checkpoints, IncompatibleCheckpoint
from distrl.errors import ConfigError, DeviceFailed, RunFailed, first_line, require, require_divisible, require_positive
from distrl.rl.state import TrainState
from distrl.runtime.workdir import Workdir

MAX_CHUNK_SECONDS = 5.0  # the longest one call of the compiled chunk runs: how long a stop request can wait


class TrainingDiverged(RunFailed):
  """A loss became NaN or infinite; the last good checkpoint is kept."""


@dataclasses.dataclass
class Result:
  state: TrainState  # the final state, global layout
  history: list[dict]  # every logged record: step, update, time and scalars
  compile_seconds: float
  traces: int  # times the chunk was traced (1 in a healthy run)
  layout_traces: int  # times a pmap layout conversion was traced (0 under shard_map, 2 under pmap)
  stopped: bool  # ended early by a stop request (SIGTERM, SIGINT, SIGHUP, a closed stdout), after saving


def check_run_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """The fields every algorithm's config has: intervals, backend, and what must split over devices."""
  lack = configs.lacking(config)
  require(lack is None, lack)
  require_positive(config, "num_seeds", "num_envs", "log_every", "checkpoint_every", "keep_checkpoints", "eval_every",
                   "eval_episodes")
  require(config.backend in sharding.BACKENDS, f"backend={config.backend!r} must be one of {sharding.BACKENDS}")
  if "hidden_sizes" in config:
    widths = config.hidden_sizes
    widths = (widths,) if isinstance(widths, (int, float)) else widths
    require(all(isinstance(w, int) and w >= 1 for w in widths),
            f"hidden_sizes={config.hidden_sizes!r} must list positive layer widths, e.g. "
            f"--config.hidden_sizes='(64, 64)' ('()' for none)")
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
    return greedy_eval.make_evaluate(self.algorithm.act, self.config, self.env, self.mesh, episodes)


def build(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> Program:
  """Resolves the algorithm and environment of `config`, validates it for `mesh`, and builds the initial state
  (placed on the mesh) and the runner of its update. Raises ConfigError for anything a user can fix."""
  check_run_config(config, mesh.size)
  algorithm = algorithms.get(config.algo)
  env = envs.make(config.env_name, config.env_kwargs)
  sizes = algorithm.sizes(config, mesh.size)
  require(all(hasattr(sizes, field) for field in ("num_updates", "steps_per_update")),
          f"algo={config.algo!r}: sizes() returned {type(sizes).__name__}, not sizes with num_updates and "
          f"steps_per_update (see distrl/algorithms.py)")
  require(sizes.num_updates < 2**31, f"total_timesteps={config.total_timesteps} makes {sizes.num_updates:,} updates; "
                                     f"the update counter is int32 on the devices (at most 2**31 - 1)")
  init = functools.partial(algorithm.init, config=config, env=env, sizes=sizes)
  state = sharding.init_sharded(seeds.init(init, config), seeds.keys(config), mesh)
  update = seeds.update(functools.partial(algorithm.update, config=config, env=env, sizes=sizes), config)
  return Program(config=config, algorithm=algorithm, env=env, mesh=mesh, sizes=sizes, state=state,
                 runner=sharding.Runner(update, mesh, config.backend, state))


def _device_failure(error: Exception) -> str:
  """What a failure of the compiled program says, in one line: the exception a host callback raised (the last line of
  the Python traceback JAX carries), else its first line."""
  text = str(error)
  if "Traceback (most recent call last)" in text:
    return [line.strip() for line in text.splitlines() if line.strip()][-1][:200]
  return first_line(error)[:200]


def _record_config(config: ml_collections.ConfigDict) -> dict:
  """The config as JSON-like values (tuples become lists), as config.json holds it."""
  return json.loads(config.to_json_best_effort())


def _changes(old: dict | None, config: ml_collections.ConfigDict) -> dict[str, tuple]:
  """{field: (recorded value, new value)} for every field that differs from the run's config.json."""
  if old is None:
    return {}
  new = _record_config(config)
  return {k: (old.get(k, "(unset)"), new.get(k, "(unset)")) for k in sorted(old.keys() | new.keys())
          if old.get(k) != new.get(k)}


def _describe(changes: dict[str, tuple], limit: int = 5) -> str:
  shown = [f"{k}: {old!r} -> {new!r}" for k, (old, new) in list(changes.items())[:limit]]
  more = len(changes) - limit
  return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _check_resume(workdir: Workdir, old: dict | None, config: ml_collections.ConfigDict, error: Exception | None):
  """A ConfigError for a resume that cannot mean what it says (another run's config, another seed)."""
  changes = _changes(old, config)
  for field in ("algo", "env_name"):
    if field in changes:
      recorded, given = changes[field]
      raise ConfigError(f"{workdir.path} holds a run of {old.get('algo')} on {old.get('env_name')}, not "
                        f"{config.algo} on {config.env_name} ({field}: {recorded!r} -> {given!r}); resume it with "
                        f"its own config, or use another --workdir")
  if error is not None:
    fields = f"fields that differ from {workdir.file('config.json')}: {_describe(changes)}; " if changes else ""
    raise ConfigError(f"{fields}{error}. Resume with the config the run was started with, or use a new --workdir.")
  if "seed" in changes:
    recorded, given = changes["seed"]
    raise ConfigError(f"{workdir.path} is the run of seed {recorded}; it cannot go on as seed {given} (its "
                      f"environments, networks and samples all derive from its seed). Train seed {given} in another "
                      f"--workdir, or several seeds at once with --config.num_seeds")


@dataclasses.dataclass
class _Interval:
  """One log interval so far: its calls' metric sums (on the devices, carried from call to call), updates and
  seconds."""

  totals: dict | None = None
  updates: int = 0
  seconds: float = 0.0

  @property
  def sums(self) -> dict:
    """The metric sums on this host."""
    totals = sharding.to_host(self.totals)
    return {k: v for k, v in totals.items() if k != sharding.FINITE_LEARNER}


def train(config: ml_collections.ConfigDict, workdir: str, *, devices=None, overwrite: bool = False) -> Result:
  """Trains `config` in `workdir`, resuming from its latest checkpoint if it has one.

  With `overwrite`, a run already in `workdir` is moved aside into `workdir/overwritten-<time>/` and a new one
  starts. Stop requests (`stopping.REQUEST`: SIGTERM, SIGINT, SIGHUP) end the run after the current call with
  a checkpoint.
  """
  stop = stopping.REQUEST
  owned = not stop.installed  # launch installs it at start-up; a library caller gets it for this call
  if owned:
    stop.reason = None
    stop.install()
  try:
    return _train(config, Workdir(workdir, primary=jax.process_index() == 0), devices, overwrite, stop)
  finally:
    if owned:
      stop.uninstall()


def _train(config, workdir: Workdir, devices, overwrite: bool, stop: stopping.StopRequest) -> Result:
  session_start = time.perf_counter()
  stop.updating = False
  program = build(config, sharding.make_mesh(devices))
  mesh, sizes, state, runner = program.mesh, program.sizes, program.state, program.runner
  primary, processes = workdir.primary, jax.process_count()
  console = metrics.Console(enabled=primary, on_closed=lambda: stop.request("closed stdout"))
  say = console.print
  warn = lambda text: say(text)
  total_steps = sizes.num_updates * sizes.steps_per_update

  workdir.create(jax.process_index())
  refused = workdir.lock()
  if processes > 1:  # every process learns whether process 0 got the lock
    from jax.experimental import multihost_utils
    locked = bool(multihost_utils.broadcast_one_to_all(np.int32(refused is None)))
    refused = refused or (None if locked else f"process 0 could not lock --workdir={workdir.path}")
  if refused:
    raise ConfigError(refused)
  checkpoints = best = writer = None
  try:
    if overwrite:
      moved = workdir.move_aside()
      if processes > 1:
        multihost_utils.sync_global_devices("distrl-overwrite")
      if moved:
        say(f"--overwrite: moved the run that was in {workdir.path} to {moved}")
    checkpoints = Checkpoints(workdir.file("checkpoints"), keep=config.keep_checkpoints)
    best = Checkpoints(workdir.file("best"), keep=1, best_of="eval/return")  # the mean over agents
    old_config, last_start = workdir.read_json("config.json"), workdir.read_json("run.json")
    try:
      restored, state = checkpoints.restore_latest(state, warn=warn)
    except IncompatibleCheckpoint as error:
      _check_resume(workdir, old_config, config, error)
      raise
    history = workdir.history(warn)
    # Killed before its first checkpoint, the same run simply starts again (and logs the same records again);
    # anything else without a checkpoint would mix a new run into an old run's history.
    same_run_from_scratch = not _changes(old_config, config) and not workdir.leftovers(saved_only=True)
    if restored is None and history and same_run_from_scratch:
      say(f"{workdir.path}: no checkpoint was saved before the run stopped; starting it again from update 0")
    elif restored is None and (history or workdir.leftovers()):
      raise ConfigError(f"--workdir={workdir.path} holds a run ({'; '.join(workdir.leftovers())}) but no checkpoint "
                        f"to resume it from; add --overwrite to start over there (the old run is moved to "
                        f"{workdir.path}/overwritten-<time>/, not deleted), or use another --workdir")
    update, changes = restored or 0, {}
    if restored is not None:
      _check_resume(workdir, old_config, config, None)
      if update >= sizes.num_updates:
        say(f"{workdir.path}: the run is finished (update {update} of {sizes.num_updates}, step "
            f"{update * sizes.steps_per_update:,}); to train it longer, raise --config.total_timesteps")
        return Result(state=state, history=[], compile_seconds=0.0, traces=0, layout_traces=0, stopped=False)
      changes = _changes(old_config, config)
      moved = ""
      if last_start and (last_start.get("devices"), last_start.get("processes")) != (mesh.size, processes):
        moved = f" (it ran on {last_start['devices']} device(s) in {last_start['processes']} process(es) before)"
      say(f"resuming {workdir.path} from update {update} (step {update * sizes.steps_per_update:,}) on {mesh.size} "
          f"device(s) in {processes} process(es){moved}"
          + (f" with changed settings: {_describe(changes, limit=len(changes))}" if changes else ""))
      if "total_timesteps" in changes:
        say(f"the run now ends at step {total_steps:,}: schedules that span the whole run (an annealed learning "
            f"rate, ...) follow the new length from here on")
    else:
      say(f"training {config.algo} on {config.env_name}: {sizes.num_updates} updates of {sizes.steps_per_update} "
          f"steps on {mesh.size} device(s); workdir {workdir.path}")
    history = workdir.keep_history_until(history, update)
    elapsed = history[-1]["time"] if history else 0.0  # training time of the run before this start
    workdir.write_json("config.json", _record_config(config))
    # Every start of the run, with the settings it changed: config.json is the latest start's config, and this is
    # how the earlier ones differed from it.
    this_start = {"devices": mesh.size, "processes": processes, "jax": jax.__version__}
    starts = (last_start or {}).get("starts", []) if restored is not None else []
    starts.append({"update": update, **this_start, "changed": {k: list(v) for k, v in changes.items()}})
    workdir.write_json("run.json", {**this_start, "starts": starts})
    writer = metrics.Writer(workdir.path, total_steps=total_steps, name=f"{config.algo} {config.env_name}",
                            console=console, primary=primary, resume_step=update * sizes.steps_per_update)

    state = runner.put(state)
    evaluate = program.evaluator(config.eval_episodes)
    # Evaluation after update u of the agent of seed s uses fold_in(fold_in(PRNGKey(s), 1), u).
    eval_key = seeds.vmap(lambda key, u: jax.random.fold_in(jax.random.fold_in(key, 1), u), config, in_axes=(0, None))
    start = time.perf_counter()
    # The update loop compiles in a thread (XLA releases the GIL) while this one compiles the evaluation, which its
    # first use would otherwise compile mid-run: on a CPU the two take different cores.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="distrl-compile") as pool:
      compiling = pool.submit(runner.compile, state)
      evaluate.lower(runner.get(state).learner, eval_key(seeds.keys(config), update)).compile()
      compiling.result()
    compile_seconds = time.perf_counter() - start
    say(f"compiled the update loop and the evaluation in {compile_seconds:.1f}s")

    def log(interval: _Interval, update: int, last_saved: int) -> int:
      """Writes the record of an interval ending at `update` (evaluating and checkpointing when due)."""
      scalars = metrics.summarize(interval.sums, first_seed=config.seed)
      scalars["perf/sps"] = interval.updates * sizes.steps_per_update / interval.seconds
      bad = sorted(k for k, v in scalars.items() if not math.isfinite(v))
      if bad:
        _diverged(bad, update, interval.updates)
      if update // config.eval_every > (update - interval.updates) // config.eval_every or \
          update == sizes.num_updates:
        learner = runner.get(state).learner
        results = sharding.to_host(evaluate(learner, eval_key(seeds.keys(config), update)))
        episodes = {f"eval/{name}": (values.sum(-1), np.full(values.shape[:-1], values.shape[-1]))
                    for name, values in results.items()}  # per agent: (sum, count) over its episodes
        scalars.update(metrics.summarize(episodes, first_seed=config.seed))
        best.save(update, runner.get(state), metrics={"eval/return": scalars["eval/return"]})
      record = {"step": update * sizes.steps_per_update, "update": update,
                "time": elapsed + time.perf_counter() - start, **scalars}
      history.append(record)
      try:
        writer.write(step=record["step"], update=update, time=record["time"], scalars=scalars)
      except OSError as error:
        raise RunFailed(f"cannot write {workdir.file('metrics.jsonl')} ({error.strerror}); {checkpoints.kept()}. "
                        f"Free space and run the same command to resume") from None
      if update // config.checkpoint_every > last_saved // config.checkpoint_every:
        checkpoints.save(update, runner.get(state))
        return update
      checkpoints.check()
      return last_saved

    def _diverged(bad, update, n):
      raise TrainingDiverged(f"non-finite {', '.join(bad)} in updates {update - n + 1}..{update} "
                             f"(step {update * sizes.steps_per_update:,}); {checkpoints.kept()}. A lower lr or "
                             f"max_grad_norm usually helps")

    run_history_start = len(history)
    stop.updating = True
    interval, last_saved, seconds_per_update = _Interval(), update, None
    while update < sizes.num_updates:
      boundary = min(sizes.num_updates, (update // config.log_every + 1) * config.log_every)
      n = boundary - update
      if seconds_per_update is None:
        n = 1  # a first call measures how long an update takes
      else:
        n = min(n, max(1, int(MAX_CHUNK_SECONDS / seconds_per_update)))
      reason, n = stopping.agree(stop.reason, n)
      if reason is not None:
        stopped = True
        stop.request(reason)
        break
      call_start = time.perf_counter()
      try:
        state, interval.totals = runner(state, n, interval.totals)
        finite_learner = bool(sharding.to_host(interval.totals[sharding.FINITE_LEARNER][0]))
      except jax.errors.JaxRuntimeError as error:  # e.g. an environment's host callback raised
        if processes > 1:
          raise  # perhaps a lost process: the launcher says which
        raise DeviceFailed(f"updates {update + 1}..{update + n} failed ({_device_failure(error)}); "
                           f"{checkpoints.kept()}. Fix the cause and run the same command to resume") from None
      seconds = time.perf_counter() - call_start
      seconds_per_update = seconds / n
      interval.updates, interval.seconds = interval.updates + n, interval.seconds + seconds
      update += n
      if not finite_learner:
        scalars = metrics.summarize(interval.sums, first_seed=config.seed)
        _diverged(sorted(k for k, v in scalars.items() if not math.isfinite(v)) + ["parameters or optimizer state"],
                  update, interval.updates)
      if update == boundary:
        last_saved = log(interval, update, last_saved)
        interval = _Interval()
    else:
      stopped = False
    if interval.updates:  # stopped inside a log interval: its record covers the updates done
      last_saved = log(interval, update, last_saved)
    if stopped and update == (restored or 0) and restored is None:
      say(f"stopped by {stop.reason} before the first update; nothing to save (run the same command to start)")
    else:
      stop.saving = f"update {update}"
      checkpoints.save(update, runner.get(state))
      checkpoints.finish()
      best.finish()
      stop.saving = None
      if stopped:
        say(f"stopped by {stop.reason}: saved update {update} to {checkpoints.directory}; run the same command to "
            f"resume")
      writer.summary(history[run_history_start:], seconds=time.perf_counter() - session_start,
                     compile_seconds=compile_seconds, workdir=workdir.path,
                     checkpoint=os.path.join(checkpoints.directory, str(update)), best=best.best())
    return Result(state=runner.get(state), history=history[run_history_start:], compile_seconds=compile_seconds,
                  traces=runner.traces, layout_traces=runner.layout_traces, stopped=stopped)
  finally:
    for manager in (checkpoints, best):
      if manager is not None:
        manager.close()  # waits for a save in flight
    if writer is not None:
      try:
        writer.close()
      except OSError as error:  # a full disk; where a failure is already on its way out, that one is reported
        if sys.exc_info()[0] is None:
          raise RunFailed(f"cannot write the logs in {workdir.path} ({error.strerror}); the run's checkpoints are "
                          f"complete. Free space and check metrics.jsonl") from None
    else:
      console.end()
    workdir.unlock()
