"""MinAtar: the CNN torso, the presets, and a short Breakout run that learns."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distrl.configs import ppo as ppo_config
from distrl import envs, ppo
from distrl.rl import networks
from distrl.runtime import trainer
from distrl.errors import ConfigError
from tests import params as params_like


@pytest.mark.unit
def test_cnn_torso_maps_grids_to_one_output_per_action_for_any_batch_shape():
  net = networks.torso("cnn", (64,), 3, head_scale=0.01, activation="relu", obs_ndim=3)
  obs = jax.ShapeDtypeStruct((5, 2, 10, 10, 4), bool)  # MinAtar observations are boolean channels
  params = jax.eval_shape(net.init, jax.random.PRNGKey(0), obs)  # shapes only: nothing compiles
  assert params["params"]["Conv_0"]["kernel"].shape == (3, 3, 4, 16)
  assert params["params"]["MLP_0"]["Dense_0"]["kernel"].shape == (10 * 10 * 16, 64)
  assert jax.eval_shape(net.apply, params, obs).shape == (5, 2, 3)


GAMES = ["Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar"]


@pytest.mark.unit
@pytest.mark.parametrize("game", GAMES)
def test_the_convolution_as_a_matrix_product_equals_xlas_convolution_in_value_and_gradient(game):
  """networks.conv_as_matmul (the CPU default) against lax.conv_general_dilated, on random observations of each
  game's shape: the same parameters, outputs and parameter gradients up to float rounding."""
  shape = envs.make(game).observation_shape
  obs = np.random.default_rng(1).random((2, 16) + shape) < 0.3  # MinAtar observations are boolean
  xla, matmul = (networks.ConvMLP((64,), 5, head_scale=1.0, conv=conv) for conv in ("xla", "matmul"))
  params = params_like.init(xla, obs)  # drawn by numpy: the orthogonal init compiles slowly
  assert jax.tree.structure(jax.eval_shape(matmul.init, jax.random.PRNGKey(0), obs)) == jax.tree.structure(params)

  def loss(net, params):  # a scalar that weighs every output differently
    out = net.apply(params, obs)
    return jnp.sum(jnp.sin(out) * jnp.arange(out.size).reshape(out.shape) / out.size)

  # Each network's outputs and gradient in one compiled program, not op by op.
  outputs_and_grads = lambda net: jax.jit(lambda p: (net.apply(p, obs), jax.grad(functools.partial(loss, net))(p)))
  (xla_out, xla_grad), (matmul_out, matmul_grad) = (outputs_and_grads(net)(params) for net in (xla, matmul))
  np.testing.assert_allclose(matmul_out, xla_out, rtol=1e-5, atol=1e-5)
  grads = (xla_grad, matmul_grad)
  for path, a, b in zip(jax.tree_util.tree_leaves_with_path(grads[0]), *map(jax.tree.leaves, grads)):
    assert np.max(np.abs(a)) > 1e-4, jax.tree_util.keystr(path[0])  # a gradient that is not all zeros
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=jax.tree_util.keystr(path[0]))


@pytest.mark.unit
def test_the_cnn_torso_convolves_with_xla_only_off_the_cpu():
  """On CPU (conv="auto") the traced program has no convolution: XLA's CPU convolution is the slow path."""
  net = networks.torso("cnn", (64,), 3, head_scale=0.01, activation="relu", obs_ndim=3)
  obs = jnp.zeros((8, 10, 10, 4), bool)
  params = params_like.init(net, obs)
  has_convolution = "convolution" in jax.jit(net.apply).lower(params, obs).as_text()
  assert has_convolution == (jax.default_backend() != "cpu")


@pytest.mark.unit
@pytest.mark.parametrize("game", GAMES)
def test_presets_build_a_cnn_actor_critic_for_each_game(game):
  config = ppo_config.get_config(game)
  env = envs.make(config.env_name)
  assert env.observation_shape[:2] == (10, 10)
  sizes = ppo.sizes(config, 1)
  state = jax.eval_shape(lambda key: ppo.init(key, config=config, env=env, sizes=sizes), jax.random.PRNGKey(0))
  assert state.actors.obs.shape == (64,) + env.observation_shape
  assert state.learner.params["params"]["actor"]["MLP_0"]["Dense_1"]["kernel"].shape == (64, env.num_actions)


@pytest.mark.unit
def test_a_cnn_on_vector_observations_is_refused(tmp_path):
  config = ppo_config.get_config()
  config.torso, config.num_envs, config.eval_episodes = "cnn", jax.device_count(), jax.device_count()
  with pytest.raises(ConfigError, match=r"torso='cnn' needs image observations \(H, W, C\); these have 1 axis"):
    trainer.train(config, str(tmp_path))


@pytest.mark.slow
def test_a_short_breakout_run_learns(tmp_path):
  """8 updates (65,536 steps) of the Breakout preset. A uniformly random policy scores 0.36 ± 0.72 per
  episode (measured over 256 episodes), so a mean over 64 greedy evaluation episodes has a standard
  error of ~0.09: 1.5 is far above chance. Seeds 0 and 1 reach 2.5 and 2.7 in training, 3.2 and 3.0 in
  evaluation (~33 s on this 2-core CPU, on 1 or 8 emulated devices)."""
  config = ppo_config.get_config("Breakout-MinAtar")
  config.update(dict(total_timesteps=8 * 64 * 128, log_every=2, eval_every=8))
  result = trainer.train(config, str(tmp_path))
  returns = [h["train/episode_return"] for h in result.history]
  assert returns[0] < 1.0 and returns[-1] >= 1.5, returns
  assert result.history[-1]["eval/return"] >= 1.5, result.history[-1]
