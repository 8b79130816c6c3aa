"""The training state every algorithm returns from `init` and threads through `update`."""

from typing import Any

import jax
import optax
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


def apply_gradients(tx: optax.GradientTransformation, learner, grads):
  """`learner` (any dataclass with `params` and `opt_state`) after one optimizer step on `grads`: the step every
  algorithm takes, under the named scope benchmarks/profile.py reports as "optimizer"."""
  with jax.named_scope("optimizer"):
    updates, opt_state = tx.update(grads, learner.opt_state, learner.params)
    return learner.replace(params=optax.apply_updates(learner.params, updates), opt_state=opt_state)
