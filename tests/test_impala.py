"""IMPALA: V-trace against rlax's numbers and by hand, its loss by hand, acting several updates behind on host
environments, and the torsos of its Atari preset."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distrl.impala import losses
from distrl.ppo import losses as ppo_losses
from distrl.rl import networks

pytestmark = pytest.mark.unit

# A rollout of 5 steps whose third step terminates, with importance ratios above and below 1.
VALUE = [0.5, -0.2, 1.0, 0.3, 0.8]
VALUE_TP1 = [-0.2, 1.0, 0.0, 0.8, 0.6]  # the next row; 0 after the terminal step; V(s_T) = 0.6 last
REWARD = [1.0, 0.0, -1.0, 2.0, 0.5]
LOG_RHO = [0.3, -0.5, 1.2, 0.0, -2.0]
TERMINATED = [0, 0, 1, 0, 0]


@pytest.mark.parametrize("rho_clip, pg_rho_clip, target, advantage", [
    # rlax 0.1.9 vtrace_td_error_and_advantage(v_tm1, v_t, r_t, discount_t=0.9 (1 - terminated), rho_tm1,
    # lambda_=0.8, clip_rho_threshold, clip_pg_rho_threshold): errors + v_tm1, and pg_advantage.
    (1.0, 1.0, [0.6715213, -0.4062204, -1.0, 2.743386, 0.8324805], [0.1715213, -0.2062204, -2.0, 2.4433858, 0.0324805]),
    (1.5, 2.0, [0.4690507, -0.8429224, -2.0, 2.743386, 0.8324805], [-0.1929004, -0.6429225, -4.0, 2.4433858, 0.0324805]),
])
def test_vtrace_equals_rlax(rho_clip, pg_rho_clip, target, advantage):
  f = lambda x: jnp.asarray(x, jnp.float32)
  out = losses.vtrace(f(REWARD), f(VALUE), f(VALUE_TP1), f(TERMINATED), f(TERMINATED), f(LOG_RHO), gamma=0.9,
                      lambda_=0.8, rho_clip=rho_clip, pg_rho_clip=pg_rho_clip)
  np.testing.assert_allclose(out.target, target, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(out.advantage, advantage, rtol=1e-6, atol=1e-6)


def test_vtrace_cuts_the_trace_at_a_truncation_and_bootstraps_from_its_final_state():
  """gamma = lambda = 1, V = 0, rewards 1, the second step truncated with V(final state) = 5, V(s_T) = 2; ratios 2,
  1/2, 1 (rho clipped at 1): delta = (1, 3, 3), c = (1, 1/2, 1), a_2 = 3, a_1 = 3 + 0 (cut), a_0 = 1 + 3 = 4; the
  policy gradient's advantages (1 + a_1, 1/2 (1 + 5), 1 + 2)."""
  f = lambda x: jnp.asarray(x, jnp.float32)
  out = losses.vtrace(f([1, 1, 1]), f([0, 0, 0]), f([0, 5, 2]), f([0, 0, 0]), f([0, 1, 0]),
                      jnp.log(f([2.0, 0.5, 1.0])), gamma=1.0, lambda_=1.0, rho_clip=1.0, pg_rho_clip=1.0)
  np.testing.assert_allclose(out.target, [4, 3, 3], rtol=1e-6)
  np.testing.assert_allclose(out.advantage, [4, 3, 3], rtol=1e-6)


def test_on_policy_vtrace_is_gae():
  """With rho = 1 both V-trace outputs are GAE(lambda)'s advantage (plus V for the target), ends and all."""
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  shape = (16, 3)
  reward, value, value_tp1 = (jax.random.normal(k, shape) for k in keys[:3])
  ends = jax.random.uniform(keys[3], shape)
  terminated, episode_end = ends < 0.1, ends < 0.25
  gae = ppo_losses.gae(reward, value, value_tp1, terminated, episode_end, gamma=0.97, gae_lambda=0.9)
  out = losses.vtrace(reward, value, value_tp1, terminated, episode_end, jnp.zeros(shape), gamma=0.97, lambda_=0.9,
                      rho_clip=1.0, pg_rho_clip=1.0)
  assert terminated.any() and (episode_end & ~terminated).any()
  np.testing.assert_allclose(out.target, gae + value, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out.advantage, gae, rtol=1e-5, atol=1e-5)


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


