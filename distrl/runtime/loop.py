"""The update loop of one start of a run: calls of the compiled chunk, log intervals, evaluations, checkpoints.

Each log interval (`log_every` updates) runs as one or more calls of at most ~`MAX_CHUNK_SECONDS`, so that a stop
request waits at most that long; the first call of a start runs one update to measure how long an update takes.
With several processes, every process agrees on stopping and on each call's length (`stopping.agree`).
An interval's record is written when it ends, with a greedy evaluation every `eval_every` updates and a
checkpoint every `checkpoint_every` updates; a non-finite metric or learner stops the run (`TrainingDiverged`).
"""

import contextlib
import dataclasses
import math
import time
from typing import Callable

import jax
import numpy as np

from distrl import sharding
from distrl.errors import DeviceFailed, EnvironmentFailed, RunFailed, first_line, where_in_text
from distrl.runtime import agents, metrics, stopping, sweep
from distrl.runtime.best import Best
from distrl.runtime.programs import Program
from distrl.runtime.session import Session

MAX_CHUNK_SECONDS = 5.0  # the longest one call of the compiled chunk runs: how long a stop request can wait


class TrainingDiverged(RunFailed):
  """A loss became NaN or infinite; the last good checkpoint is kept."""


def eval_keys(config) -> Callable:
  """eval_keys(update) -> the key of every agent's evaluation after `update`: for the agent of seed s,
  fold_in(fold_in(PRNGKey(s), 1), update)."""
  fold = agents.vmap(lambda key, u: jax.random.fold_in(jax.random.fold_in(key, 1), u), config, in_axes=(0, None))
  return lambda update: fold(agents.keys(config), update)


@dataclasses.dataclass
class Interval:
  """One log interval so far: its calls' metric sums (on the devices, carried from call to call), updates and
  seconds."""

  totals: dict | None = None
  updates: int = 0
  seconds: float = 0.0

  @property
  def sums(self) -> dict:
    """The metric sums on this host."""
    return sharding.to_host(self.totals)


@dataclasses.dataclass
class End:
  """Where the loop ended."""

  state: object  # in the runner's layout
  update: int
  stopped: bool  # by an agreed stop request, before the run's last update
  history: list[dict]  # the records this start wrote


def _device_failure(error: Exception) -> str:
  """What a failure of the compiled program says, in one line: the exception a host callback raised (the last line of
  the Python traceback JAX carries), else its first line."""
  text = str(error)
  if "Traceback (most recent call last)" in text:
    return [line.strip() for line in text.splitlines() if line.strip()][-1][:200] + where_in_text(text)
  return first_line(error)[:200]


