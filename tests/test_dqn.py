"""DQN: sharded == unsharded, truncation in the replay, resume with buffer and target network, learning."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from distrl.configs import dqn as dqn_config
from distrl import acting, dqn, envs, sharding, trainer
from distrl.dqn import learner as dqn_learner
from distrl.errors import ConfigError


@pytest.fixture
def cfg():
  config = dqn_config.get_config()
  config.num_envs = jax.device_count() * max(1, 10 // jax.device_count())
  config.train_frequency = config.num_envs  # one step of every environment per gradient step
  config.eval_episodes = jax.device_count() * 2
  return config


def _gradient_step(config, env, learner, batch, devices):
  mesh = sharding.make_mesh(devices)
  net, tx = dqn_learner.network(config, env), dqn_learner.optimizer(config)
  step = jax.shard_map(functools.partial(dqn_learner.gradient_step, net, tx, config), mesh=mesh,
                       in_specs=(P(), P(sharding.DATA_AXIS)), out_specs=P())
  return jax.device_get(jax.jit(step)(learner, batch))


@pytest.mark.parametrize("double_dqn, loss", [(False, "mse"), (True, "huber")])
def test_sharded_gradient_step_equals_unsharded_on_the_same_global_batch(cfg, double_dqn, loss):
  if jax.device_count() < 2:
    pytest.skip("needs several devices: run with the default 8 emulated devices")
  cfg.double_dqn, cfg.loss = double_dqn, loss
  env = envs.make(cfg.env_name)
  learner = dqn.init(jax.random.PRNGKey(0), config=cfg, env=env, sizes=dqn.sizes(cfg, 1)).learner
  keys = jax.random.split(jax.random.PRNGKey(1), 4)
  batch = dqn.learner.replay.Transition(
      obs=jax.random.normal(keys[0], (128, 4)), action=jax.random.randint(keys[1], (128,), 0, 2),
      reward=jax.random.uniform(keys[2], (128,)), next_obs=jax.random.normal(keys[3], (128, 4)),
      terminated=jnp.arange(128) % 7 == 0)
  reference, (ref_loss, ref_q, ref_norm) = _gradient_step(cfg, env, learner, batch, jax.devices()[:1])
  sharded, (loss_value, q_mean, norm) = _gradient_step(cfg, env, learner, batch, jax.devices())
  for a, b, before in zip(jax.tree.leaves(sharded.params), jax.tree.leaves(reference.params),
                          jax.tree.leaves(learner.params)):
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(a, before)  # the step moved the parameters
  np.testing.assert_allclose([loss_value, q_mean, norm], [ref_loss, ref_q, ref_norm], rtol=1e-5)


def test_pmap_and_shard_map_run_the_same_update(cfg):
  cfg.learning_starts, cfg.target_update_interval = 0, 20
  results = []
  for backend in sharding.BACKENDS:
    cfg.backend = backend
    program = trainer.build(cfg, sharding.make_mesh())
    runner = program.runner
    state, sums = runner(runner.put(program.state), 30)
    results.append(jax.device_get((runner.get(state), sums)))
  for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
    np.testing.assert_allclose(a, b, atol=1e-5)
  assert results[0][1]["loss/total"][1] == 30  # trained in every update


def test_truncated_step_keeps_the_final_observation_and_is_not_terminal(cfg):
  env = envs.make(cfg.env_name)
  env = env.replace(params=env.params.replace(max_steps_in_episode=3))  # CartPole truncated after 3 steps
  cfg.num_envs = cfg.train_frequency = 4
  state = dqn.init(jax.random.PRNGKey(0), config=cfg, env=env, sizes=dqn.sizes(cfg, 1))
  observe = lambda obs: obs
  policy = dqn_learner.epsilon_greedy(dqn_learner.network(cfg, env), state.learner.params, observe, jnp.float32(0.0),
                                      env.num_actions)
  _, obs, steps = acting.rollout(env, policy, state.actors.env_state, state.actors.obs, state.actors.key, 3)
  np.testing.assert_array_equal(steps.episode_end[2], True)  # every environment hit its time limit at step 3
  np.testing.assert_array_equal(steps.episode_length[2], 3)
  np.testing.assert_array_equal(steps.terminated[2], False)  # ... which is not a terminal state
  # final_obs (stored as next_obs) is where the third step went, not the observation after the reset.
  assert not np.allclose(steps.final_obs[2], obs)
  np.testing.assert_array_equal(steps.final_obs[1], steps.obs[2])  # consecutive within the episode


def _small(cfg, total_updates):
  """Two environments per device; learning from update 20, the target network moves every 30 updates."""
  cfg.num_envs = cfg.train_frequency = steps_per_update = jax.device_count() * 2
  cfg.total_timesteps, cfg.buffer_size, cfg.batch_size = total_updates * steps_per_update, 100 * cfg.num_envs, 32
  cfg.learning_starts, cfg.target_update_interval = 20 * steps_per_update, 30 * steps_per_update
  cfg.log_every, cfg.eval_every, cfg.checkpoint_every = 20, 10_000, 10_000
  return cfg


def test_resumed_run_restores_buffer_and_target_network_exactly(cfg, tmp_path):
  first = trainer.train(_small(cfg, 80), str(tmp_path / "split"))
  assert int(first.state.update) == 80
  resumed = trainer.train(_small(cfg, 160), str(tmp_path / "split"))
  assert [h["update"] for h in resumed.history][0] == 100, "the second run starts after update 80"
  straight = trainer.train(_small(cfg, 160), str(tmp_path / "straight"))
  state, reference = jax.device_get((resumed.state, straight.state))
  np.testing.assert_array_equal(state.actors.replay.obs, reference.actors.replay.obs)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(reference)):
    np.testing.assert_array_equal(a, b)
  assert "loss/total" in straight.history[-1]  # it trained
  # The target network (last moved at update 150) lags the online network: restoring it mattered.
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.learner.params),
                                                      jax.tree.leaves(state.learner.target_params)))


def test_batch_larger_than_the_buffer_is_refused(cfg):
  cfg.batch_size, cfg.buffer_size = 20_000, cfg.num_envs * 100
  with pytest.raises(ConfigError, match="batch_size=20000 is larger than buffer_size"):
    dqn.sizes(cfg, jax.device_count())


def test_step_counts_past_int32_are_refused(cfg):
  cfg.learning_starts = 10**10  # would overflow the int32 step counter it is compared with on the devices
  with pytest.raises(ConfigError, match="learning_starts=10000000000 must be below 2\\*\\*31"):
    dqn.sizes(cfg, jax.device_count())


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_default_config_learns_cartpole(tmp_path, seed):
  config = dqn_config.get_config()  # 10 environments: one device
  config.seed = seed
  result = trainer.train(config, str(tmp_path), devices=jax.devices()[:1])
  evals = [h["eval/return"] for h in result.history if "eval/return" in h]
  assert len(evals) == 10
  assert max(evals) >= 475, evals
