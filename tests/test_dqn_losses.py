"""DQN's losses against numbers computed by hand: the TD loss (`distrl.rl.td_loss`, PQN's too), the quantile losses
and importance weights (its n-step returns and targets are tested in test_returns.py); IQN's loss against rlax's,
where rlax is installed."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distrl import dqn
from distrl.dqn import losses
from distrl.rl import returns, td_loss

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("loss, expected", [("mse", (4.0 + 0.25) / 2), ("huber", ((2.0 - 0.5) + 0.5 * 0.25) / 2)])
def test_q_loss_hand_computed(loss, expected):
  # Q(s, a) chosen: [2, 3]; td = y - Q = [2, 0.5]
  value, q_mean, td = td_loss.q_loss(jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([1, 0]), jnp.array([4.0, 3.5]),
                                     loss=loss)
  assert float(value) == pytest.approx(expected)
  assert float(q_mean) == pytest.approx(2.5)
  np.testing.assert_allclose(td, [2.0, 0.5])


def test_q_loss_weights_each_sample():
  # td = [2, 0.5] as above, weights [0.5, 1]: (0.5 * 4 + 1 * 0.25) / 2
  value, _, _ = td_loss.q_loss(jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([1, 0]), jnp.array([4.0, 3.5]),
                               jnp.array([0.5, 1.0]), loss="mse")
  assert float(value) == pytest.approx(1.125)


def test_importance_weights_hand_computed():
  # A buffer of N = 4 transitions with priorities 1, 2, 3, 4: P = [0.1, 0.2, 0.3, 0.4]; beta 0.5.
  # (N P)^-beta = [0.4, 0.8, 1.2, 1.6]^-0.5 = [1.5811, 1.1180, 0.9129, 0.7906]; the largest is that of P = 0.1.
  # Divided by it: [1, 0.7071, 0.5774, 0.5]. A batch that drew transitions 3, 1, 3:
  weights = losses.importance_weights(jnp.array([0.3, 0.1, 0.3]), jnp.float32(0.1), beta=0.5)
  np.testing.assert_allclose(weights, [0.5774, 1.0, 0.5774], atol=1e-4)
  # beta = 1: full correction, w = P_min / P
  np.testing.assert_allclose(losses.importance_weights(jnp.array([0.4]), jnp.float32(0.1), beta=1.0), [0.25])


def test_the_categorical_loss_is_the_kl_to_the_target_at_the_action_taken():
  # Sample 0 took action 1, whose prediction is uniform over 2 atoms; target [1, 0]: KL = log 2.
  # Sample 1 took action 0, predicted [0.25, 0.75] (logits log 1, log 3), target the same: KL = 0.
  logits = jnp.array([[[5.0, 0.0], [0.0, 0.0]], [[0.0, jnp.log(3.0)], [1.0, 2.0]]])
  loss, kl = td_loss.categorical_loss(logits, jnp.array([1, 0]), jnp.array([[1.0, 0.0], [0.25, 0.75]]))
  np.testing.assert_allclose(kl, [np.log(2.0), 0.0], atol=1e-6)
  assert float(loss) == pytest.approx(np.log(2.0) / 2, rel=1e-6)
  weighted, _ = td_loss.categorical_loss(logits, jnp.array([1, 0]), jnp.array([[1.0, 0.0], [0.25, 0.75]]),
                                         jnp.array([0.5, 1.0]))
  assert float(weighted) == pytest.approx(np.log(2.0) / 4, rel=1e-6)


def test_the_quantile_loss_by_hand():
  # Two quantiles (tau 0.25, 0.75) of the action taken (1): theta = [0, 2]; target samples [1, 3] (kappa 1).
  # u = T_j - theta_i: [[1, 3], [-1, 1]]; huber: [[0.5, 2.5], [0.5, 0.5]]
  # weights |tau_i - 1{u < 0}|: [[0.25, 0.25], [0.25, 0.75]]
  # sum_i mean_j: (0.125 + 0.625) / 2 + (0.125 + 0.375) / 2 = 0.375 + 0.25 = 0.625
  quantiles = jnp.array([[[5.0, 5.0], [0.0, 2.0]]])
  loss, per_sample = td_loss.quantile_loss(quantiles, jnp.array([1]), jnp.array([[1.0, 3.0]]))
  np.testing.assert_allclose(per_sample, [0.625], rtol=1e-6)
  assert float(td_loss.quantile_loss(quantiles, jnp.array([1]), jnp.array([[1.0, 3.0]]), jnp.array([0.5]))[0]) == \
      pytest.approx(0.3125)


def test_the_quantile_loss_at_given_fractions_by_hand():
  # As above, at fractions tau = [0.1, 0.6] of theta = [0, 2] (IQN's are sampled): weights |tau_i - 1{u < 0}|:
  # [[0.1, 0.1], [0.4, 0.6]]; sum_i mean_j: (0.05 + 0.25) / 2 + (0.2 + 0.3) / 2 = 0.15 + 0.25 = 0.4
  quantiles, action, target = jnp.array([[[5.0, 5.0], [0.0, 2.0]]]), jnp.array([1]), jnp.array([[1.0, 3.0]])
  _, per_sample = td_loss.quantile_loss(quantiles, action, target, tau=jnp.array([[0.1, 0.6]]))  # each sample's own
  np.testing.assert_allclose(per_sample, [0.4], rtol=1e-6)
  _, shared = td_loss.quantile_loss(quantiles, action, target, tau=jnp.array([0.1, 0.6]))  # one for the batch
  np.testing.assert_allclose(shared, [0.4], rtol=1e-6)
  # At the midpoints [0.25, 0.75], QR-DQN's loss: 0.625 as above.
  _, at_midpoints = td_loss.quantile_loss(quantiles, action, target, tau=returns.quantile.midpoints(2))
  np.testing.assert_allclose(at_midpoints, [0.625], rtol=1e-6)


def _stub_network(quantiles_by_count):
  """A Q-network stand-in for `implicit_quantile_loss`: the quantiles (B, A, N) it was given for fractions of that
  count N, whatever the observations (a distinct count for each pass), or their means."""
  def apply(obs, distribution=False, *, tau):
    del obs
    quantiles = quantiles_by_count[tau.shape[-1]]
    return quantiles if distribution else jnp.mean(quantiles, axis=-1)
  return apply


@pytest.mark.parametrize("double_dqn", [False, True])
def test_the_iqn_loss_equals_rlax(double_dqn):
  """rlax.quantile_q_learning of one transition (quantiles (N, A), its fractions tau (N,), the selector's quantiles
  (K, A), the target's (N', A)), Huber parameter 1, vmapped over the batch with each sample's own fractions: a* by the
  mean over K fractions of the online network's quantiles with double Q, else of the target network's."""
  rlax = pytest.importorskip("rlax")
  b, a, n, n_prime, k = 16, 3, 8, 6, 4
  keys = jax.random.split(jax.random.PRNGKey(7), 9)
  z_tm1, z_t = jax.random.normal(keys[0], (b, a, n)), jax.random.normal(keys[1], (b, a, n_prime))
  select_online, select_target = jax.random.normal(keys[2], (b, a, k)), jax.random.normal(keys[3], (b, a, k))
  fractions = dqn.learner.Fractions(online=jax.random.uniform(keys[4], (b, n)),
                                    target=jax.random.uniform(keys[5], (b, n_prime)),
                                    selection=jax.random.uniform(keys[6], (b, k)))
  batch = types.SimpleNamespace(obs=None, next_obs=None, action=jax.random.randint(keys[7], (b,), 0, a),
                                n_step_return=jax.random.normal(keys[8], (b,)),
                                discount=0.9 * (jnp.arange(b) % 5 != 0), next_action_mask=None)
  online = _stub_network({n: z_tm1, k: select_online})
  target = _stub_network({n_prime: z_t, k: select_target})
  loss, (q_mean, per_sample) = dqn.learner.implicit_quantile_loss(online, target, batch, None, fractions,
                                                                  double_dqn=double_dqn)
  selector = select_online if double_dqn else select_target
  expected = jax.jit(jax.vmap(rlax.quantile_q_learning, in_axes=(0, 0, 0, 0, 0, 0, 0, None)), static_argnums=7)(
      z_tm1.swapaxes(1, 2), fractions.online, batch.action, batch.n_step_return, batch.discount,
      selector.swapaxes(1, 2), z_t.swapaxes(1, 2), 1.0)
  np.testing.assert_allclose(per_sample, expected, rtol=1e-5, atol=1e-6)
  assert float(loss) == pytest.approx(float(np.mean(expected)), rel=1e-5)
  q_taken = np.take_along_axis(np.mean(z_tm1, axis=-1), np.asarray(batch.action)[:, None], axis=1)
  assert float(q_mean) == pytest.approx(float(np.mean(q_taken)), rel=1e-5)
