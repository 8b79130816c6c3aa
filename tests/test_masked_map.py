"""masked_map.where (work on the selected rows only) and rollout_learner.next_values (bootstrap values without a pass over the
rollout), on hand-made numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distrl.rl import acting, masked_map, rollout_learner

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("selected", [[], [3], [0, 4], [0, 1, 2, 3, 4]])
@pytest.mark.parametrize("max_passes", [1, 2, 16])
def test_where_replaces_only_the_selected_rows(selected, max_passes):
  x = jnp.array([1.0, 2.0, 8.0, 4.0, 5.0])
  mask = jnp.zeros(5, bool).at[jnp.array(selected, int)].set(True)
  otherwise = -jnp.arange(5.0)
  got = jax.jit(lambda m, x: masked_map.where(m, lambda r: {"inv": 1.0 / r["x"]}, {"x": x}, {"inv": otherwise},
                                        max_passes=max_passes))(mask, x)
  want = np.where(np.asarray(mask), 1.0 / np.asarray(x), np.asarray(otherwise))
  np.testing.assert_array_equal(got["inv"], want)


def test_where_calls_fn_on_at_most_a_pass_of_rows():
  shapes = []

  def fn(r):
    shapes.append(r.shape)
    return r * 2

  masked_map.where(jnp.ones(10, bool), fn, jnp.arange(10.0), jnp.zeros(10), max_passes=4)
  assert shapes == [(3,)]  # ceil(10 / 4) rows per pass (traced once, run up to 4 times)


def _steps(terminated, truncated, final_obs):
  terminated, truncated = np.array(terminated, bool), np.array(truncated, bool)
  zeros = np.zeros(terminated.shape)
  return acting.Step(obs=None, action=None, extras=None, reward=zeros, terminated=jnp.asarray(terminated),
                     episode_end=jnp.asarray(terminated | truncated), final_obs=jnp.asarray(final_obs, jnp.float32),
                     episode_return=zeros, episode_length=zeros, episode_metrics={})


def test_next_values_by_hand():
  # T = 3 steps of E = 2 environments. Environment 0 terminates at t = 1; environment 1 is truncated at t = 0.
  value_t = jnp.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])  # V(s_t) as acting computed it
  last_value = jnp.array([4.0, 40.0])  # V(s_3)
  final_obs = [[[0.5], [7.0]], [[0.25], [0.0]], [[0.0], [0.0]]]  # (T, E, 1): the pre-reset observations
  steps = _steps(terminated=[[0, 0], [1, 0], [0, 0]], truncated=[[0, 1], [0, 0], [0, 0]], final_obs=final_obs)
  value_fn = lambda obs, memory: 100.0 * obs[:, 0]  # only ever called on truncated rows
  got = rollout_learner.next_values(value_t, last_value, steps, value_fn)
  # t=0: env 0 goes on -> V(s_1) = 2; env 1 truncated -> V(final obs 7.0) = 700.
  # t=1: env 0 terminated -> 0; env 1 goes on -> 30.   t=2: both go on -> V(s_3) = 4, 40.
  np.testing.assert_array_equal(got, [[2.0, 700.0], [0.0, 30.0], [4.0, 40.0]])
