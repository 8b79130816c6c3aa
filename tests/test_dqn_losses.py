"""DQN's losses against numbers computed by hand: the TD loss (`distrl.rl.td_loss`, PQN's too) and importance
weights (its n-step returns and targets are tested in test_returns.py)."""

import jax.numpy as jnp
import numpy as np
import pytest

from distrl.dqn import losses
from distrl.rl import td_loss

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
