"""The training state every algorithm returns from `init` and threads through `update`."""

from typing import Any

import jax
from flax import struct


@struct.dataclass
class TrainState:
  """The whole state of a run: everything needed to resume it bit for bit.

  Attributes:
    update: number of training iterations done so far, an int32 scalar.
    learner: the same on every device: parameters, optimizer state, target parameters.
    actors: one row per environment; every leaf's leading axis is the *global* environment
      index (env states, last observations, per-environment RNG keys, replay shards). This is
      the part that is split over devices.
  """

  update: jax.Array
  learner: Any
  actors: Any
