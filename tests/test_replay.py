"""The replay buffer: layout, wrap-around, sampling only filled slots, per-device shards."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from distrl import sharding
from distrl.dqn import replay


def _example():
  return replay.Transition(obs=jnp.zeros(3), action=jnp.int32(0), reward=jnp.float32(0),
                           next_obs=jnp.zeros(3), terminated=jnp.bool_(False))


def _steps(num_envs, n, start):
  """n steps of num_envs environments; reward = env * 100 + step number, to identify each slot."""
  reward = np.arange(num_envs)[:, None] * 100.0 + np.arange(start, start + n)[None, :]
  return replay.Transition(obs=jnp.zeros((num_envs, n, 3)), action=jnp.zeros((num_envs, n), jnp.int32),
                           reward=jnp.asarray(reward, jnp.float32), next_obs=jnp.zeros((num_envs, n, 3)),
                           terminated=jnp.zeros((num_envs, n), bool))


def test_layout_is_environment_major():
  buffer = replay.init(_example(), num_envs=5, capacity=4)
  assert buffer.obs.shape == (5, 4, 3)
  assert buffer.action.shape == (5, 4) and buffer.action.dtype == jnp.int32


def test_writes_wrap_around_and_overwrite_the_oldest_block():
  buffer = replay.init(_example(), num_envs=2, capacity=4)
  for block in range(3):  # steps 0-1, 2-3, then 4-5 overwrite slots 0-1
    buffer = replay.add(buffer, _steps(2, 2, 2 * block), jnp.int32(2 * block))
  np.testing.assert_array_equal(buffer.reward, [[4, 5, 2, 3], [104, 105, 102, 103]])


def test_sampling_draws_only_filled_slots_and_all_of_them():
  buffer = replay.init(_example(), num_envs=3, capacity=10)
  buffer = replay.add(buffer, _steps(3, 2, 0), jnp.int32(0))  # slots 0-1 filled, 2-9 zero
  batch = replay.sample(buffer, jax.random.PRNGKey(0), 600, filled=jnp.int32(2))
  seen = set(np.asarray(batch.reward).astype(int).tolist())
  assert seen == {0, 1, 100, 101, 200, 201}


def test_each_device_samples_its_own_environments():
  if jax.device_count() < 2:
    pytest.skip("needs several devices: run with the default 8 emulated devices")
  num_devices, envs_per_device = jax.device_count(), 2
  num_envs = num_devices * envs_per_device
  mesh = sharding.make_mesh()
  buffer = replay.add(replay.init(_example(), num_envs, 4), _steps(num_envs, 4, 0), jnp.int32(0))
  buffer = jax.device_put(buffer, NamedSharding(mesh, P(sharding.DATA_AXIS)))

  @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P(sharding.DATA_AXIS), P()), out_specs=P(sharding.DATA_AXIS))
  def sample(local_buffer, key):
    assert local_buffer.reward.shape == (envs_per_device, 4)  # the device sees only its shard
    key = jax.random.fold_in(key, jax.lax.axis_index(sharding.DATA_AXIS))
    return replay.sample(local_buffer, key, 50, filled=jnp.int32(4)).reward[None]

  rewards = np.asarray(sample(buffer, jax.random.PRNGKey(1)))  # (devices, 50)
  for device, row in enumerate(rewards):
    envs = set((row // 100).astype(int).tolist())
    assert envs == {device * envs_per_device, device * envs_per_device + 1}
