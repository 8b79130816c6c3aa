"""IMPALA: its loss by hand, acting several updates behind on host environments, and the torsos of its Atari preset
(V-trace's tests are in test_returns.py)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distrl.impala import losses
from distrl.rl import networks
from tests import params as params_like



@pytest.mark.unit
def test_impala_loss_by_hand():
  """policy -mean(log_prob A) = -mean(-2, 2) = 0; value 0.5 mean(1, 4) = 1.25; entropy 0.6; total
  0 + 0.5 * 1.25 - 0.1 * 0.6; ratios e^0.2 (above rho_clip 1) and e^-0.5."""
  f = lambda x: jnp.asarray(x, jnp.float32)
  loss = functools.partial(losses.impala_loss, behaviour_log_prob=f([-1.2, -1.5]), advantage=f([2.0, -1.0]),
                           value=f([1.0, 0.0]), target=f([0.0, 2.0]), entropy=f([0.5, 0.7]), vf_coef=0.5, ent_coef=0.1,
                           rho_clip=1.0)
  terms = loss(log_prob=f([-1.0, -2.0]))
  np.testing.assert_allclose([terms.policy, terms.value, terms.entropy, terms.total], [0.0, 1.25, 0.6, 0.565],
                             atol=1e-6)
  kl = np.mean([np.exp(0.2) - 1 - 0.2, np.exp(-0.5) - 1 + 0.5])
  np.testing.assert_allclose(terms.approx_kl, kl, rtol=1e-5)
  assert float(terms.clip_fraction) == 0.5
  # The advantages are constants: d policy / d log_prob = -A / 2.
  grad = jax.grad(lambda lp: loss(log_prob=lp).policy)(f([-1.0, -2.0]))
  np.testing.assert_allclose(grad, [-1.0, 0.5])


@pytest.mark.parametrize("torso", ["nature", "impala"])  # compiles both networks at frame size: the program tier
def test_frame_torsos_as_matrix_products_equal_xlas_convolutions(torso):
  """The Atari torsos' convolutions computed by networks.conv_as_matmul (the CPU default: XLA's CPU convolution is
  ~30x slower inside the learner's loops) against lax.conv_general_dilated, in value and gradient. Frames of 44 x 44
  (not Atari's 84) compile in half the time and keep what could go wrong: every stride, an odd size halved (the
  IMPALA CNN's 44 -> 22 -> 11 -> 6), and the Nature CNN's three convolutions (10 -> 4 -> 2)."""
  obs = np.random.default_rng(1).integers(0, 256, (3, 44, 44, 4), np.uint8)
  xla, matmul = (networks.FRAME_TORSOS[torso]((32,), 4, head_scale=1.0, conv=conv) for conv in ("xla", "matmul"))
  params = params_like.init(xla, obs)  # drawn by numpy: the orthogonal init took 30 s to compile
  loss = lambda net, params: jnp.sum(jnp.sin(net.apply(params, obs)) * jnp.arange(12).reshape(3, 4))
  # Each network's outputs and gradient in one compiled program (eagerly, op by op, they took 20 s to compile).
  outputs_and_grads = lambda net: jax.jit(lambda p: (net.apply(p, obs), jax.grad(functools.partial(loss, net))(p)))
  (xla_out, xla_grad), (matmul_out, matmul_grad) = (outputs_and_grads(net)(params) for net in (xla, matmul))
  np.testing.assert_allclose(matmul_out, xla_out, rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(xla_grad), jax.tree.leaves(matmul_grad)):
    assert np.max(np.abs(a)) > 1e-5
    np.testing.assert_allclose(b, a, rtol=2e-3, atol=1e-5)  # float32 sums of ~10^4 terms, in another order


@pytest.mark.unit
def test_the_impala_cnn_has_the_papers_shape():
  """84x84 -> 42 -> 21 -> 11 after the three pools of stride 2: 11 * 11 * 32 features into the dense layer; each
  stage a convolution and two residual blocks of two convolutions (15 convolutions)."""
  net = networks.ImpalaCNN((256,), None, head_scale=1.0)
  frames = lambda *batch: jax.ShapeDtypeStruct((*batch, 84, 84, 4), jnp.uint8)
  params = jax.eval_shape(net.init, jax.random.PRNGKey(0), frames())["params"]  # shapes only: nothing compiles
  kernels = [x.shape for path, x in jax.tree_util.tree_leaves_with_path(params)
             if "kernel" in jax.tree_util.keystr(path)]
  assert len(kernels) == 16 and (11 * 11 * 32, 256) in kernels
  assert jax.eval_shape(net.apply, {"params": params}, frames(2, 5)).shape == (2, 5, 256)


@pytest.mark.unit
def test_a_shared_torso_feeds_both_heads():
  """`shared_torso`: one torso (half the parameters of the two networks' torsos) whose features both heads read; the
  value's gradient reaches the torso the policy uses."""
  obs = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
  shared, separate = (networks.ActorCritic(2, (64, 64), shared_torso=s) for s in (True, False))
  params = jax.jit(shared.init)(jax.random.PRNGKey(0), obs)
  count = lambda p: sum(x.size for x in jax.tree.leaves(p))
  torso = 4 * 64 + 64 + 64 * 64 + 64
  assert count(jax.eval_shape(separate.init, jax.random.PRNGKey(0), obs)) - count(params) == torso

  @jax.jit
  def outputs(params):
    distribution, value = shared.apply(params, obs)
    grad = jax.grad(lambda p: jnp.sum(shared.apply(p, obs, method="value")))(params)["params"]
    return (distribution.logits, value, shared.apply(params, obs, method="policy").logits,
            shared.apply(params, obs, method="value"), grad)

  logits, value, policy_logits, value_alone, grad = outputs(params)
  np.testing.assert_allclose(logits, policy_logits)
  np.testing.assert_allclose(value, value_alone)
  assert set(grad) == {"features", "policy_head", "value_head"}
  assert np.max(np.abs(grad["features"]["Dense_0"]["kernel"])) > 0 and not np.any(grad["policy_head"]["kernel"])
