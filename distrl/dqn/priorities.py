"""Prioritised replay (Schaul et al. 2016, proportional): priorities beside the replay rows, sampled over the
*global* buffer.

`priority` is shaped (E, capacity) like the replay rows, lives in `actors` (split over devices with
them, checkpointed with them) and holds p_i = (|td_i| + eps)^alpha, already raised to alpha. A new
transition gets the running maximum of every p given so far (kept in the learner). Transition i
of the buffer is drawn with probability P(i) = p_i / sum_j p_j, over the start slots of every
environment, whatever the device count:

  1. Each device takes the cumulative sums of its rows' priorities over their start slots; the row
     totals T_e and minimums travel in one all-gather, so every device holds all E of them.
  2. Every device picks the same environment e for each sample from a replicated uniform u_0:
     the first e with cumsum(T)_e > u_0 * G, G = sum_e T_e.
  3. The device holding row e picks the slot from a second replicated uniform u_1: the first j
     with cumsum(p_e)_j > u_1 * T_e. So P(e, j) = T_e / G * p_j / T_e = p_j / G.

There is no sum tree: every row's cumulative sums are recomputed from the leaves at each draw
(O(buffer) per gradient step, small next to the gradient step itself). Nothing is updated
incrementally, so no running sum can drift away from its leaves, the known failure of float32 sum
trees (after millions of updates their inner sums no longer match the leaves and sampling returns
zero-priority or out-of-range slots); the error of one draw is that of one float32 cumsum. A slot
of zero priority (unwritten) is never drawn, nor is one outside the `valid` mask (not a complete n-step window
yet), whatever its priority.
"""

import jax
import jax.numpy as jnp
from flax import struct

from distrl import sharding
from distrl.rl import replay


@struct.dataclass
class Draw:
  """Where a batch's samples are, as this device sees them; leaves (B,)."""

  row: jax.Array  # this device's row of each sample (clipped into range where it holds none)
  owned: jax.Array  # this device holds the sample's row
  slot: jax.Array  # the slot within the row (meaningful where owned)
  priority: jax.Array  # p of the sample (meaningful where owned)
  total: jax.Array  # scalar, the same everywhere: G, the sum of every start slot's priority
  minimum: jax.Array  # scalar, the same everywhere: the smallest priority of any start slot


def init(num_envs: int, capacity: int) -> jax.Array:
  return jnp.zeros((num_envs, capacity), jnp.float32)


def write(priority: jax.Array, value: jax.Array, added: jax.Array, num_steps: int) -> jax.Array:
  """Every row's `num_steps` slots written after `added` steps get priority `value` (a scalar)."""
  block = jnp.full((priority.shape[0], num_steps), value, priority.dtype)
  return jax.lax.dynamic_update_slice_in_dim(priority, block, (added % priority.shape[1]).astype(jnp.int32), axis=1)


def first_above(cumsum: jax.Array, row: jax.Array, value: jax.Array) -> jax.Array:
  """For each b, the first j with cumsum[row_b, j] > value_b (the last j if none): a binary search.

  cumsum is (R, C), non-decreasing along C; row and value are (B,). Unrolled: ceil(log2 C) steps,
  each a gather of B values.
  """
  num = cumsum.shape[1]
  low, high = jnp.zeros_like(row), jnp.full_like(row, num - 1)
  for _ in range(max(1, (num - 1).bit_length())):
    middle = (low + high) // 2
    above = cumsum[row, middle] > value
    low, high = jnp.where(above, low, middle + 1), jnp.where(above, middle, high)
  return low


def _below(total: jax.Array, u: jax.Array) -> jax.Array:
  """u * total, kept strictly below total (u * total can round up to it when u is just below 1)."""
  return jnp.minimum(u * total, jnp.nextafter(total, jnp.zeros_like(total)))


def choose(key: jax.Array, priority: jax.Array, valid: jax.Array, batch_size: int) -> Draw:
  """`batch_size` samples in proportion to priority over every device's start slots (`valid`, (capacity,)).

  `priority` is this device's rows (E_local, capacity); the draw is the same whatever the split.
  """
  num_local = priority.shape[0]
  cumsum = jnp.cumsum(jnp.where(valid, priority, 0.0), axis=1)  # (E_local, capacity)
  local_minimum = jnp.min(jnp.where(valid, priority, jnp.inf), axis=1)
  rows = sharding.gather(jnp.stack([cumsum[:, -1], local_minimum], axis=1))  # (E, 2): every row's total, minimum
  row_cumsum = jnp.cumsum(rows[:, 0])
  u = jax.random.uniform(key, (batch_size, 2))
  env = first_above(row_cumsum[None], jnp.zeros(batch_size, jnp.int32), _below(row_cumsum[-1], u[:, 0]))
  row, owned = replay.owned_rows(env, num_local)
  slot = first_above(cumsum, row, _below(cumsum[row, -1], u[:, 1]))
  return Draw(row=row, owned=owned, slot=slot, priority=priority[row, slot], total=row_cumsum[-1],
              minimum=jnp.min(rows[:, 1]))


def assign(priority: jax.Array, draw: Draw, new: jax.Array) -> jax.Array:
  """The priorities with the drawn slots set to `new` (B,) on the device that holds them.

  A slot drawn twice gets the larger of its new values, so the result does not depend on the
  order in which the scatter applies duplicates.
  """
  row = jnp.where(draw.owned, draw.row, priority.shape[0])  # out of range: dropped
  cleared = priority.at[row, draw.slot].set(0.0, mode="drop")
  return cleared.at[row, draw.slot].max(new, mode="drop")
