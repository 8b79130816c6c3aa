"""Orbax checkpoints of the full `TrainState` (global layout), one per saved update."""

import os

import jax
import orbax.checkpoint as ocp

from distrl.errors import ConfigError


class Checkpoints:
  """`WORKDIR/checkpoints/<update>/`, written atomically by orbax; the newest `keep` are kept."""

  def __init__(self, directory: str, *, keep: int):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest(self) -> int | None:
    """The newest complete checkpoint's update number, or None."""
    return self._manager.latest_step()

  def save(self, update: int, state) -> None:
    """Starts saving `state` as `update` (written in the background; `close` waits for it)."""
    if update not in self._manager.all_steps():
      self._manager.save(update, args=ocp.args.StandardSave(state))

  def restore(self, update: int, like):
    """The checkpoint `update`, placed with the shardings of `like` (a state of the same config)."""
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like)
    try:
      return self._manager.restore(update, args=ocp.args.StandardRestore(abstract))
    except (ValueError, KeyError, TypeError) as error:
      raise ConfigError(f"the checkpoint at {self.directory}/{update} does not match this config "
                        f"(different environment, network or sizes?): {str(error).splitlines()[0]}. "
                        f"Resume with the config it was written with, or use a new --workdir.") from error

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
