"""Prioritised replay: draws in proportion to priority over the global buffer, on any device count; no drift."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from distrl import sharding
from distrl.dqn import priorities
from distrl.rl import replay

pytestmark = pytest.mark.unit

NUM_ENVS, CAPACITY = 8, 16


def _draw(priority, valid, key, batch_size, devices):
  """(global env, slot, priority) of every sample, and the draw's total and minimum, from `devices` devices."""
  mesh = sharding.make_mesh(jax.devices()[:devices])

  @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P(sharding.DATA_AXIS), P()), out_specs=P())
  def draw(local, key):
    drawn = priorities.choose(key, local, valid, batch_size)
    env = drawn.row + sharding.global_index(local.shape[0])[0]
    samples = replay.share((env, drawn.slot, drawn.priority), drawn.owned)
    return samples, drawn.total, drawn.minimum

  return jax.device_get(jax.jit(draw)(jax.device_put(priority, NamedSharding(mesh, P(sharding.DATA_AXIS))), key))


def _priorities(key):
  """Priorities spanning three orders of magnitude, with zeros (never to be drawn) in row 2 and slot 5 of every row."""
  p = 10.0 ** jax.random.uniform(key, (NUM_ENVS, CAPACITY), minval=-2, maxval=1)
  return p.at[2].set(0.0).at[:, 5].set(0.0)


def _assert_frequencies_match(priority, valid, env, slot):
  """Every slot's count within 5 standard errors of N * P(slot) (binomial): with ~100 slots, a correct sampler
  fails this with probability ~1e-4 (and the seed is fixed); a slot of zero probability is never drawn."""
  weights = np.where(valid, np.asarray(priority, np.float64), 0.0)
  probability = weights / weights.sum()
  counts = np.zeros_like(probability)
  np.add.at(counts, (env, slot), 1)
  n = len(env)
  assert np.all(counts[probability == 0] == 0), "drew a slot of zero priority"
  tolerance = 5 * np.sqrt(n * probability * (1 - probability)) + 1e-9
  worst = np.max(np.abs(counts - n * probability) / tolerance)
  assert worst < 1, f"a slot's count is {worst * 5:.1f} standard errors from its expectation"


def test_draws_follow_priorities_over_every_environment_the_same_on_any_device_count():
  priority = _priorities(jax.random.PRNGKey(0))
  valid = jnp.arange(CAPACITY) < 13  # slots 13-15 start no complete window
  (env, slot, drawn), total, minimum = _draw(priority, valid, jax.random.PRNGKey(1), 200_000, devices=1)
  _assert_frequencies_match(priority, valid, env.astype(int), slot.astype(int))
  np.testing.assert_allclose(drawn, np.asarray(priority)[env.astype(int), slot.astype(int)])
  held = np.asarray(priority)[:, :13]
  np.testing.assert_allclose(total, held.sum(), rtol=1e-5)
  assert minimum == held.min() == 0  # row 2 and slot 5 hold zeros (a running buffer never has a zero start slot)
  if jax.device_count() > 1:  # the same draw when the rows are split over every device
    (env8, slot8, drawn8), total8, minimum8 = _draw(priority, valid, jax.random.PRNGKey(1), 200_000,
                                                    devices=jax.device_count())
    np.testing.assert_array_equal(env8, env)
    np.testing.assert_array_equal(slot8, slot)
    np.testing.assert_array_equal(drawn8, drawn)


def test_a_slot_drawn_twice_gets_the_larger_new_priority_and_other_devices_rows_are_untouched():
  priority = jnp.ones((2, 4))
  drawn = priorities.Draw(row=jnp.array([1, 1, 0, 0]), owned=jnp.array([True, True, True, False]),
                          slot=jnp.array([2, 2, 3, 1]), priority=jnp.ones(4), total=jnp.float32(8),
                          minimum=jnp.float32(1))
  updated = priorities.assign(priority, drawn, jnp.array([0.5, 0.25, 7.0, 9.0]))
  # row 1 slot 2 drawn twice: max(0.5, 0.25); row 0 slot 3 set to 7; the fourth sample is another device's
  np.testing.assert_array_equal(updated, [[1, 1, 1, 7], [1, 1, 0.5, 1]])


def test_a_million_priority_updates_leave_sampling_exact():
  """The float32 sum-tree failure: after millions of incremental updates the inner sums drift from the leaves
  and draws land on zero-priority or stale slots. Here 2^20 updates (16,384 steps of 64), each step drawing a
  batch first; no draw may ever hit a zero-priority slot, and the final draws must follow the final priorities."""
  steps, batch = 16_384, 64
  mesh = sharding.make_mesh(jax.devices()[:1])
  valid = jnp.arange(CAPACITY) != 5

  def step(_, carry):
    priority, key, zero_draws = carry
    key, draw_key, new_key = jax.random.split(key, 3)
    drawn = priorities.choose(draw_key, priority, valid, batch)
    zero_draws += jnp.sum(drawn.priority <= 0)
    new = 10.0 ** jax.random.uniform(new_key, (batch,), minval=-3, maxval=3)  # six orders of magnitude
    return priorities.assign(priority, drawn, new), key, zero_draws

  @functools.partial(jax.shard_map, mesh=mesh, in_specs=P(sharding.DATA_AXIS), out_specs=P(sharding.DATA_AXIS))
  def run(priority):
    carry = (priority, jax.random.PRNGKey(2), sharding.per_device(jnp.zeros(1, jnp.int32)))
    priority, _, zero_draws = jax.lax.fori_loop(0, steps, step, carry)
    return priority, zero_draws

  start = jnp.where(valid, _priorities(jax.random.PRNGKey(3)).at[2].set(1.0), 0.0)
  priority, zero_draws = jax.device_get(jax.jit(run)(start))
  assert steps * batch >= 10**6
  assert zero_draws[0] == 0
  assert not np.allclose(priority, start)  # the updates landed
  (env, slot, _), total, _ = _draw(jnp.asarray(priority), valid, jax.random.PRNGKey(4), 200_000, devices=1)
  _assert_frequencies_match(priority, valid, env.astype(int), slot.astype(int))
  np.testing.assert_allclose(total, np.asarray(priority, np.float64)[:, np.asarray(valid)].sum(), rtol=1e-5)
