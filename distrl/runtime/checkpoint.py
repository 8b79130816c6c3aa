"""Orbax checkpoints of the full `TrainState` (global layout), one per saved update.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a
process killed mid-save leaves no checkpoint that looks whole. A checkpoint that is whole but
unreadable (a truncated or corrupted file), or whose data files differ from the checksums saved with it
(`checksums.py`), is moved aside as `<update>.corrupt-<time>` with a warning, and the previous one is used. A
checkpoint whose arrays do not have the shapes the current config gives is refused: it was written by another config.
"""

import json
import logging
import os
import re
import time
from typing import Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from distrl.errors import ConfigError, RunFailed, first_line
from distrl.runtime import checksums

RECORD = "distrl-record.json"  # in a checkpoint's directory: its update's record, as metrics.jsonl has it
CORRUPT = ".corrupt-"  # a damaged checkpoint moved aside: `<update>.corrupt-<time>`
UNFINISHED = ".orbax-checkpoint-tmp"  # orbax's suffix of a save's directory until the save is complete

# Orbax splits the writing of a replicated array over its replicas by default ("replica-parallel"): on a host of
# emulated CPU devices that compiles a slice per device and leaf at every start (0.8 s of a short 8-device launch)
# and writes nothing faster. One replica writes each array, as orbax does by default on GPUs. (Orbax logs a warning
# on any override: not ours to show.)
_silenced = logging.root.manager.disable
logging.disable(logging.WARNING)
try:
  ocp.type_handlers.register_type_handler(jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False),
                                          override=True)
finally:
  logging.disable(_silenced)


class IncompatibleCheckpoint(ConfigError):
  """The checkpoint's arrays differ in shape or structure from this config's state."""


class DamagedCheckpoint(Exception):
  """The checkpoint's data files differ from the checksums saved with it."""


