"""TD targets and the Q loss against numbers computed by hand."""

import jax.numpy as jnp
import numpy as np
import pytest

from distrl.dqn import losses

# Three transitions, gamma 0.9. Row 1 reached a terminal state; row 0 ended by a time limit
# (truncated), which is *not* terminal: it bootstraps like any other step, from the final
# observation's values that the replay stores as next_obs.
R_T = jnp.array([1.0, 0.5, 2.0])
TERMINATED_T = jnp.array([0.0, 1.0, 0.0])
Q_T_TARGET = jnp.array([[1.0, 3.0], [10.0, 20.0], [4.0, 2.0]])
Q_T_ONLINE = jnp.array([[5.0, 0.0], [0.0, 0.0], [0.0, 1.0]])


def test_dqn_target_bootstraps_from_the_target_max_except_at_terminals():
  y = losses.td_target(R_T, TERMINATED_T, Q_T_TARGET, gamma=0.9)
  # [1 + 0.9 * max(1, 3), 0.5 (terminal), 2 + 0.9 * max(4, 2)]
  np.testing.assert_allclose(y, [3.7, 0.5, 5.6], rtol=1e-6)


def test_double_dqn_target_takes_the_online_argmax_and_the_target_value():
  y = losses.td_target(R_T, TERMINATED_T, Q_T_TARGET, Q_T_ONLINE, gamma=0.9)
  # online argmax [0, -, 1] -> target values [1, -, 2] -> [1 + 0.9, 0.5, 2 + 1.8]
  np.testing.assert_allclose(y, [1.9, 0.5, 3.8], rtol=1e-6)


def test_td_target_checks_shapes():
  with pytest.raises(ValueError, match="td_target wants"):
    losses.td_target(R_T, TERMINATED_T, Q_T_TARGET[0], gamma=0.9)


@pytest.mark.parametrize("loss, expected", [("mse", (4.0 + 0.25) / 2), ("huber", ((2.0 - 0.5) + 0.5 * 0.25) / 2)])
def test_q_loss_hand_computed(loss, expected):
  # Q(s, a) chosen: [2, 3]; td = y - Q = [2, 0.5]
  value, q_mean = losses.q_loss(jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([1, 0]), jnp.array([4.0, 3.5]), loss=loss)
  assert float(value) == pytest.approx(expected)
  assert float(q_mean) == pytest.approx(2.5)
