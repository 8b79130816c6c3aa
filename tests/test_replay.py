"""The replay buffer: layout, wrap-around, n-step window starts, uniform draws, one global batch on any device count."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from distrl import sharding
from distrl.rl import replay

pytestmark = pytest.mark.unit


def _example():
  return replay.Transition(obs=jnp.zeros(3), action=jnp.int32(0), reward=jnp.float32(0), next_obs=jnp.zeros(3),
                           terminated=jnp.bool_(False), episode_end=jnp.bool_(False))


def _steps(num_envs, n, start):
  """n steps of num_envs environments; reward = env * 100 + step number, to identify each slot."""
  reward = np.arange(num_envs)[:, None] * 100.0 + np.arange(start, start + n)[None, :]
  zeros = jnp.zeros((num_envs, n), bool)
  return replay.Transition(obs=jnp.zeros((num_envs, n, 3)), action=jnp.zeros((num_envs, n), jnp.int32),
                           reward=jnp.asarray(reward, jnp.float32), next_obs=jnp.zeros((num_envs, n, 3)),
                           terminated=zeros, episode_end=zeros)


def test_layout_is_environment_major():
  buffer = replay.init(_example(), num_envs=5, capacity=4)
  assert buffer.obs.shape == (5, 4, 3)
  assert buffer.action.shape == (5, 4) and buffer.action.dtype == jnp.int32


def test_writes_wrap_around_and_overwrite_the_oldest_block():
  buffer = replay.init(_example(), num_envs=2, capacity=4)
  for block in range(3):  # steps 0-1, 2-3, then 4-5 overwrite slots 0-1
    buffer = replay.add(buffer, _steps(2, 2, 2 * block), jnp.int32(2 * block))
  np.testing.assert_array_equal(buffer.reward, [[4, 5, 2, 3], [104, 105, 102, 103]])


def test_window_starts_follow_the_oldest_step_and_leave_room_for_n_steps():
  # Capacity 4, 2-step windows. After 3 steps: steps 0-2 in slots 0-2; windows start at steps 0 and 1.
  where = replay.starts(4, jnp.int32(3), n_step=2)
  np.testing.assert_array_equal(replay.valid(where, 4), [True, True, False, False])
  # After 6 steps: slots hold steps [4, 5, 2, 3]; the oldest is step 2 in slot 2; windows start at steps 2, 3, 4
  # (slots 2, 3, 0), not at step 5 (slot 1), whose next step is not written yet.
  where = replay.starts(4, jnp.int32(6), n_step=2)
  assert int(where.oldest) == 2 and int(where.count) == 3
  np.testing.assert_array_equal(replay.valid(where, 4), [True, False, True, True])


def test_uniform_draws_only_window_starts_and_every_one_of_them():
  buffer = replay.init(_example(), num_envs=3, capacity=10)
  for block in range(7):  # 14 steps into 10 slots: steps 4..13 held
    buffer = replay.add(buffer, _steps(3, 2, 2 * block), jnp.int32(2 * block))
  where = replay.starts(10, jnp.int32(14), n_step=3)  # windows start at steps 4..11
  env, slot = replay.uniform(jax.random.PRNGKey(0), 2000, 3, 10, where)
  drawn = set(np.asarray(buffer.reward[env, slot]).astype(int).tolist())
  assert drawn == {e * 100 + t for e in range(3) for t in range(4, 12)}


def test_every_device_count_reads_the_same_global_batch():
  """Positions drawn from one key; each device reads its own rows; one psum gives every device the batch."""
  num_envs, capacity, batch = 8, 6, 64
  buffer = replay.add(replay.init(_example(), num_envs, capacity), _steps(num_envs, capacity, 0), jnp.int32(0))
  key, where = jax.random.PRNGKey(3), replay.starts(capacity, jnp.int32(capacity), n_step=1)
  env, slot = replay.uniform(key, batch, num_envs, capacity, where)
  expected = np.asarray(buffer.reward[env, slot])

  for devices in {1, jax.device_count()}:
    mesh = sharding.make_mesh(jax.devices()[:devices])

    @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P(sharding.DATA_AXIS), P()), out_specs=P())
    def read(local_buffer, key):
      assert local_buffer.reward.shape == (num_envs // devices, capacity)  # each device holds its rows only
      env, slot = replay.uniform(key, batch, num_envs, capacity, where)
      row, owned = replay.owned_rows(env, local_buffer.reward.shape[0])
      return replay.share(replay.gather(local_buffer, row, slot), owned).reward

    placed = jax.device_put(buffer, NamedSharding(mesh, P(sharding.DATA_AXIS)))
    np.testing.assert_array_equal(jax.jit(read)(placed, key), expected)