@pytest.mark.parametrize("torso", ["nature", "impala"])
def test_frame_torsos_as_matrix_products_equal_xlas_convolutions(torso):
  """The Atari torsos' convolutions computed by networks.conv_as_matmul (the CPU default: XLA's CPU convolution is
  ~30x slower inside the learner's loops) against lax.conv_general_dilated, in value and gradient."""
  obs = jax.random.randint(jax.random.PRNGKey(1), (3, 84, 84, 4), 0, 256).astype(jnp.uint8)
  xla, matmul = (networks.FRAME_TORSOS[torso]((32,), 4, head_scale=1.0, conv=conv) for conv in ("xla", "matmul"))
  params = xla.init(jax.random.PRNGKey(0), obs)
  loss = lambda net, params: jnp.sum(jnp.sin(net.apply(params, obs)) * jnp.arange(12).reshape(3, 4))
  np.testing.assert_allclose(matmul.apply(params, obs), xla.apply(params, obs), rtol=1e-5, atol=1e-5)
  grads = [jax.grad(functools.partial(loss, net))(params) for net in (xla, matmul)]
  for a, b in zip(*map(jax.tree.leaves, grads)):
    assert np.max(np.abs(a)) > 1e-5
    np.testing.assert_allclose(b, a, rtol=2e-3, atol=1e-5)  # float32 sums of ~10^4 terms, in another order


def test_the_impala_cnn_has_the_papers_shape():
  """84x84 -> 42 -> 21 -> 11 after the three pools of stride 2: 11 * 11 * 32 features into the dense layer; each
  stage a convolution and two residual blocks of two convolutions (15 convolutions)."""
  net = networks.ImpalaCNN((256,), None, head_scale=1.0)
  params = net.init(jax.random.PRNGKey(0), jnp.zeros((84, 84, 4), jnp.uint8))["params"]
  kernels = [x.shape for path, x in jax.tree_util.tree_leaves_with_path(params) if "kernel" in jax.tree_util.keystr(path)]
  assert len(kernels) == 16 and (11 * 11 * 32, 256) in kernels
  assert net.apply({"params": params}, jnp.zeros((2, 5, 84, 84, 4), jnp.uint8)).shape == (2, 5, 256)


def test_a_shared_torso_feeds_both_heads():
  """`shared_torso`: one torso (half the parameters of the two networks' torsos) whose features both heads read; the
  value's gradient reaches the torso the policy uses."""
  obs = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
  shared, separate = (networks.ActorCritic(2, (64, 64), shared_torso=s) for s in (True, False))
  params = shared.init(jax.random.PRNGKey(0), obs)
  count = lambda p: sum(x.size for x in jax.tree.leaves(p))
  torso = 4 * 64 + 64 + 64 * 64 + 64
  assert count(separate.init(jax.random.PRNGKey(0), obs)) - count(params) == torso
  distribution, value = shared.apply(params, obs)
  np.testing.assert_allclose(distribution.logits, shared.apply(params, obs, method="policy").logits)
  np.testing.assert_allclose(value, shared.apply(params, obs, method="value"))
  grad = jax.grad(lambda p: jnp.sum(shared.apply(p, obs, method="value")))(params)["params"]
  assert set(grad) == {"features", "policy_head", "value_head"}
  assert np.max(np.abs(grad["features"]["Dense_0"]["kernel"])) > 0 and not np.any(grad["policy_head"]["kernel"])
