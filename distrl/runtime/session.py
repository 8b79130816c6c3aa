"""A run's hold on its workdir, from the lock to the unlock: what it opens there and closes whatever happens.

`Session` takes the workdir's lock (process 0; every process learns whether it got it), moves an old run aside
for `--overwrite`, opens the checkpoint managers (`checkpoints/`, where the newest `keep_checkpoints` and the end of
every finished run are kept, and `best/` for the best greedy evaluation, `distrl.runtime.best`), records each start in `config.json`
and `run.json`, opens the log writers (and the trackers a config asks for, `distrl.runtime.trackers`), and on the way
out waits for a save in flight, closes the writers and releases the lock.
"""

from typing import Callable

import jax
import ml_collections
import numpy as np

from distrl.errors import ConfigError, RunFailed
from distrl.runtime import metrics
from distrl.runtime.checkpoint import Checkpoints
from distrl.runtime.resume import Plan, record_config
from distrl.runtime.trackers import Trackers
from distrl.runtime.workdir import Workdir


class Session:
  """The open workdir of one start of a run (a context manager)."""

  def __init__(self, workdir: Workdir, console: metrics.Console):
    self.workdir, self.console = workdir, console
    self.checkpoints: Checkpoints | None = None
    self.best: Checkpoints | None = None
    self.writer: metrics.Writer | None = None  # opened by `record_start`
    self._made_workdir = False  # this start made the directory: a start that records nothing removes it again

  @property
  def say(self) -> Callable[[str], None]:
    return self.console.print

  def open(self, config: ml_collections.ConfigDict, *, overwrite: bool) -> "Session":
    """Locks the workdir (a ConfigError names the run that holds it), then opens what the run keeps there."""
    self._made_workdir = self.workdir.create(jax.process_index())
    refused = self.workdir.lock()
    if jax.process_count() > 1:  # every process learns whether process 0 got the lock
      from jax.experimental import multihost_utils
      locked = bool(multihost_utils.broadcast_one_to_all(np.int32(refused is None)))
      refused = refused or (None if locked else f"process 0 could not lock --workdir={self.workdir.path}")
    if refused:
      raise ConfigError(refused)
    try:
      if overwrite:
        self._move_aside()
      finished = tuple((self.workdir.read_json("run.json") or {}).get("finished", []))
      self.checkpoints = Checkpoints(self.workdir.file("checkpoints"), keep=config.keep_checkpoints,
                                     preserve=finished)  # the end of a finished run is never rotated away
      self.best = Checkpoints(self.workdir.file("best"), keep=1, best_of="eval/return")  # the mean over agents
      for warning in self.best.warnings:
        self.say(warning)
    except BaseException:
      self.close(failing=True)
      raise
    return self

  def _move_aside(self) -> None:
    moved = self.workdir.move_aside()
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices("distrl-overwrite")
    if moved:
      self.say(f"--overwrite: moved the run that was in {self.workdir.path} to {moved}")

  def record_start(self, plan: Plan, config: ml_collections.ConfigDict, *, devices: int, total_steps: int,
                   steps_per_update: int) -> None:
    """Writes config.json (this start's config) and run.json (every start, with the settings it changed), and opens
    the log writers, which go on from the plan's update."""
    recorded = record_config(config)
    self.workdir.write_json("config.json", recorded)
    this_start = {"devices": devices, "processes": jax.process_count(), "jax": jax.__version__}
    before = (plan.last_start or {}) if plan.restored is not None else {}  # a new run keeps nothing of an old one
    starts = before.get("starts", [])
    starts.append({"update": plan.update, **this_start, "changed": {k: list(v) for k, v in plan.changes.items()}})
    finished = {"finished": before["finished"]} if before.get("finished") else {}  # kept for good, however extended
    self.workdir.write_json("run.json", {**this_start, "starts": starts, **finished})
    opened = Trackers.open(config, recorded, self.workdir, self.say) if self.workdir.primary else None
    self.writer = metrics.Writer(self.workdir.path, total_steps=total_steps, name=f"{config.algo} {config.env_name}",
                                 console=self.console, primary=self.workdir.primary,
                                 resume_step=plan.update * steps_per_update, trackers=opened)

  def record_finish(self, update: int) -> None:
    """Adds `update`, where the run finished, to run.json's "finished": those checkpoints are kept for good, also
    when the run is extended later."""
    run = self.workdir.read_json("run.json") or {}
    run["finished"] = sorted(set(run.get("finished", [])) | {update})
    self.workdir.write_json("run.json", run)

  def close(self, failing: bool = False) -> None:
    """Waits for a save in flight, closes the writers (a full disk is one RunFailed, unless a failure is already on
    its way out: `failing`) and releases the lock; a workdir this start made and recorded nothing in is removed."""
    for manager in (self.checkpoints, self.best):
      if manager is not None:
        manager.close()  # waits for a save in flight
    try:
      if self.writer is not None:
        try:
          self.writer.close(failed=failing)
        except OSError as error:  # a full disk; where a failure is already on its way out, that one is reported
          if not failing:
            raise RunFailed(f"cannot write the logs in {self.workdir.path} ({error.strerror}); the run's checkpoints "
                            f"are complete. Free space and check metrics.jsonl") from None
      else:
        self.console.end()
        if self._made_workdir:
          self.workdir.remove_if_unused()
    finally:
      self.workdir.unlock()

  def __enter__(self) -> "Session":
    return self

  def __exit__(self, kind, error, traceback) -> None:
    self.close(failing=kind is not None)