def signature(tree) -> dict[str, tuple]:
  """{"actors/obs": (shape, dtype), ...} for a state, an abstract state or checkpoint metadata."""

  def name(key):
    return str(getattr(key, "name", getattr(key, "key", getattr(key, "idx", key))))

  return {"/".join(map(name, path)): (tuple(leaf.shape), str(leaf.dtype))
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


class Checkpoints:
  """`WORKDIR/checkpoints/<update>/`; the newest `keep` are kept."""

  def __init__(self, directory: str, *, keep: int, best_of: str | None = None, create: bool = True,
               preserve: tuple[int, ...] = ()):
    """Keeps the newest `keep` checkpoints and those of the updates in `preserve` (the ends of finished runs), or,
    with `best_of`, the `keep` with the highest such metric (`create`: make the directory if it is missing;
    readers pass False)."""
    self.directory, self.best_of = os.path.abspath(directory), best_of
    if best_of:
      kept = dict(best_fn=lambda metrics: metrics[best_of], best_mode="max", max_to_keep=keep)
    else:
      kept = dict(preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(
          [ocp.checkpoint_managers.LatestN(n=keep), ocp.checkpoint_managers.CustomSteps(steps=preserve)]))
    # Each manager's cross-process barriers get their own names: two managers saving the same update
    # (checkpoints/ and best/) would otherwise wait at each other's barriers and deadlock.
    sync = ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=os.path.basename(self.directory))
    self._saving: int | None = None  # the update of the save in flight, for its checksums (one at a time)
    self._record: dict | None = None  # and its record
    summed = ocp.options.AsyncOptions(post_finalization_callback=self._seal)
    options = ocp.CheckpointManagerOptions(create=create, multiprocessing_options=sync, async_options=summed, **kept)
    self.warnings: list[str] = []  # what opening set aside (a damaged metrics file in best/), for the caller to say
    self._manager = self._open(options, repair=create)

  def _open(self, options, *, repair: bool):
    """Orbax's manager. Orbax reads every step's metrics (best/) as it opens, and a damaged metrics file stops it:
    with `repair` (the trainer) such a checkpoint is set aside first, otherwise (readers) it is a ConfigError."""
    try:
      return ocp.CheckpointManager(self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler())
    except ValueError:  # json's error, about a step's metrics
      damaged = [update for update in self.complete() if not _json_file(os.path.join(self.directory, str(update),
                                                                                     "metrics", "metrics"))]
      if not damaged:
        raise
      if not repair:
        raise ConfigError(f"checkpoint {self.directory}/{damaged[0]} is damaged (metrics/metrics is not JSON)") from None
      for update in damaged:
        self.warnings.append(f"warning: checkpoint {self.directory}/{update} is damaged (metrics/metrics is not "
                             f"JSON); moved it to {self._move_aside(update)}")
      return ocp.CheckpointManager(self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler())

  def saved(self) -> list[int]:
    """The update numbers of every complete checkpoint, oldest first."""
    return sorted(self._manager.all_steps())

  def latest(self) -> int | None:
    """The newest complete checkpoint's update number, or None."""
    return self._manager.latest_step()

  def save(self, update: int, state, metrics: dict[str, float] | None = None, record: dict | None = None) -> None:
    """Starts saving `state` as `update` (written in the background; `finish` waits for it), with `record`, the
    update's line of metrics.jsonl, which a resume from it writes again if metrics.jsonl lost it (`record`).

    A failure of this or of an earlier background save (a full disk, say) is a RunFailed naming the last
    complete checkpoint, which stays as it was.
    """
    self.check()
    if update not in self._manager.all_steps():
      try:
        # Orbax's save waits for the save in flight too, but `_saving` would name the next one before: its checksums.
        self._manager.wait_until_finished()
        self._saving, self._record = update, record
        self._manager.save(update, args=ocp.args.StandardSave(state), metrics=metrics)
      except Exception as error:
        raise self._failed(update, error) from None

  def _seal(self) -> None:
    """Orbax's call once a save's files are final (in process 0, in orbax's background thread, before the save's
    directory is renamed into place): the update's record and the files' checksums go into that directory, so the
    checkpoint is whole with them."""
    final = os.path.join(self.directory, str(self._saving))
    directory = final + UNFINISHED if os.path.isdir(final + UNFINISHED) else final
    if self._record is not None:
      with open(os.path.join(directory, RECORD), "w") as f:
        json.dump(self._record, f)
    checksums.write(directory)

  def record(self, update: int) -> dict | None:
    """The record (metrics.jsonl's line) saved with checkpoint `update`, or None (none saved, or unreadable)."""
    try:
      with open(os.path.join(self.directory, str(update), RECORD)) as f:
        record = json.load(f)
    except (OSError, ValueError):
      return None
    return record if isinstance(record, dict) and record.get("update") == update else None

  def check(self) -> None:
    """Raises RunFailed if a background save has failed."""
    try:
      self._manager.check_for_errors()
    except Exception as error:
      raise self._failed(None, error) from None

  def finish(self) -> None:
    """Waits for saves in flight; RunFailed if one failed."""
    try:
      self._manager.wait_until_finished()
    except Exception as error:
      raise self._failed(None, error) from None

  def _failed(self, update: int | None, error: Exception) -> RunFailed:
    cause = error
    while cause.__cause__ is not None or cause.__context__ is not None:  # orbax wraps the OSError
      cause = cause.__cause__ or cause.__context__
    text = str(cause)
    code = re.search(r"os_error_code='(\d+)'", text)  # tensorstore's write errors carry the errno
    reason = (os.strerror(int(code[1])) if code else cause.strerror if isinstance(cause, OSError) and cause.strerror
              else first_line(cause)[:200])
    tmp = re.search(r"/(\d+)\.orbax-checkpoint-tmp", text)
    update = int(tmp[1]) if tmp else update
    what = f"update {update}" if update is not None else "a checkpoint"
    return RunFailed(f"saving {what} to {self.directory} failed ({reason}); "
                     f"{self.then('Free space (or fix the cause)')}")

  def then(self, fix: str) -> str:
    """The end of a failure's line: what is kept, and that the same command resumes from it once `fix` is done (or,
    with nothing kept, starts the run again)."""
    complete = self.complete()
    if complete:
      return (f"the last complete checkpoint is update {complete[-1]} in {self.directory}. {fix} and run the same "
              f"command to resume from it")
    return f"nothing was saved (no checkpoint was complete yet). {fix} and the same command starts the run again"

  def kept(self) -> str:
    """What a failure keeps, said in the failure's line: the last checkpoint complete on disk, or none."""
    complete = self.complete()
    return (f"the last complete checkpoint is update {complete[-1]} in {self.directory}" if complete
            else "no checkpoint was complete yet")

  def complete(self) -> list[int]:
    """Update numbers of the checkpoints complete on disk, oldest first (not a save in flight, which `saved` and
    `latest` count)."""
    try:
      return sorted(int(name) for name in os.listdir(self.directory) if name.isdigit())
    except OSError:
      return []

  def best(self) -> tuple[int, float] | None:
    """(update, metric) of the best checkpoint kept, for a manager made with `best_of`."""
    self._manager.wait_until_finished()
    update = self._manager.best_step()
    return None if update is None else (update, float(self._manager.metrics(update)[self.best_of]))

  def metrics(self, update: int) -> dict:
    """The metrics saved with checkpoint `update` of a manager made with `best_of`."""
    return dict(self._manager.metrics(update) or {})

  def restore(self, update: int, like):
    """The checkpoint `update`, placed with the shardings of `like` (a state of the same config); DamagedCheckpoint if
    its data files differ from their checksums."""
    self.verify(update)
    return self._read(update, like)

  def _read(self, update: int, like):
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like)
    return self._manager.restore(update, args=ocp.args.StandardRestore(abstract))

  def verify(self, update: int) -> None:
    """Raises DamagedCheckpoint where the data files of checkpoint `update` differ from the checksums saved with it.
    Process 0 reads them and tells the others, so every process takes the same decision (and every one must call
    this)."""
    found = checksums.difference(os.path.join(self.directory, str(update))) if jax.process_index() == 0 else None
    if jax.process_count() > 1:
      damaged = bool(multihost_utils.broadcast_one_to_all(np.int32(found is not None)))
      found = found or ("its files differ from their checksums (process 0 says which)" if damaged else None)
    if found:
      raise DamagedCheckpoint(found)

  def restore_latest(self, like, *, warn: Callable[[str], None], set_aside: bool = True):
    """(update, state) from the newest readable checkpoint, or (None, like) if there is none.

    A damaged checkpoint is said (`warn`) and skipped; with `set_aside` (the trainer) it is also renamed
    `<update>.corrupt-<time>`. Raises IncompatibleCheckpoint if the newest checkpoint was written by a
    config of other shapes.
    """
    unfinished = sorted(name.split(".")[0] for name in os.listdir(self.directory) if UNFINISHED in name)
    if unfinished:
      warn(f"note: the save of update {', '.join(unfinished)} in {self.directory} is unfinished (a run is saving it, "
           f"or stopped while saving it): not a checkpoint, and left for orbax to clean up")
    expected = signature(like)
    skip = self._set_aside if set_aside else (lambda update, error, warn: warn(
        f"warning: checkpoint {self.directory}/{update} is damaged ({damage(error)}); trying the one before"))
    for update in sorted(self._manager.all_steps(), reverse=True):
      try:
        self.verify(update)
        metadata = self._manager.item_metadata(update)
        if metadata is None:  # orbax's answer where the arrays' metadata file is missing
          raise FileNotFoundError("its array metadata (default/_METADATA) is missing")
        found = signature(metadata)
      except Exception as error:  # files unlike their checksums, or unreadable metadata: a damaged checkpoint
        skip(update, error, warn)
        continue
      if found != expected:
        differ = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
        details = ", ".join(f"{k}: {found.get(k, 'missing')} in the checkpoint vs {expected.get(k, 'missing')}"
                            for k in differ[:3])
        raise IncompatibleCheckpoint(f"the checkpoint {self.directory}/{update} holds arrays of other shapes "
                                     f"than this config's ({details}{', ...' if len(differ) > 3 else ''})")
      try:
        return update, self._read(update, like)
      except Exception as error:  # whole metadata but unreadable arrays
        skip(update, error, warn)
    return None, like

  def set_aside(self) -> list[str]:
    """The names of the damaged checkpoints moved aside here (`<update>.corrupt-<time>`), oldest update first."""
    try:
      return sorted((name for name in os.listdir(self.directory) if CORRUPT in name),
                    key=lambda name: int(name.split(".")[0]))
    except (OSError, ValueError):
      return []

  def _set_aside(self, update: int, error: Exception, warn: Callable[[str], None]) -> None:
    """Renames a damaged checkpoint out of the manager's sight, keeping it for inspection."""
    target = self._move_aside(update)
    warn(f"warning: checkpoint {self.directory}/{update} is damaged ({damage(error)}); moved it to {target} "
         f"and trying the one before")
    self._manager.reload()

  def _move_aside(self, update: int) -> str:
    """Renames checkpoint `update` to `<update>.corrupt-<time>` (process 0; the others wait for it); returns that."""
    target = os.path.join(self.directory, f"{update}{CORRUPT}{time.strftime('%Y%m%d-%H%M%S')}")
    if jax.process_index() == 0:
      os.rename(os.path.join(self.directory, str(update)), target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"distrl-set-aside-{update}")
    return target

  def close(self) -> None:
    """Waits for saves in flight and releases the manager; a failure here was reported by `check` or `finish`."""
    try:
      self._manager.close()
    except Exception:  # noqa: BLE001 - the save's failure is raised where it is checked
      pass


def _json_file(path: str) -> bool:
  """Whether `path` is missing or holds JSON (a file orbax would read without failing)."""
  try:
    with open(path) as f:
      json.load(f)
  except FileNotFoundError:
    return True
  except (OSError, ValueError):
    return False
  return True


def damage(error: Exception) -> str:
  """What a failed restore says, in at most 200 characters of one line (less tensorstore's pointer to its details,
  a method's repr)."""
  return first_line(error).split(" See full TensorStore details")[0][:200]