class UpdateLoop:
  """Runs `program`'s updates from a start's update to the end of the run or an agreed stop, logging to `session`."""

  def __init__(self, program: Program, session: Session, evaluate: Callable, *, elapsed: float, started: float):
    self.program, self.session, self.evaluate = program, session, evaluate
    self.config, self.sizes, self.runner = program.config, program.sizes, program.runner
    self.eval_keys = eval_keys(program.config)
    self.labels = sweep.labels(program.config)  # every agent's suffix in per-agent metric names
    self.best = Best(session.best, sweep.count(program.config), int(program.config.num_seeds), say=session.say)
    self.elapsed, self.started = elapsed, started  # training time before this start; when this start's clock began
    self.first_update = 0  # the update this start began from (`run`): a resume where > 0

  def run(self, state, update: int, stop: stopping.StopRequest) -> End:
    self.first_update = update
    interval, last_saved, seconds_per_update, history = Interval(), update, None, []
    stopped = False
    while update < self.sizes.num_updates:
      boundary = min(self.sizes.num_updates, (update // self.config.log_every + 1) * self.config.log_every)
      reason, n = stopping.agree(stop.reason, self._call_length(boundary - update, seconds_per_update))
      if reason is not None:
        stop.request(reason)
        stopped = True
        break
      state, seconds = self._call(state, update, n, interval)
      seconds_per_update = seconds / n
      update += n
      if update == boundary:
        last_saved = self._log(interval, state, update, last_saved, history)
        interval = Interval()
    if interval.updates:  # stopped inside a log interval: its record covers the updates done
      self._log(interval, state, update, last_saved, history)
    return End(state=state, update=update, stopped=stopped, history=history)

  @staticmethod
  def _call_length(left: int, seconds_per_update: float | None) -> int:
    """Updates in the next call: one to measure an update's time, then as many as fit in MAX_CHUNK_SECONDS."""
    if seconds_per_update is None:
      return 1
    return min(left, max(1, int(MAX_CHUNK_SECONDS / seconds_per_update)))

  def _call(self, state, update: int, n: int, interval: Interval):
    """One call of `n` updates from `update`, added to `interval`; returns the new state and the call's seconds."""
    start = time.perf_counter()
    try:
      state, interval.totals, finite = self.runner(state, n, interval.totals)
      finite = bool(sharding.to_host(finite))
    except jax.errors.JaxRuntimeError as error:  # e.g. an environment's host callback raised
      if jax.process_count() > 1:
        raise  # perhaps a lost process: the launcher says which
      raise DeviceFailed(f"updates {update + 1}..{update + n} failed: {_device_failure(error)}; "
                         f"{self.session.checkpoints.then('Fix the cause')}") from None
    except EnvironmentFailed as failure:
      with contextlib.suppress(RunFailed):  # a save in flight completes, so that what is kept is said as it is
        self.session.checkpoints.finish()
      kept = self.session.workdir.keep_failure(failure.error, f"update {failure.update}")
      raise RunFailed(f"{failure}; traceback: {kept}; {self.session.checkpoints.then('Fix the cause')}") from None
    seconds = time.perf_counter() - start
    interval.updates, interval.seconds = interval.updates + n, interval.seconds + seconds
    if not finite:
      scalars = metrics.summarize(interval.sums, self.labels)
      self._diverged(sorted(k for k, v in scalars.items() if not math.isfinite(v)) + ["parameters or optimizer state"],
                     update + n, interval.updates)
    return state, seconds

  def _log(self, interval: Interval, state, update: int, last_saved: int, history: list[dict]) -> int:
    """Writes the record of an interval ending at `update`, evaluating and checkpointing when due; returns the update
    of the latest checkpoint."""
    config, session = self.config, self.session
    scalars = metrics.summarize(interval.sums, self.labels)
    scalars["perf/sps"] = interval.updates * self.sizes.steps_per_update / interval.seconds
    bad = sorted(k for k, v in scalars.items() if not math.isfinite(v))
    if bad:
      self._diverged(bad, update, interval.updates)
    if update // config.eval_every > (update - interval.updates) // config.eval_every or \
        update == self.sizes.num_updates:
      scalars.update(self._evaluation(state, update))
    record = {"step": update * self.sizes.steps_per_update, "update": update,
              "time": round(self.elapsed + time.perf_counter() - self.started, 3), **scalars}  # as metrics.jsonl has it
    history.append(record)
    try:
      session.writer.write(step=record["step"], update=update, time=record["time"], scalars=scalars)
    except OSError as error:
      raise RunFailed(f"cannot write {error.filename} ({error.strerror}); "
                      f"{session.checkpoints.then('Free space')}") from None
    if update // config.checkpoint_every > last_saved // config.checkpoint_every:
      session.checkpoints.save(update, self.runner.get(state), record=record)
      return update
    session.checkpoints.check()
    return last_saved

  def _evaluation(self, state, update: int) -> dict[str, float]:
    """Evaluation episodes (`config.eval_policy`) of every agent after `update`: eval/return and eval/length; best/
    kept (`Best`)."""
    state = self.runner.get(state)
    results = sharding.to_host(self.evaluate(state.learner, self.eval_keys(update)))
    episodes = {f"eval/{name}": (values.sum(-1), np.full(values.shape[:-1], values.shape[-1]))
                for name, values in results.items()}  # per agent: (sum, count) over its episodes
    total, count = episodes["eval/return"]
    self.best.keep(update, state, np.asarray(total, np.float64) / count)  # each agent's mean, as `summarize` has it
    return metrics.summarize(episodes, self.labels)

  def _diverged(self, bad: list[str], update: int, n: int):
    """Stops the run for non-finite `bad` in the `n` updates up to `update`. In the first log interval after a resume,
    the checkpoint resumed from is named as the likelier cause (damage no checksum saw: an older distrl saved none)."""
    step = update * self.sizes.steps_per_update
    where = f"non-finite {', '.join(bad)} in updates {update - n + 1}..{update} (step {step:,})"
    if update - n == self.first_update > 0:
      resumed = f"{self.session.checkpoints.directory}/{self.first_update}"
      raise TrainingDiverged(f"{where}, the first after resuming from {resumed}: that checkpoint may be damaged. Move "
                             f"it out of {self.session.checkpoints.directory} and run the same command to resume "
                             f"from the one before (if that diverges too, a lower lr or max_grad_norm usually helps)")
    raise TrainingDiverged(f"{where}; {self.session.checkpoints.kept()}. A lower lr or max_grad_norm usually helps")
