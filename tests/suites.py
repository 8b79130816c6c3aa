"""What the suites' tests share: the one-step TD error PPO forms at an episode's last step, checked by hand."""

import jax.numpy as jnp
import numpy as np
import pytest

from distrl.rl import returns


def assert_bootstraps_only_if_truncated(*, reward, obs, final_obs, terminated, episode_end, end: int, terminal: bool,
                                        reached_obs):
  """PPO's delta at step `end` (returns.gae with lambda 0, V(s) = sum(s) so that the state matters) from distrl's
  flags is, by hand, r + gamma * V(s') - V(s) with s' the observation the suite reached (`reached_obs`) when the
  episode was truncated, and r - V(s) when it was terminal. Arrays are one environment's (T, ...)."""
  gamma, value = 0.9, lambda x: jnp.sum(jnp.reshape(x, (x.shape[0], -1)), axis=-1)
  delta = returns.gae(jnp.asarray(reward, jnp.float32), value(obs), value(final_obs), terminated, episode_end,
                      gamma=gamma, gae_lambda=0.0)[end]
  by_hand = float(reward[end]) - float(np.sum(obs[end])) + (0.0 if terminal else gamma * float(np.sum(reached_obs)))
  assert float(delta) == pytest.approx(by_hand, rel=1e-5, abs=1e-4)
