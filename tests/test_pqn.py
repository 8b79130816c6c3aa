"""PQN: the same run on any device count, config errors, the presets, learning (its Q(lambda) returns are tested in
test_returns.py)."""

import jax
import numpy as np
import pytest

from distrl.configs import pqn as pqn_config
from distrl import envs, pqn, sharding
from distrl.runtime import programs, trainer
from distrl.errors import ConfigError


def _small():
  config = pqn_config.get_config()
  config.update(dict(num_envs=8, num_steps=16, num_minibatches=4, update_epochs=2, seed=5, normalize_obs=True,
                     total_timesteps=8 * 16 * 3, hidden_sizes=(32, 32)))
  return config


def _run(config, devices, num_updates):
  program = programs.build(config, sharding.make_mesh(jax.devices()[:devices]))
  runner, initial = program.runner, jax.device_get(program.state)  # the runner donates the state it is given
  state, sums, _ = runner(runner.put(program.state), num_updates)
  return jax.device_get((runner.get(state), sums)) + (initial,)


def test_sharded_update_equals_unsharded():
  if jax.device_count() < 2:
    pytest.skip("needs several devices: run with the default 8 emulated devices")
  config = _small()
  reference, reference_sums, initial = _run(config, 1, 3)
  state, sums, _ = _run(config, jax.device_count(), 3)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(state.learner), jax.tree.leaves(reference.learner)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5, err_msg=jax.tree_util.keystr(path))
  assert not np.allclose(jax.tree.leaves(state.learner.params)[0], jax.tree.leaves(initial.learner.params)[0])
  np.testing.assert_array_equal(state.actors.key, reference.actors.key)
  for name, (total, count) in reference_sums.items():
    np.testing.assert_allclose(sums[name], (total, count), rtol=1e-4, err_msg=name)
  assert reference_sums["loss/total"][1] == 3


@pytest.mark.unit
@pytest.mark.parametrize("field, value, message", [
    ("q_lambda", 1.5, "q_lambda=1.5 must be in [0, 1]"),
    ("reward_scale", 0.0, "reward_scale=0.0 must be a positive number"),
    ("layer_norm", "yes", "layer_norm='yes' must be True or False"),
    ("dueling", 0, "dueling=0 must be True or False"),
    ("anneal_lr", None, "anneal_lr=None must be True or False"),
    ("num_minibatches", 3, "num_steps=64 does not divide evenly over num_minibatches=3"),
    ("end_e", 0.5, "epsilon must decay within [0, 1]: got start_e=0.4, end_e=0.5"),
    # past 2**31 the int32 step count epsilon reads would wrap negative, and the agent act at random again
    ("total_timesteps", 2**31, "total_timesteps=2147483648 must be below 2**31"),
])
def test_fields_refuse_bad_values_in_one_line(field, value, message):
  config = pqn_config.get_config()
  config.start_e = 0.4 if field == "end_e" else config.start_e
  del config[field]  # as a config file of one's own may set it: of any type
  config[field] = value
  with pytest.raises(ConfigError) as error:
    pqn.sizes(config, 1)
  assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.unit
@pytest.mark.parametrize("game", ["Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar"])
def test_minatar_presets_build_a_layer_normed_cnn_q_network(game):
  config = pqn_config.get_config(game)
  env = envs.make(config.env_name)
  sizes = pqn.sizes(config, 1)
  assert sizes.steps_per_update == 128 * 32 and sizes.num_updates == 2441
  state = jax.eval_shape(lambda key: pqn.init(key, config=config, env=env, sizes=sizes), jax.random.PRNGKey(0))
  torso = state.learner.params["params"]["ConvMLP_0"]
  assert torso["Conv_0"]["kernel"].shape == (3, 3, env.observation_shape[-1], 16) and "LayerNorm_0" in torso
  assert state.learner.params["params"]["Dense_0"]["kernel"].shape == (128, env.num_actions)


@pytest.mark.slow
def test_default_config_learns_cartpole(tmp_path):
  """Seeds 0-2 as one 3-agent program. A random policy scores ~22 on CartPole (cap 500); the *final* greedy
  evaluation (16 episodes each) must be >= 475 for every seed."""
  config = pqn_config.get_config()
  config.num_seeds = 3
  result = trainer.train(config, str(tmp_path), devices=jax.devices()[:1])
  final = [result.history[-1][f"eval/return/seed_{seed}"] for seed in range(3)]
  assert min(final) >= 475, final
