"""The actor-critic iteration's per-device pieces (PPO's and IMPALA's): advantage statistics over the global
minibatch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from distrl import sharding
from distrl.rl import actor_critic

pytestmark = pytest.mark.unit


def _statistics(advantages: np.ndarray, devices) -> tuple[np.ndarray, np.ndarray]:
  """actor_critic.advantage_statistics of (epochs, M, B) advantages, the B samples of each minibatch split over
  `devices` as the environments of a rollout are."""
  mesh = sharding.make_mesh(devices)
  spec = P(None, None, sharding.DATA_AXIS)
  statistics = jax.jit(sharding.shard_map(actor_critic.advantage_statistics, mesh, in_specs=spec, out_specs=P()))
  return jax.device_get(statistics(jnp.asarray(advantages)))


@pytest.mark.parametrize("centre", [5000.0, 1000.0, 0.0])
def test_advantage_statistics_survive_a_mean_far_larger_than_the_spread(centre):
  """32 advantages of centre +- 1 have mean `centre` and standard deviation 1 exactly, on one device and on all.

  One pass (sqrt(E[A^2] - E[A]^2) in float32) gave std 0 at 5000 (the advantages normalised to +-1e8) and 0.707
  at 1000: E[A^2] ~ 2.5e7 is rounded to float32's spacing of 2 there."""
  advantages = (centre + np.tile([1.0, -1.0], 16)).astype(np.float32).reshape(1, 1, 32)
  for devices in (jax.devices()[:1], jax.devices()):
    mean, std = _statistics(advantages, devices)
    np.testing.assert_array_equal(mean, [[centre]])
    np.testing.assert_allclose(std, [[1.0]], rtol=1e-6)


def test_advantage_statistics_are_those_of_each_global_minibatch():
  """Per (epoch, minibatch): the mean and the population std of its samples over every device."""
  advantages = np.random.default_rng(0).normal(3.0, 2.0, size=(2, 4, 16)).astype(np.float32)
  for devices in (jax.devices()[:1], jax.devices()):
    mean, std = _statistics(advantages, devices)
    np.testing.assert_allclose(mean, advantages.mean(-1), rtol=1e-5)
    np.testing.assert_allclose(std, advantages.std(-1), rtol=1e-5)
