"""Environments that reset in batches (`reset_in_batches`, e.g. Craftax): `Env.step_batch` resets only the
environments whose episodes ended, and gives the same observations, states and statistics as `jax.vmap(Env.step)`,
which resets (and discards) for every environment at every step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distrl import envs
from tests.runs import FAST



def _play(env: envs.Env, step, num_envs: int, num_steps: int, seed: int = 0):
  """Every step's (obs, state, reward, terminated, truncated, info) under random actions, stacked over time."""
  obs, state, _ = envs.reset_batch(env, jax.random.PRNGKey(seed), jnp.arange(num_envs))

  def one(carry, key):
    obs, state = carry
    action_key, step_key = jax.random.split(key)
    actions = jax.random.randint(action_key, (num_envs,), 0, 2)
    out = step(jax.random.split(step_key, num_envs), state, actions)
    return (out[0], out[1]), out

  return jax.lax.scan(one, (obs, state), jax.random.split(jax.random.PRNGKey(seed + 1), num_steps))[1]


@pytest.mark.parametrize("num_envs", [1, 7, 64])  # both step paths compiled for each size: the program tier
def test_resets_in_batches_equal_a_reset_for_every_environment(num_envs):
  batched = envs.make("tests.user_code:random_start_walk")
  plain = envs.make("tests.user_code:random_start_walk", {"in_batches": False})
  assert batched.without_reset is not None and plain.without_reset is None
  got, want = jax.jit(lambda: (_play(batched, batched.step_batch, num_envs, 40),
                               _play(plain, jax.vmap(plain.step), num_envs, 40)))()  # one compile for both
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
  ends = np.asarray(want[5]["returned_episode"])  # (T, E)
  # Episodes end at different steps (the loop resets some environments, not all), and with several environments in
  # some steps more end than one pass of the loop resets (ceil(num_envs / 16) at a time): several passes.
  assert 0 < ends.mean() < 1
  assert num_envs == 1 or ends.sum(1).max() > -(-num_envs // 16)
  assert len(set(np.asarray(want[1].env_state.position)[ends].tolist())) > 1  # resets drew different starts


@pytest.mark.unit
def test_the_fast_environment_resets_in_batches_when_asked():
  """tests/fast_env.py's `in_batches` (test_sharding.py's PPO cases) takes the path tested above."""
  assert envs.make(FAST, {"in_batches": True}).without_reset is not None
  assert envs.make(FAST).without_reset is None
