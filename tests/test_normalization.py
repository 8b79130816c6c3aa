"""Observation normalisation and reward scaling: the moments by hand, over devices, in checkpoints, in evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from distrl.configs import dqn as dqn_config
from distrl.configs import ppo as ppo_config
from distrl import ppo, sharding
from distrl.rl import normalization
from distrl.runtime import programs, trainer
from distrl.runtime.checkpoint import Checkpoints
from distrl.rl.networks import ActorCritic


def _moments(batches, devices):
  """Moments after adding each batch (N, 3), the rows of every batch split over `devices`."""
  mesh = sharding.make_mesh(devices)
  add = jax.jit(jax.shard_map(normalization.update, mesh=mesh, in_specs=(P(), P(sharding.DATA_AXIS)), out_specs=P()))
  moments = normalization.init((3,), normalize_obs=True, scale_rewards=False).obs
  for batch in batches:
    moments = add(moments, jnp.asarray(batch, jnp.float32))
  return jax.device_get(moments)


@pytest.mark.unit
def test_moments_by_hand_and_combined_over_batches():
  # Column 0: 1, 2, 3, 4 then 5, 6, 7, 8 -> mean 4.5, population variance (8^2 - 1) / 12 = 5.25.
  first = np.array([[1, 10, 0], [2, 10, 0], [3, 10, 0], [4, 10, 0]] * 2, float)
  second = first + [4, 0, 0]
  moments = _moments([first, second], jax.devices()[:1])
  np.testing.assert_allclose(moments.mean, [4.5, 10, 0], rtol=1e-6)
  np.testing.assert_allclose(moments.var, [5.25, 0, 0], atol=1e-5)
  assert float(moments.count) == 16


@pytest.mark.unit
def test_moments_over_eight_devices_equal_one_device():
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices: run with the default 8 emulated devices")
  batches = [np.random.default_rng(i).normal(3.0 * i, 1.0 + i, (64, 3)) for i in range(3)]
  one, eight = _moments(batches, jax.devices()[:1]), _moments(batches, jax.devices()[:8])
  everything = np.concatenate(batches)
  for moments in (one, eight):
    np.testing.assert_allclose(moments.mean, everything.mean(0), rtol=1e-5)
    np.testing.assert_allclose(moments.var, everything.var(0), rtol=1e-4)
  np.testing.assert_allclose(one.mean, eight.mean, rtol=1e-6)
  np.testing.assert_allclose(one.var, eight.var, rtol=1e-6)


@pytest.mark.unit
def test_discounted_returns_restart_after_an_episode_end():
  # One environment, gamma 0.5: R = 1, 1 + 0.5 * 1 = 1.5 (ends), then 2, 2 + 0.5 * 2 = 3; carried: 3.
  # A second environment starts from a carried R of 4: 0 + 0.5 * 4 = 2, ...
  reward = jnp.array([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [2.0, 0.0]])
  end = jnp.array([[False, False], [True, False], [False, False], [False, True]])
  returns, carry = normalization.discounted_returns(reward, end, jnp.array([0.0, 4.0]), gamma=0.5)
  np.testing.assert_allclose(returns[:, 0], [1.0, 1.5, 2.0, 3.0])
  np.testing.assert_allclose(returns[:, 1], [2.0, 1.0, 0.5, 0.25])
  np.testing.assert_allclose(carry, [3.0, 0.0])  # the second environment's episode ended at the last step


@pytest.mark.unit
def test_scaled_rewards_and_normalised_observations_by_hand():
  normalizer = normalization.Normalizer(
      obs=normalization.Moments(mean=jnp.array([1.0, 0.0]), var=jnp.array([4.0, 1e-12]), count=jnp.float32(10)),
      returns=normalization.Moments(mean=jnp.float32(0), var=jnp.float32(0.25), count=jnp.float32(10)))
  np.testing.assert_allclose(normalization.observations(normalizer, jnp.array([3.0, 1.0]), clip=5.0),
                             [1.0, 5.0], rtol=1e-4)  # (3 - 1) / 2; 1 / sqrt(1e-8) clipped to 5
  np.testing.assert_allclose(normalization.rewards(normalizer, jnp.array([1.0, -10.0]), clip=3.0), [2.0, -3.0],
                             rtol=1e-6)  # 1 / 0.5; -10 / 0.5 clipped to -3
  off = normalization.Normalizer()
  np.testing.assert_array_equal(normalization.observations(off, jnp.array([30.0]), clip=5.0), [30.0])
  np.testing.assert_array_equal(normalization.rewards(off, jnp.array([7.0]), clip=3.0), [7.0])


def _ppo(**fields):
  n = jax.device_count()
  config = ppo_config.get_config("Pendulum-v1")
  config.update(dict(num_envs=n, num_steps=32, num_minibatches=2, update_epochs=2, total_timesteps=6 * n * 32,
                     log_every=3, checkpoint_every=3, eval_every=3, eval_episodes=n, normalize_obs=True,
                     scale_rewards=True))
  config.update(fields)
  return config


def test_ppo_keeps_the_statistics_in_checkpoints_and_evaluates_with_them(tmp_path):
  config = _ppo()
  result = trainer.train(config, str(tmp_path))
  normalizer = jax.device_get(result.state.learner.normalizer)
  assert float(normalizer.obs.count) == 6 * config.num_envs * 32  # every observation acted on
  assert float(normalizer.returns.count) == 6 * config.num_envs * 32
  assert np.all(np.abs(normalizer.obs.mean) > 1e-3) and np.all(normalizer.obs.var != 1.0)  # they moved
  assert result.state.actors.discounted_return.shape == (config.num_envs,)

  program = programs.build(config, sharding.make_mesh())
  restored = Checkpoints(str(tmp_path / "checkpoints"), keep=3).restore(6, like=program.state)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(result.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  # Greedy actions are those of the networks on normalised observations ...
  learner = jax.device_get(result.state.learner)
  obs = jnp.array([[1.0, 0.0, 0.5], [-0.5, 0.8, -3.0]])
  normalised = np.clip((obs - normalizer.obs.mean) / np.sqrt(normalizer.obs.var + 1e-8), -10, 10)
  by_hand = ActorCritic(num_actions=1, hidden_sizes=(64, 64), continuous=True).apply(
      learner.params, normalised, method=ActorCritic.policy).mean
  action = ppo.act(learner, obs, None, config=config, env=program.env, greedy=True)
  np.testing.assert_allclose(action, np.clip(by_hand, -2, 2), rtol=1e-5)
  # ... and evaluation acts with them: without the statistics the same parameters act otherwise.
  evaluate, key = program.evaluator(config.eval_episodes), jax.random.PRNGKey(0)
  with_stats = jax.device_get(evaluate(result.state.learner, key))["return"]
  without = jax.device_get(evaluate(result.state.learner.replace(normalizer=normalization.Normalizer()), key))["return"]
  assert not np.allclose(with_stats, without)


def test_dqn_normalises_what_it_samples_and_counts_every_step(tmp_path):
  n = jax.device_count()
  config = dqn_config.get_config()
  config.update(dict(num_envs=n, train_frequency=n, buffer_size=64 * n, batch_size=8 * n, learning_starts=16 * n,
                     total_timesteps=64 * n, log_every=32, eval_episodes=n, normalize_obs=True, scale_rewards=True))
  result = trainer.train(config, str(tmp_path))
  normalizer = jax.device_get(result.state.learner.normalizer)
  assert float(normalizer.obs.count) == 64 * n and float(normalizer.returns.count) == 64 * n
  assert np.isfinite(result.history[-1]["loss/total"])
  # The replay keeps raw observations (the statistics apply when sampled, so they can change later): its
  # first slot holds each environment's first observation as the environment gave it.
  initial = programs.build(config, sharding.make_mesh()).state.actors.obs
  np.testing.assert_array_equal(np.asarray(result.state.actors.replay.obs[:, 0]), np.asarray(initial))
