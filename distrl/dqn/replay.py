"""A uniform replay buffer that lives on the devices, one row of slots per environment.

Every leaf is shaped (E, capacity, ...): the environment axis leads, so the buffer is split over
devices with the rest of `actors`, and each device samples from the rows of its own environments.
All environments write in lockstep, so the write position and the number of filled slots follow
from how many steps each environment has added: the storage is the only state.
"""

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Transition:
  """One environment step; `next_obs` is the observation reached before any auto-reset."""

  obs: jax.Array
  action: jax.Array
  reward: jax.Array
  next_obs: jax.Array
  terminated: jax.Array  # s' is terminal: no bootstrap (a time-limit truncation is not)


def init(example: Transition, num_envs: int, capacity: int) -> Transition:
  """Zeroed storage shaped (num_envs, capacity, *leaf shape) for transitions like `example`."""
  return jax.tree.map(lambda x: jnp.zeros((num_envs, capacity) + jnp.shape(x), jnp.asarray(x).dtype), example)


def add(buffer: Transition, steps: Transition, added: jax.Array) -> Transition:
  """Writes `steps` (leaves (E, n, ...)) after the `added` steps already written per environment.

  `capacity` must be a multiple of n and `added` a multiple of n, so that a write never wraps
  inside a block; the oldest block is overwritten once the buffer is full.
  """
  capacity = jax.tree.leaves(buffer)[0].shape[1]
  position = (added % capacity).astype(jnp.int32)
  return jax.tree.map(lambda b, x: jax.lax.dynamic_update_slice_in_dim(b, x.astype(b.dtype), position, axis=1),
                      buffer, steps)


def sample(buffer: Transition, key: jax.Array, batch_size: int, filled: jax.Array) -> Transition:
  """`batch_size` transitions drawn uniformly (with replacement) from the first `filled` slots of every row."""
  num_envs = jax.tree.leaves(buffer)[0].shape[0]
  env_key, slot_key = jax.random.split(key)
  env = jax.random.randint(env_key, (batch_size,), 0, num_envs)
  slot = jax.random.randint(slot_key, (batch_size,), 0, filled)
  return jax.tree.map(lambda b: b[env, slot], buffer)
