"""The replay buffer: one row of slots per environment, on the devices, and how a global batch is read from it (the
n-step return of a window of steps read from a row is `distrl.rl.returns.n_step_return`).

Every leaf is shaped (E, capacity, ...): the environment axis leads, so the buffer is split over
devices with the rest of `actors`. All environments write in lockstep, so the write position,
the filled slots and the slots that can start an n-step window all follow from how many steps
each environment has added (`Starts`): the storage is the only state.

A batch is a set of *global* positions (environment, slot), drawn the same on every device
(from a replicated key, see `uniform`, or `priorities.choose`). Each device reads the positions
in its own rows (`owned_rows`, `gather`) and contributes zeros for the others, and one psum
(`share`) gives every device the whole global batch. Which transitions form a batch thus does
not depend on how the rows are split over devices or processes.
"""

import jax
import jax.numpy as jnp
from flax import struct

from distrl import sharding


@struct.dataclass
class Transition:
  """One environment step; `next_obs` is the observation reached before any auto-reset."""

  obs: jax.Array
  action: jax.Array
  reward: jax.Array
  next_obs: jax.Array
  terminated: jax.Array  # s' is terminal: no bootstrap (a time-limit truncation is not)
  episode_end: jax.Array  # terminated or truncated: the next slot of the row starts a new episode


@struct.dataclass
class Starts:
  """The slots of every row that start a complete n-step window: `count` consecutive slots from `oldest`
  (wrapping around the row), the steps t with max(0, added - capacity) <= t <= added - n."""

  oldest: jax.Array  # int32 scalar: the slot of the oldest step still held
  count: jax.Array  # int32 scalar: how many start slots there are (< 1: none yet)


def init(example: Transition, num_envs: int, capacity: int) -> Transition:
  """Zeroed storage shaped (num_envs, capacity, *leaf shape) for transitions like `example`."""
  return jax.tree.map(lambda x: jnp.zeros((num_envs, capacity) + jnp.shape(x), jnp.asarray(x).dtype), example)


def capacity_of(buffer: Transition) -> int:
  return buffer.reward.shape[1]


def add(buffer: Transition, steps: Transition, added: jax.Array) -> Transition:
  """Writes `steps` (leaves (E, n, ...)) after the `added` steps already written per environment.

  `capacity` must be a multiple of n and `added` a multiple of n, so that a write never wraps
  inside a block; the oldest block is overwritten once the buffer is full.
  """
  position = (added % capacity_of(buffer)).astype(jnp.int32)
  return jax.tree.map(lambda b, x: jax.lax.dynamic_update_slice_in_dim(b, x.astype(b.dtype), position, axis=1),
                      buffer, steps)


def starts(capacity: int, added: jax.Array, n_step: int) -> Starts:
  """Where complete n-step windows start, once every environment has added `added` steps."""
  added = jnp.asarray(added, jnp.int32)
  oldest = jnp.where(added >= capacity, added % capacity, 0)
  return Starts(oldest=oldest, count=jnp.minimum(added, capacity) - (n_step - 1))


def valid(where: Starts, capacity: int) -> jax.Array:
  """(capacity,) bool: the slots that start a complete window."""
  return (jnp.arange(capacity) - where.oldest) % capacity < where.count


def uniform(key: jax.Array, batch_size: int, num_envs: int, capacity: int, where: Starts):
  """`batch_size` global positions drawn uniformly, with replacement, over every environment's start slots.

  One draw of (batch_size, 2) uniforms u: environment floor(u_0 * E), slot oldest + floor(u_1 * count).
  Returns (env, slot), each (batch_size,) int32.
  """
  u = jax.random.uniform(key, (batch_size, 2))
  env = jnp.minimum((u[:, 0] * num_envs).astype(jnp.int32), num_envs - 1)
  offset = jnp.minimum((u[:, 1] * where.count).astype(jnp.int32), where.count - 1)
  return env, (where.oldest + offset) % capacity


def owned_rows(env: jax.Array, num_local: int):
  """For global environment indices `env`: (this device's row of each, and whether this device holds it)."""
  local = env - sharding.global_index(num_local)[0]
  owned = (local >= 0) & (local < num_local)
  return jnp.clip(local, 0, num_local - 1), owned


def gather(buffer: Transition, row: jax.Array, slot: jax.Array) -> Transition:
  """The transitions at (row, slot % capacity) for index arrays of one (broadcast) shape S: leaves (*S, ...)."""
  slot = slot % capacity_of(buffer)
  return jax.tree.map(lambda b: b[row, slot], buffer)


def share(tree, owned: jax.Array):
  """Every device's `tree` (leaves (B, ...)) where it `owned` the row, summed over devices: the global batch,
  the same on every device. Leaves are summed as float32 (booleans included) except integers."""

  def masked(x):
    x = x.astype(jnp.float32) if x.dtype == jnp.bool_ else x
    return jnp.where(owned.reshape(owned.shape + (1,) * (x.ndim - 1)), x, jnp.zeros((), x.dtype))

  return sharding.psum(jax.tree.map(masked, tree))

