"""`--config=rainbow` (configs/rainbow.py): DQN with Rainbow's six parts, its CartPole default and MinAtar presets at
the published settings, and a learning run (every DQN test covers its code paths: it is `algo` "dqn")."""

import os

import jax
import pytest

from distrl import configs, dqn, envs
from distrl.cli import config_flag
from distrl.configs import dqn as dqn_config, rainbow as rainbow_config
from distrl.runtime import trainer

RAINBOW = {"algo": "dqn", "distributional": "c51", "num_atoms": 51, "n_step": 3, "prioritized": True, "dueling": True,
           "noisy": True, "double_dqn": True}


@pytest.mark.unit
def test_the_default_is_dqn_with_rainbows_parts_on_cartpole():
  config = rainbow_config.get_config()
  assert {field: config[field] for field in RAINBOW} == RAINBOW
  assert config.env_name == "CartPole-v1" and configs.lacking(config) is None
  assert set(config) == set(dqn_config.get_config())  # DQN's fields, no other
  sizes = dqn.sizes(config, 1)
  assert (sizes.steps_per_update, sizes.gradient_steps) == (10, 5)  # a gradient step every 2 environment steps


@pytest.mark.unit
@pytest.mark.parametrize("game", rainbow_config.GAMES)
def test_minatar_presets_take_revisiting_rainbows_settings(game):
  """Obando-Ceron & Castro 2021's gin files: Adam 1e-4 (epsilon 3.125e-4), batches of 32 of 100k transitions from
  1000 on, a gradient step every 4 environment steps, the target every 1000, 51 atoms in [-100, 100], priorities with
  exponent 0.5; a 16-filter convolution straight into the noisy dueling heads."""
  config = rainbow_config.get_config(game)
  assert {field: config[field] for field in RAINBOW} == RAINBOW
  published = {"env_name": game, "lr": 1e-4, "adam_eps": 3.125e-4, "batch_size": 32, "buffer_size": 100_000,
               "learning_starts": 1_000, "train_frequency": 4, "target_update_interval": 1_000, "gamma": 0.99,
               "v_min": -100.0, "v_max": 100.0, "priority_alpha": 0.5, "torso": "cnn", "hidden_sizes": (),
               "total_timesteps": 10_000_000}
  assert {field: config[field] for field in published} == published
  env = envs.make(config.env_name)
  sizes = dqn.sizes(config, 1)
  assert (sizes.steps_per_update, sizes.gradient_steps, sizes.capacity) == (16, 4, 6250)
  state = jax.eval_shape(lambda key: dqn.init(key, config=config, env=env, sizes=sizes), jax.random.PRNGKey(0))
  params = state.learner.params["params"]
  features = 10 * 10 * 16  # the convolution's, flattened
  assert params["NoisyDense_0"]["kernel_sigma"].shape == (features, 51)  # V
  assert params["NoisyDense_1"]["kernel_sigma"].shape == (features, env.num_actions * 51)  # A


@pytest.mark.unit
def test_rainbow_is_a_shipped_config_by_name_and_by_path():
  assert config_flag.resolve("rainbow:Breakout-MinAtar") == os.path.join(configs.DIRECTORY,
                                                                          "rainbow.py") + ":Breakout-MinAtar"
  with pytest.raises(ValueError, match="unknown preset 'Breakout' for --config=rainbow"):
    rainbow_config.get_config("Breakout")


@pytest.mark.slow
def test_rainbow_learns_cartpole(tmp_path):
  """The shipped default (seed 0), its first 15k of 100k steps: the greedy evaluation (16 episodes, the noisy layers'
  mean weights) at 15k steps is >= 100, where a random policy scores ~22 and the untrained network ~10-30. In
  development (2-core AMD EPYC, one device), evaluations every 5k steps: seed 0 68, 108, 207, 184 (500 from 40k on),
  seed 1 63, 412, 500, 500, seed 2 57, 153, 146, 138 (500 from 55k on); this test's run 170 (8 emulated devices in
  the process: other float rounding). 24 s with its programs in the compilation cache, 43 s without."""
  config = rainbow_config.get_config()
  config.update(dict(total_timesteps=15_000, eval_every=1_500))  # one evaluation, at the end
  result = trainer.train(config, str(tmp_path), devices=jax.devices()[:1])
  assert result.history[-1]["step"] == 15_000 and result.history[-1]["eval/return"] >= 100, result.history[-1]
