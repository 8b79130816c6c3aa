"""DQN math against numbers computed by hand: n-step returns, TD targets, the loss, importance weights."""

import jax.numpy as jnp
import numpy as np
import pytest

from distrl.dqn import losses
from distrl.rl import replay

pytestmark = pytest.mark.unit

# Three transitions, gamma 0.9. Row 1 reached a terminal state; row 0 ended by a time limit
# (truncated), which is *not* terminal: it bootstraps like any other step, from the final
# observation's values that the replay stores as next_obs.
R_T = jnp.array([1.0, 0.5, 2.0])
TERMINATED_T = jnp.array([0.0, 1.0, 0.0])
Q_T_TARGET = jnp.array([[1.0, 3.0], [10.0, 20.0], [4.0, 2.0]])
Q_T_ONLINE = jnp.array([[5.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
DISCOUNT_T = 0.9 * (1.0 - TERMINATED_T)  # one-step targets


def test_dqn_target_bootstraps_from_the_target_max_except_at_terminals():
  y = losses.td_target(R_T, DISCOUNT_T, Q_T_TARGET)
  # [1 + 0.9 * max(1, 3), 0.5 (terminal), 2 + 0.9 * max(4, 2)]
  np.testing.assert_allclose(y, [3.7, 0.5, 5.6], rtol=1e-6)


def test_double_dqn_target_takes_the_online_argmax_and_the_target_value():
  y = losses.td_target(R_T, DISCOUNT_T, Q_T_TARGET, Q_T_ONLINE)
  # online argmax [0, -, 1] -> target values [1, -, 2] -> [1 + 0.9, 0.5, 2 + 1.8]
  np.testing.assert_allclose(y, [1.9, 0.5, 3.8], rtol=1e-6)


def test_td_target_checks_shapes():
  with pytest.raises(ValueError, match="td_target wants"):
    losses.td_target(R_T, DISCOUNT_T, Q_T_TARGET[0])


# n = 3 steps from each of four sampled transitions, gamma 0.5, rewards 1, 2, 4 in every row:
#   row 0: no episode end in the window: all three rewards, bootstrap after 3 steps
#   row 1: terminated at step 1: the sum stops there, no bootstrap
#   row 2: truncated (time limit) at step 1: the sum stops there, bootstrap from step 1's final observation
#   row 3: terminated at step 0 (the sampled step itself): one reward; what follows is another episode
REWARDS = jnp.array([[1.0, 2.0, 4.0]] * 4)
TERMINATED = jnp.array([[0, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0]], bool)
EPISODE_END = jnp.array([[0, 0, 0], [0, 1, 0], [0, 1, 0], [1, 1, 0]], bool)


def test_n_step_returns_cut_at_episode_ends_and_bootstrap_only_past_time_limits():
  n_step, discount, last = replay.n_step_return(REWARDS, TERMINATED, EPISODE_END, gamma=0.5)
  # row 0: 1 + 0.5 * 2 + 0.25 * 4 = 3, discount 0.5^3; rows 1, 2: 1 + 0.5 * 2 = 2; row 3: 1
  np.testing.assert_allclose(n_step, [3.0, 2.0, 2.0, 1.0])
  # the bootstrap: 0.125 after three steps; 0 at the terminal (row 1); 0.5^2 after the truncation (row 2); 0 (row 3)
  np.testing.assert_allclose(discount, [0.125, 0.0, 0.25, 0.0])
  np.testing.assert_array_equal(last, [2, 1, 1, 0])  # where the bootstrap observation is: next_obs of that step


def test_one_step_return_is_the_reward_and_gamma_unless_terminal():
  n_step, discount, last = replay.n_step_return(R_T[:, None], TERMINATED_T[:, None], TERMINATED_T[:, None],
                                                gamma=0.9)
  np.testing.assert_allclose(n_step, R_T)
  np.testing.assert_allclose(discount, DISCOUNT_T)
  np.testing.assert_array_equal(last, [0, 0, 0])


def test_n_step_return_checks_shapes():
  with pytest.raises(ValueError, match="n_step_return wants"):
    replay.n_step_return(REWARDS[0], TERMINATED[0], EPISODE_END[0], gamma=0.5)


@pytest.mark.parametrize("loss, expected", [("mse", (4.0 + 0.25) / 2), ("huber", ((2.0 - 0.5) + 0.5 * 0.25) / 2)])
def test_q_loss_hand_computed(loss, expected):
  # Q(s, a) chosen: [2, 3]; td = y - Q = [2, 0.5]
  value, q_mean, td = losses.q_loss(jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([1, 0]), jnp.array([4.0, 3.5]),
                                    loss=loss)
  assert float(value) == pytest.approx(expected)
  assert float(q_mean) == pytest.approx(2.5)
  np.testing.assert_allclose(td, [2.0, 0.5])


def test_q_loss_weights_each_sample():
  # td = [2, 0.5] as above, weights [0.5, 1]: (0.5 * 4 + 1 * 0.25) / 2
  value, _, _ = losses.q_loss(jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([1, 0]), jnp.array([4.0, 3.5]),
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
