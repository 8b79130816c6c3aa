"""PQN: config errors, the presets, learning (its Q(lambda) returns are tested in test_returns.py, the same run on
any device count in test_sharding.py)."""

import jax
import pytest

from distrl.configs import pqn as pqn_config
from distrl import envs, pqn
from distrl.runtime import trainer
from distrl.errors import ConfigError


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
