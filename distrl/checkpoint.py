"""Orbax checkpoints of the full `TrainState` (global layout), one per saved update.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a
process killed mid-save leaves no checkpoint that looks whole. A checkpoint that is whole but
unreadable (a truncated or corrupted file) is moved aside as `<update>.corrupt` with a warning,
and the previous one is used. A checkpoint whose arrays do not have the shapes the current
config gives is refused: it was written by another config.
"""

import os
import time
from typing import Callable

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from distrl.errors import ConfigError


class IncompatibleCheckpoint(ConfigError):
  """The checkpoint's arrays differ in shape or structure from this config's state."""


def signature(tree) -> dict[str, tuple]:
  """{"actors/obs": (shape, dtype), ...} for a state, an abstract state or checkpoint metadata."""

  def name(key):
    return str(getattr(key, "name", getattr(key, "key", getattr(key, "idx", key))))

  return {"/".join(map(name, path)): (tuple(leaf.shape), str(leaf.dtype))
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


class Checkpoints:
  """`WORKDIR/checkpoints/<update>/`; the newest `keep` are kept."""

  def __init__(self, directory: str, *, keep: int, best_of: str | None = None):
    """Keeps the newest `keep` checkpoints, or, with `best_of`, the `keep` with the highest such metric."""
    self.directory, self.best_of = os.path.abspath(directory), best_of
    best = dict(best_fn=lambda metrics: metrics[best_of], best_mode="max") if best_of else {}
    # Each manager's cross-process barriers get their own names: two managers saving the same update
    # (checkpoints/ and best/) would otherwise wait at each other's barriers and deadlock.
    sync = ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=os.path.basename(self.directory))
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, multiprocessing_options=sync, **best)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_handlers=ocp.StandardCheckpointHandler())

  def saved(self) -> list[int]:
    """The update numbers of every complete checkpoint, oldest first."""
    return sorted(self._manager.all_steps())

  def latest(self) -> int | None:
    """The newest complete checkpoint's update number, or None."""
    return self._manager.latest_step()

  def save(self, update: int, state, metrics: dict[str, float] | None = None) -> None:
    """Starts saving `state` as `update` (written in the background; `close` waits for it)."""
    if update not in self._manager.all_steps():
      self._manager.save(update, args=ocp.args.StandardSave(state), metrics=metrics)

  def best(self) -> tuple[int, float] | None:
    """(update, metric) of the best checkpoint kept, for a manager made with `best_of`."""
    self._manager.wait_until_finished()
    update = self._manager.best_step()
    return None if update is None else (update, float(self._manager.metrics(update)[self.best_of]))

  def restore(self, update: int, like):
    """The checkpoint `update`, placed with the shardings of `like` (a state of the same config)."""
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like)
    return self._manager.restore(update, args=ocp.args.StandardRestore(abstract))

  def restore_latest(self, like, *, warn: Callable[[str], None]):
    """(update, state) from the newest readable checkpoint, or (None, like) if there is none.

    Raises IncompatibleCheckpoint if the newest checkpoint was written by a config of other shapes.
    """
    expected = signature(like)
    for update in sorted(self._manager.all_steps(), reverse=True):
      try:
        found = signature(self._manager.item_metadata(update))
      except Exception as error:  # unreadable metadata: a damaged checkpoint
        self._set_aside(update, error, warn)
        continue
      if found != expected:
        differ = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
        details = ", ".join(f"{k}: {found.get(k, 'missing')} in the checkpoint vs {expected.get(k, 'missing')}"
                            for k in differ[:3])
        raise IncompatibleCheckpoint(f"the checkpoint {self.directory}/{update} holds arrays of other shapes "
                                     f"than this config's ({details}{', ...' if len(differ) > 3 else ''})")
      try:
        return update, self.restore(update, like)
      except Exception as error:  # whole metadata but unreadable arrays
        self._set_aside(update, error, warn)
    return None, like

  def _set_aside(self, update: int, error: Exception, warn: Callable[[str], None]) -> None:
    """Renames a damaged checkpoint out of the manager's sight, keeping it for inspection."""
    reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    target = os.path.join(self.directory, f"{update}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    warn(f"warning: checkpoint {self.directory}/{update} is damaged ({reason}); moved it to {target} "
         f"and trying the one before")
    if jax.process_index() == 0:
      os.rename(os.path.join(self.directory, str(update)), target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"distrl-set-aside-{update}")
    self._manager.reload()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
