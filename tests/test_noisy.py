"""Noisy networks (`distrl.rl.noisy`, DQN's `noisy`): the factorised noise against numbers computed by hand, the
initialisation, the mean weights without noise, the Q-network's noisy heads, acting, and config errors (the same
updates on any device count in test_sharding.py, bit-exact resume in test_stopping.py, learning in test_rainbow.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distrl import envs
from distrl.configs import dqn as dqn_config
from distrl.rl import networks, noisy, qlearning
from tests import params as params_like
from tests.runs import FAST

pytestmark = pytest.mark.unit

# A layer of p = 2 inputs and q = 3 outputs, its parameters set by hand.
PARAMS = {"kernel": np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 1.0]], np.float32),
          "bias": np.array([0.5, -0.5, 0.0], np.float32),
          "kernel_sigma": np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], np.float32),
          "bias_sigma": np.array([1.0, 2.0, 3.0], np.float32)}
X = np.array([[1.0, 2.0], [-3.0, 0.5]], np.float32)


def test_the_factorised_noise_by_hand():
  layer = noisy.NoisyDense(3)
  y, sown = jax.jit(lambda x, key: layer.apply({"params": PARAMS}, x, rngs={"noise": key}, mutable=["noise"]))(
      X, jax.random.PRNGKey(7))
  eps_in, eps_out = (np.asarray(e, np.float64) for e in sown["noise"]["eps"][0])
  assert eps_in.shape == (2,) and eps_out.shape == (3,) and np.all(eps_in != 0) and np.all(eps_out != 0)
  f = lambda e: np.sign(e) * np.sqrt(np.abs(e))
  f_in, f_out = f(eps_in), f(eps_out)
  outer = np.array([[f_in[i] * f_out[j] for j in range(3)] for i in range(2)])  # eps_w[i, j] = f(eps_i) f(eps_j)
  w = PARAMS["kernel"] + PARAMS["kernel_sigma"] * outer
  b = PARAMS["bias"] + PARAMS["bias_sigma"] * f_out
  np.testing.assert_allclose(y, X @ w + b, rtol=1e-5, atol=1e-6)
  # One sample for the whole call: both rows saw the same weights; another key, another sample.
  other = layer.apply({"params": PARAMS}, X, rngs={"noise": jax.random.PRNGKey(8)})
  assert not np.allclose(other, y)


def test_the_normals_are_drawn_from_the_key_as_documented():
  eps_in, eps_out = noisy.factorised(jax.random.PRNGKey(3), 2, 3)
  np.testing.assert_array_equal(np.concatenate([eps_in, eps_out]), jax.random.normal(jax.random.PRNGKey(3), (5,)))


def test_without_the_noise_stream_the_layer_is_its_mean():
  y = noisy.NoisyDense(3).apply({"params": PARAMS}, X)
  np.testing.assert_allclose(y, X @ PARAMS["kernel"] + PARAMS["bias"], rtol=1e-6)


def test_the_initialisation_is_the_papers():
  """mu ~ U[-1/sqrt(p), 1/sqrt(p)], sigma = sigma0 / sqrt(p), for weights and biases alike."""
  p, q = 16, 64
  params = noisy.NoisyDense(q, sigma0=0.4).init(jax.random.PRNGKey(0), jnp.zeros((1, p)))["params"]
  assert set(params) == {"kernel", "bias", "kernel_sigma", "bias_sigma"}
  np.testing.assert_array_equal(params["kernel_sigma"], np.full((p, q), np.float32(0.4 / 4)))
  np.testing.assert_array_equal(params["bias_sigma"], np.full((q,), np.float32(0.4 / 4)))
  for name in ("kernel", "bias"):
    assert np.all(np.abs(params[name]) <= 0.25) and np.std(params[name]) > 0.1  # U[-1/4, 1/4]: std 0.144
  assert "noise" not in noisy.NoisyDense(q).init(jax.random.PRNGKey(0), jnp.zeros((1, p)))  # init draws no noise


def test_the_noisy_q_network_has_noisy_heads_and_a_deterministic_torso():
  """Rainbow's network: C51 atoms, both dueling heads noisy; the MLP torso's layers plain."""
  net = networks.QNetwork(num_actions=2, hidden_sizes=(8,), dueling=True, distributional="c51", num_atoms=5,
                          noisy=True, noisy_sigma0=0.5)
  shapes = jax.eval_shape(net.init, jax.random.PRNGKey(0), jnp.zeros(4))["params"]
  assert set(shapes) == {"MLP_0", "NoisyDense_0", "NoisyDense_1"}
  assert shapes["NoisyDense_0"]["kernel_sigma"].shape == (8, 5)  # V: one distribution
  assert shapes["NoisyDense_1"]["kernel_sigma"].shape == (8, 10)  # A: one an action
  assert set(shapes["MLP_0"]) == {"Dense_0"}
  variables = params_like.init(net, jnp.zeros(4))
  obs = jnp.ones((3, 4))
  mean = net.apply(variables, obs)
  np.testing.assert_array_equal(mean, net.apply(variables, obs))  # no stream: the mean, the same every call
  noisy_q = [net.apply(variables, obs, rngs={"noise": jax.random.PRNGKey(k)}) for k in (1, 2)]
  assert not np.allclose(noisy_q[0], noisy_q[1]) and not np.allclose(noisy_q[0], mean)
  np.testing.assert_allclose(noisy_q[0][0], noisy_q[0][2])  # one sample for every row of a call


def test_each_environment_acts_on_its_own_sample_from_its_own_key():
  """The rollout policy: environment i's action is that of its own observation and key alone (so a rollout does not
  depend on which device runs which environment), and environments with the same observation still differ."""
  config = dqn_config.get_config()
  config.update(dict(env_name=FAST, noisy=True, hidden_sizes=(8,), layer_norm=False))
  env = envs.make(config.env_name)
  net = qlearning.network(config, env)
  params = params_like.init(net, jnp.zeros(env.observation_shape))
  policy = qlearning.noisy_greedy(net, params, lambda obs: obs, env)
  obs = jnp.broadcast_to(jnp.arange(1.0, 1.0 + np.prod(env.observation_shape)), (64,) + env.observation_shape)
  keys = jax.random.split(jax.random.PRNGKey(1), 64)
  action, q_max = jax.jit(policy)(obs, keys)
  one, one_max = jax.jit(policy)(obs[5:6], keys[5:6])
  assert action[5] == one[0] and q_max[5] == pytest.approx(float(one_max[0]), rel=1e-6)
  assert len(np.unique(q_max)) == 64 and len(np.unique(action)) > 1  # independent samples
