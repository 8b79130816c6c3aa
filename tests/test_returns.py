"""The return estimators and targets of distrl.rl.returns: each on numbers computed by hand, and against rlax's
(unbatched, vmapped here over environments or samples) where rlax has the estimator.

rlax gives one discount and one lambda per step where distrl gives two flags (see distrl.rl.returns): a terminal
step is discount_t = gamma (1 - terminated_t), a cut trace lambda_t = lambda (1 - episode_end_t), and the value a
step bootstraps from is rlax's v_t (our value_tp1, before any reset).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax

from distrl.rl import returns, td_loss

pytestmark = pytest.mark.unit

f32 = lambda x: jnp.asarray(x, jnp.float32)


def over_envs(fn, *arrays):
  """rlax's unbatched `fn` on time-major (T, E, ...) arrays, environment by environment: (T, E, ...) results (one
  small compile rather than many ops dispatched one by one)."""
  return jax.jit(jax.vmap(fn, in_axes=1, out_axes=1))(*arrays)


def rollout(seed: int, shape=(16, 3)):
  """A random rollout with terminations (about 1 step in 10) and truncations (about 1 in 7): rewards, V(s_t), the
  values of the next row, V(s_{t+1}) (the next row's where the episode goes on, a final state's own where it ended),
  and the two flags."""
  keys = jax.random.split(jax.random.PRNGKey(seed), 5)
  reward, value, final_value = (jax.random.normal(k, shape) for k in keys[:3])
  next_row = jnp.concatenate([value[1:], jax.random.normal(keys[3], shape[1:])[None]])
  u = jax.random.uniform(keys[4], shape)
  terminated, episode_end = u < 0.1, u < 0.25
  assert terminated.any() and (episode_end & ~terminated).any()
  value_tp1 = jnp.where(episode_end, final_value, next_row)
  return reward, value, next_row, value_tp1, terminated, episode_end


def discount_and_lambda(terminated, episode_end, *, gamma: float, lambda_: float):
  """rlax's per-step discount and lambda for our flags."""
  return gamma * (1.0 - f32(terminated)), lambda_ * (1.0 - f32(episode_end))


# --- GAE -------------------------------------------------------------------------------------------------------------

# One environment, four steps, gamma 0.9, lambda 0.8 (gamma * lambda = 0.72).
# Step 1 is truncated by a time limit: the trace ends, but it bootstraps from V(final obs) = 3.0.
# Step 3 is terminal: no bootstrap (its value_tp1 = 0.7 must be ignored).
REWARD = [1.0, 0.0, 2.0, 1.0]
VALUE = [0.5, 1.0, 1.5, 2.0]
VALUE_TP1 = [1.0, 3.0, 2.0, 0.7]
TERMINATED = [0, 0, 0, 1]
EPISODE_END = [0, 1, 0, 1]
# delta = r + 0.9 * (1 - terminated) * V' - V = [1.4, 1.7, 2.3, -1.0]
# A3 = -1.0; A2 = 2.3 + 0.72 * -1.0 = 1.58; A1 = 1.7 (trace cut); A0 = 1.4 + 0.72 * 1.7 = 2.624
EXPECTED = [2.624, 1.7, 1.58, -1.0]


def _gae(*arrays, jit=False):
  fn = jax.jit(returns.gae, static_argnames=("gamma", "gae_lambda")) if jit else returns.gae
  return fn(*map(jnp.asarray, arrays), gamma=0.9, gae_lambda=0.8)


@pytest.mark.parametrize("jit", [False, True])
def test_gae_hand_computed_with_truncation_and_termination(jit):
  advantage = _gae(REWARD, VALUE, VALUE_TP1, np.float32(TERMINATED), np.float32(EPISODE_END), jit=jit)
  np.testing.assert_allclose(advantage, EXPECTED, rtol=1e-6)


def test_gae_treating_truncation_as_terminal_would_differ():
  # The same data with step 1 marked terminal: delta_1 = 0 - 1.0 = -1.0 instead of 1.7.
  advantage = _gae(REWARD, VALUE, VALUE_TP1, np.float32([0, 1, 0, 1]), np.float32(EPISODE_END))
  assert float(advantage[1]) == pytest.approx(-1.0)
  assert float(advantage[0]) == pytest.approx(1.4 + 0.72 * -1.0)


def test_gae_batched_over_environments_is_per_environment():
  column = lambda x: np.stack([np.asarray(x, np.float32), np.zeros(4, np.float32)], axis=1)  # (T, 2)
  advantage = _gae(column(REWARD), column(VALUE), column(VALUE_TP1), column(TERMINATED), column(EPISODE_END))
  np.testing.assert_allclose(advantage[:, 0], EXPECTED, rtol=1e-6)
  np.testing.assert_allclose(advantage[:, 1], 0.0)


def test_gae_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match="share one shape"):
    _gae(REWARD, VALUE[:3], VALUE_TP1, np.float32(TERMINATED), np.float32(EPISODE_END))


def test_gae_equals_rlax():
  """rlax's GAE reads V(s_{t+1}) from one sequence of T + 1 values, so its bootstrap past a truncation is the next
  row's value: here a truncated step's final state has that value (the trace is still cut), the hand-computed test
  above bootstraps from a final state of its own."""
  reward, value, next_row, _, terminated, episode_end = rollout(0)
  discount, lambda_t = discount_and_lambda(terminated, episode_end, gamma=0.97, lambda_=0.9)
  values = jnp.concatenate([value, next_row[-1:]])  # (T + 1, E)
  expected = over_envs(rlax.truncated_generalized_advantage_estimation, reward, discount, lambda_t, values)
  advantage = returns.gae(reward, value, next_row, terminated, episode_end, gamma=0.97, gae_lambda=0.9)
  np.testing.assert_allclose(advantage, expected, rtol=1e-5, atol=1e-5)


def test_gae_plus_the_value_is_the_lambda_return():
  """A_t + V(s_t) = G_t^lambda with lambda_t = lambda (1 - episode_end_t), wherever V(s_{t+1}) is the next row's
  V(s_t) while the episode goes on; final states' values are their own."""
  reward, value, _, value_tp1, terminated, episode_end = rollout(1)
  advantage = returns.gae(reward, value, value_tp1, terminated, episode_end, gamma=0.97, gae_lambda=0.9)
  g = returns.lambda_returns(reward, value_tp1, terminated, episode_end, gamma=0.97, lambda_=0.9)
  np.testing.assert_allclose(advantage + value, g, rtol=1e-5, atol=1e-5)


# --- lambda-returns and Q(lambda) ------------------------------------------------------------------------------------

def test_lambda_returns_hand_computed():
  """One environment, four steps, gamma 0.5, lambda 0.5; rewards 1, 2, 3, 4; max Q at each next state 10, 20, 30, 40.
  Step 1 is truncated (a time limit: bootstrap, but the trace stops), step 3 the end of the rollout."""
  r = jnp.array([1.0, 2.0, 3.0, 4.0])
  q_tp1 = jnp.array([10.0, 20.0, 30.0, 40.0])
  terminated = jnp.array([False, False, False, False])
  episode_end = jnp.array([False, True, False, False])
  g = returns.lambda_returns(r, q_tp1, terminated, episode_end, gamma=0.5, lambda_=0.5)
  # G_3 = 4 + 0.5 * 40 = 24                                 (the rollout's last step bootstraps fully)
  # G_2 = 3 + 0.5 * (0.5 * 30 + 0.5 * 24) = 3 + 13.5 = 16.5
  # G_1 = 2 + 0.5 * 20 = 12                                 (truncated: no trace into the next episode)
  # G_0 = 1 + 0.5 * (0.5 * 10 + 0.5 * 12) = 1 + 5.5 = 6.5
  np.testing.assert_allclose(g, [6.5, 12.0, 16.5, 24.0])
  # Terminal at step 1 instead: G_1 = 2 (no bootstrap), G_0 = 1 + 0.5 * (0.5 * 10 + 0.5 * 2) = 4
  g = returns.lambda_returns(r, q_tp1, episode_end, episode_end, gamma=0.5, lambda_=0.5)
  np.testing.assert_allclose(g, [4.0, 2.0, 16.5, 24.0])
  # lambda = 0 is one-step Q-learning: r + gamma * max Q(s')
  g = returns.lambda_returns(r, q_tp1, terminated, episode_end, gamma=0.5, lambda_=0.0)
  np.testing.assert_allclose(g, r + 0.5 * q_tp1)


def test_lambda_returns_check_shapes():
  with pytest.raises(ValueError, match="must share one shape"):
    returns.lambda_returns(jnp.zeros(3), jnp.zeros(4), jnp.zeros(3), jnp.zeros(3), gamma=0.9, lambda_=0.9)


def test_lambda_returns_equal_rlax_with_truncations():
  """rlax's lambda_returns takes the bootstrap values apart from V(s_t), so a truncation maps exactly."""
  reward, _, _, value_tp1, terminated, episode_end = rollout(2)
  discount, lambda_t = discount_and_lambda(terminated, episode_end, gamma=0.97, lambda_=0.8)
  expected = over_envs(rlax.lambda_returns, reward, discount, value_tp1, lambda_t)
  g = returns.lambda_returns(reward, value_tp1, terminated, episode_end, gamma=0.97, lambda_=0.8)
  np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-5)


def test_q_lambda_as_pqn_takes_it_equals_rlax():
  """PQN's targets: lambda-returns of max_a Q(s_{t+1}, a); rlax.q_lambda's TD error against Q(s_t, a_t) = 0."""
  reward, _, _, _, terminated, episode_end = rollout(3)
  q_t = jax.random.normal(jax.random.PRNGKey(4), reward.shape + (5,))  # (T, E, A) at every s_{t+1}
  discount, lambda_t = discount_and_lambda(terminated, episode_end, gamma=0.99, lambda_=0.65)
  zeros, actions = jnp.zeros_like(q_t), jnp.zeros(reward.shape, jnp.int32)
  expected = over_envs(rlax.q_lambda, zeros, actions, reward, discount, q_t, lambda_t)
  g = returns.lambda_returns(reward, jnp.max(q_t, axis=-1), terminated, episode_end, gamma=0.99, lambda_=0.65)
  np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-5)


# --- V-trace ---------------------------------------------------------------------------------------------------------

# A rollout of 5 steps whose third step terminates, with importance ratios above and below 1.
VT_VALUE = [0.5, -0.2, 1.0, 0.3, 0.8]
VT_VALUE_TP1 = [-0.2, 1.0, 0.0, 0.8, 0.6]  # the next row; 0 after the terminal step; V(s_T) = 0.6 last
VT_REWARD = [1.0, 0.0, -1.0, 2.0, 0.5]
VT_LOG_RHO = [0.3, -0.5, 1.2, 0.0, -2.0]
VT_TERMINATED = [0, 0, 1, 0, 0]


@pytest.mark.parametrize("rho_clip, pg_rho_clip", [(1.0, 1.0), (1.5, 2.0)])
def test_vtrace_equals_rlax(rho_clip, pg_rho_clip):
  """rlax.vtrace_td_error_and_advantage(v_tm1, v_t, r_t, discount_t = 0.9 (1 - terminated), rho_tm1, lambda_ = 0.8,
  clip_rho_threshold, clip_pg_rho_threshold): its errors + v_tm1 are the targets, its pg_advantage the advantages."""
  discount = 0.9 * (1.0 - f32(VT_TERMINATED))
  expected = rlax.vtrace_td_error_and_advantage(f32(VT_VALUE), f32(VT_VALUE_TP1), f32(VT_REWARD), discount,
                                                jnp.exp(f32(VT_LOG_RHO)), 0.8, rho_clip, pg_rho_clip)
  out = returns.vtrace(f32(VT_REWARD), f32(VT_VALUE), f32(VT_VALUE_TP1), f32(VT_TERMINATED), f32(VT_TERMINATED),
                       f32(VT_LOG_RHO), gamma=0.9, lambda_=0.8, rho_clip=rho_clip, pg_rho_clip=pg_rho_clip)
  np.testing.assert_allclose(out.target, expected.errors + f32(VT_VALUE), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(out.advantage, expected.pg_advantage, rtol=1e-6, atol=1e-6)


def test_vtrace_with_truncations_equals_rlax():
  """Over a random rollout with both kinds of ends. rlax's policy-gradient advantage bootstraps from the next row's
  value (its v_tm1[t + 1]), so it is compared where no truncation lets that differ from the final state's value."""
  reward, value, _, value_tp1, terminated, episode_end = rollout(5)
  log_rho = 0.5 * jax.random.normal(jax.random.PRNGKey(6), reward.shape)
  discount, lambda_t = discount_and_lambda(terminated, episode_end, gamma=0.97, lambda_=0.9)
  fn = functools.partial(rlax.vtrace_td_error_and_advantage, clip_rho_threshold=1.0, clip_pg_rho_threshold=1.2)
  expected = over_envs(fn, value, value_tp1, reward, discount, jnp.exp(log_rho), lambda_t)
  out = returns.vtrace(reward, value, value_tp1, terminated, episode_end, log_rho, gamma=0.97, lambda_=0.9,
                       rho_clip=1.0, pg_rho_clip=1.2)
  np.testing.assert_allclose(out.target, expected.errors + value, rtol=1e-5, atol=1e-5)
  truncated = episode_end & ~terminated
  np.testing.assert_allclose(jnp.where(truncated, 0.0, out.advantage), jnp.where(truncated, 0.0, expected.pg_advantage),
                             rtol=1e-5, atol=1e-5)


def test_vtrace_cuts_the_trace_at_a_truncation_and_bootstraps_from_its_final_state():
  """gamma = lambda = 1, V = 0, rewards 1, the second step truncated with V(final state) = 5, V(s_T) = 2; ratios 2,
  1/2, 1 (rho clipped at 1): delta = (1, 3, 3), c = (1, 1/2, 1), a_2 = 3, a_1 = 3 + 0 (cut), a_0 = 1 + 3 = 4; the
  policy gradient's advantages (1 + a_1, 1/2 (1 + 5), 1 + 2)."""
  out = returns.vtrace(f32([1, 1, 1]), f32([0, 0, 0]), f32([0, 5, 2]), f32([0, 0, 0]), f32([0, 1, 0]),
                       jnp.log(f32([2.0, 0.5, 1.0])), gamma=1.0, lambda_=1.0, rho_clip=1.0, pg_rho_clip=1.0)
  np.testing.assert_allclose(out.target, [4, 3, 3], rtol=1e-6)
  np.testing.assert_allclose(out.advantage, [4, 3, 3], rtol=1e-6)


def test_on_policy_vtrace_is_gae():
  """With rho = 1 both V-trace outputs are GAE(lambda)'s advantage (plus V for the target), ends and all."""
  reward, value, _, value_tp1, terminated, episode_end = rollout(7)
  gae = returns.gae(reward, value, value_tp1, terminated, episode_end, gamma=0.97, gae_lambda=0.9)
  out = returns.vtrace(reward, value, value_tp1, terminated, episode_end, jnp.zeros(reward.shape), gamma=0.97,
                       lambda_=0.9, rho_clip=1.0, pg_rho_clip=1.0)
  np.testing.assert_allclose(out.target, gae + value, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out.advantage, gae, rtol=1e-5, atol=1e-5)


def test_vtrace_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match="share one shape"):
    returns.vtrace(*(jnp.zeros(3),) * 5, jnp.zeros(4), gamma=0.9, lambda_=1.0, rho_clip=1.0, pg_rho_clip=1.0)


# --- n-step returns --------------------------------------------------------------------------------------------------

# n = 3 steps from each of four sampled transitions, gamma 0.5, rewards 1, 2, 4 in every row:
#   row 0: no episode end in the window: all three rewards, bootstrap after 3 steps
#   row 1: terminated at step 1: the sum stops there, no bootstrap
#   row 2: truncated (time limit) at step 1: the sum stops there, bootstrap from step 1's final observation
#   row 3: terminated at step 0 (the sampled step itself): one reward; what follows is another episode
REWARDS = jnp.array([[1.0, 2.0, 4.0]] * 4)
TERMINATED_N = jnp.array([[0, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0]], bool)
EPISODE_END_N = jnp.array([[0, 0, 0], [0, 1, 0], [0, 1, 0], [1, 1, 0]], bool)


def test_n_step_returns_cut_at_episode_ends_and_bootstrap_only_past_time_limits():
  n_step, discount, last = returns.n_step_return(REWARDS, TERMINATED_N, EPISODE_END_N, gamma=0.5)
  # row 0: 1 + 0.5 * 2 + 0.25 * 4 = 3, discount 0.5^3; rows 1, 2: 1 + 0.5 * 2 = 2; row 3: 1
  np.testing.assert_allclose(n_step, [3.0, 2.0, 2.0, 1.0])
  # the bootstrap: 0.125 after three steps; 0 at the terminal (row 1); 0.5^2 after the truncation (row 2); 0 (row 3)
  np.testing.assert_allclose(discount, [0.125, 0.0, 0.25, 0.0])
  np.testing.assert_array_equal(last, [2, 1, 1, 0])  # where the bootstrap observation is: next_obs of that step


def test_one_step_return_is_the_reward_and_gamma_unless_terminal():
  r_t, terminated_t = jnp.array([1.0, 0.5, 2.0]), jnp.array([0.0, 1.0, 0.0])
  n_step, discount, last = returns.n_step_return(r_t[:, None], terminated_t[:, None], terminated_t[:, None],
                                                 gamma=0.9)
  np.testing.assert_allclose(n_step, r_t)
  np.testing.assert_allclose(discount, 0.9 * (1.0 - terminated_t))
  np.testing.assert_array_equal(last, [0, 0, 0])


def test_n_step_return_checks_shapes():
  with pytest.raises(ValueError, match="n_step_return wants"):
    returns.n_step_return(REWARDS[0], TERMINATED_N[0], EPISODE_END_N[0], gamma=0.5)


@pytest.mark.parametrize("n", [1, 3, 5])
def test_n_step_targets_equal_rlax(n):
  """Every window of n steps of a random rollout, as the replay reads them, against rlax's strided n-step returns of
  the whole sequence (lambda_t = 1 - episode_end_t: an episode end bootstraps there, from the value of the state it
  reached). Windows run past the rollout's end are rlax's padding and not compared."""
  reward, _, _, value_tp1, terminated, episode_end = rollout(8, shape=(12, 2))
  discount, lambda_t = discount_and_lambda(terminated, episode_end, gamma=0.9, lambda_=1.0)
  fn = functools.partial(rlax.n_step_bootstrapped_returns, n=n)
  expected = over_envs(lambda r, d, v, lam: fn(r, d, v, lambda_t=lam), reward, discount, value_tp1, lambda_t)
  starts = jnp.arange(reward.shape[0] - n + 1)
  window = starts[:, None] + jnp.arange(n)  # (B, n) steps of each environment
  for e in range(reward.shape[1]):
    g, d, last = returns.n_step_return(reward[window, e], terminated[window, e], episode_end[window, e], gamma=0.9)
    y = g + d * value_tp1[starts + last, e]
    np.testing.assert_allclose(y, expected[:len(starts), e], rtol=1e-5, atol=1e-5)


# --- double-Q targets ------------------------------------------------------------------------------------------------

# Three transitions, gamma 0.9. Row 1 reached a terminal state; row 0 ended by a time limit
# (truncated), which is *not* terminal: it bootstraps like any other step, from the final
# observation's values that the replay stores as next_obs.
R_T = jnp.array([1.0, 0.5, 2.0])
TERMINATED_T = jnp.array([0.0, 1.0, 0.0])
Q_T_TARGET = jnp.array([[1.0, 3.0], [10.0, 20.0], [4.0, 2.0]])
Q_T_ONLINE = jnp.array([[5.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
DISCOUNT_T = 0.9 * (1.0 - TERMINATED_T)  # one-step targets


def test_dqn_target_bootstraps_from_the_target_max_except_at_terminals():
  y = returns.double_q_target(R_T, DISCOUNT_T, Q_T_TARGET)
  # [1 + 0.9 * max(1, 3), 0.5 (terminal), 2 + 0.9 * max(4, 2)]
  np.testing.assert_allclose(y, [3.7, 0.5, 5.6], rtol=1e-6)


def test_double_dqn_target_takes_the_online_argmax_and_the_target_value():
  y = returns.double_q_target(R_T, DISCOUNT_T, Q_T_TARGET, Q_T_ONLINE)
  # online argmax [0, -, 1] -> target values [1, -, 2] -> [1 + 0.9, 0.5, 2 + 1.8]
  np.testing.assert_allclose(y, [1.9, 0.5, 3.8], rtol=1e-6)


def test_double_q_target_checks_shapes():
  with pytest.raises(ValueError, match="double_q_target wants"):
    returns.double_q_target(R_T, DISCOUNT_T, Q_T_TARGET[0])


def test_double_q_targets_equal_rlax():
  """rlax's q_learning and double_q_learning give the TD error against Q(s_tm1, a_tm1); at Q = 0 it is the target."""
  keys = jax.random.split(jax.random.PRNGKey(9), 4)
  r_t, q_t_target, q_t_online = jax.random.normal(keys[0], (32,)), *(jax.random.normal(k, (32, 6)) for k in keys[1:3])
  discount_t = 0.99 * (jax.random.uniform(keys[3], (32,)) > 0.2)
  q_tm1, a_tm1 = jnp.zeros((32, 6)), jnp.zeros(32, jnp.int32)
  expected = jax.vmap(rlax.q_learning)(q_tm1, a_tm1, r_t, discount_t, q_t_target)
  np.testing.assert_allclose(returns.double_q_target(r_t, discount_t, q_t_target), expected, rtol=1e-6, atol=1e-6)
  expected = jax.vmap(rlax.double_q_learning)(q_tm1, a_tm1, r_t, discount_t, q_t_target, q_t_online)
  np.testing.assert_allclose(returns.double_q_target(r_t, discount_t, q_t_target, q_t_online), expected, rtol=1e-6,
                             atol=1e-6)


def test_the_clipped_double_q_target_by_hand():
  # The smaller of the twin targets (3, then -2); no bootstrap after a terminal state (discount 0).
  n_step_return, discount = jnp.array([1.0, 0.5]), jnp.array([0.99, 0.0])
  next_q = jnp.array([[3.0, 5.0], [-1.0, -2.0]])
  np.testing.assert_allclose(returns.clipped_double_q_target(n_step_return, discount, next_q), [3.97, 0.5],
                             rtol=1e-6)
  # SAC's entropy bonus: 1 + 0.99 * (3 - 0.2 * 0.5).
  y = returns.clipped_double_q_target(n_step_return, discount, next_q, jnp.array([0.5, 1.0]), 0.2)
  np.testing.assert_allclose(y, [1 + 0.99 * 2.9, 0.5], rtol=1e-6)


def test_targets_carry_no_gradient():
  """The bootstrap targets are held fixed: no gradient flows into the values they bootstrap from."""
  q = jnp.array([[1.0, 3.0], [4.0, 2.0]])
  ones, zeros = jnp.ones(2), jnp.zeros(2)
  grads = [jax.grad(lambda q: jnp.sum(returns.double_q_target(ones, ones, q)))(q),
           jax.grad(lambda q: jnp.sum(returns.clipped_double_q_target(ones, ones, q)))(q),
           jax.grad(lambda v: jnp.sum(returns.lambda_returns(ones, v, zeros, zeros, gamma=0.9, lambda_=0.5)))(ones)]
  for grad in grads:
    np.testing.assert_array_equal(grad, 0.0)


# --- C51 (categorical) ----------------------------------------------------------------------------------------------

ATOMS = jnp.array([-1.0, 0.0, 1.0, 2.0])  # dz = 1


def test_the_projection_splits_each_atom_between_its_neighbours_by_hand():
  # Row 0: 0.5 at 0.25 -> 0.375 on 0, 0.125 on 1; 0.5 at 1.5 -> 0.25 on 1, 0.25 on 2.
  # Row 1: 0.25 at -3 and 0.25 at 5, past either end -> on -1 and on 2; 0.5 exactly at 1 -> all on 1.
  values = jnp.array([[0.25, 1.5, 0.0], [-3.0, 5.0, 1.0]])
  probs = jnp.array([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5]])
  projected = returns.categorical.projection(values, probs, ATOMS)
  np.testing.assert_allclose(projected, [[0.0, 0.375, 0.375, 0.25], [0.25, 0.0, 0.5, 0.25]], atol=1e-6)
  np.testing.assert_allclose(jnp.sum(projected, -1), 1.0, rtol=1e-6)  # the mass is kept


def test_the_c51_target_moves_the_chosen_distribution_by_the_return_and_a_terminal_step_lands_on_it():
  # Two actions; the target network's distributions at s_t (as probabilities; logits = their logs):
  # action 0: all on 0 (mean 0); action 1: half on 1, half on 2 (mean 1.5): a* = 1 (C51), a* = 0 (an online
  # network preferring action 0: double Q).
  probs_t = jnp.array([[[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]] * 2)
  logits_t = jnp.log(jnp.maximum(probs_t, 1e-30))
  g, discount = jnp.array([0.5, 0.5]), jnp.array([0.5, 0.0])  # sample 1 ends in a terminal state
  target = returns.categorical_target(g, discount, logits_t, ATOMS)
  # Sample 0: atoms 1 and 2 -> 0.5 + 0.5 * [1, 2] = [1.0, 1.5]: 0.5 on 1; 0.25 on 1 and 0.25 on 2.
  # Sample 1: everything at G = 0.5: half on 0, half on 1.
  np.testing.assert_allclose(target, [[0.0, 0.0, 0.75, 0.25], [0.0, 0.5, 0.5, 0.0]], atol=1e-6)
  double = returns.categorical_target(g, discount, logits_t, ATOMS, q_t_online=jnp.array([[1.0, 0.0]] * 2))
  # Sample 0 from action 0: all at 0.5 + 0.5 * 0 = 0.5 -> half on 0, half on 1.
  np.testing.assert_allclose(double[0], [0.0, 0.5, 0.5, 0.0], atol=1e-6)
  masked = returns.categorical_target(g, discount, logits_t, ATOMS, mask_t=jnp.array([[True, False]] * 2))
  np.testing.assert_allclose(masked, double, atol=1e-6)  # action 1 not allowed: action 0's distribution
  with pytest.raises(ValueError, match="categorical_target wants"):
    returns.categorical_target(g, discount, logits_t[:, :, :3], ATOMS)


def test_the_projection_equals_rlax():
  """rlax.categorical_l2_project of one distribution (its atoms and probabilities) onto a support; vmapped."""
  keys = jax.random.split(jax.random.PRNGKey(3), 3)
  atoms = returns.categorical.support(51, -10.0, 10.0)
  g, discount = 4.0 * jax.random.normal(keys[0], (64,)), 0.99 * (jax.random.uniform(keys[1], (64,)) > 0.2)
  probs = jax.nn.softmax(jax.random.normal(keys[2], (64, 51)), -1)
  values = g[:, None] + discount[:, None] * atoms[None, :]
  expected = jax.vmap(rlax.categorical_l2_project, in_axes=(0, 0, None))(values, probs, atoms)
  # To float rounding: a return's place on the support is computed in units of its spacing (up to 50 here).
  np.testing.assert_allclose(returns.categorical.projection(values, probs, atoms), expected, atol=1e-4)


# --- QR-DQN (quantiles) ---------------------------------------------------------------------------------------------


def test_the_quantile_target_moves_the_chosen_quantiles_by_the_return():
  # Two actions, 3 quantiles: action 0 [0, 1, 2] (mean 1), action 1 [-3, 3, 6] (mean 2): a* = 1; double Q with an
  # online network preferring action 0: a* = 0. Sample 1 ends in a terminal state: every target sample is G.
  quantiles_t = jnp.array([[[0.0, 1.0, 2.0], [-3.0, 3.0, 6.0]]] * 2)
  g, discount = jnp.array([1.0, 1.0]), jnp.array([0.5, 0.0])
  np.testing.assert_allclose(returns.quantile_target(g, discount, quantiles_t), [[-0.5, 2.5, 4.0], [1.0, 1.0, 1.0]])
  double = returns.quantile_target(g, discount, quantiles_t, q_t_online=jnp.array([[1.0, 0.0]] * 2))
  np.testing.assert_allclose(double[0], [1.0, 1.5, 2.0])
  masked = returns.quantile_target(g, discount, quantiles_t, mask_t=jnp.array([[True, False]] * 2))
  np.testing.assert_allclose(masked, double)
  np.testing.assert_allclose(returns.quantile.midpoints(4), [0.125, 0.375, 0.625, 0.875])
  with pytest.raises(ValueError, match="quantile_target wants"):
    returns.quantile_target(g, discount, quantiles_t[:, 0])


def test_iqn_fractions_are_uniform_in_0_1_and_come_from_the_key_alone():
  tau = returns.quantile.sampled(jax.random.PRNGKey(4), (1000,))
  assert tau.shape == (1000,) and tau.dtype == jnp.float32 and float(tau.min()) >= 0 and float(tau.max()) < 1
  assert 0.45 < float(tau.mean()) < 0.55
  np.testing.assert_array_equal(tau, returns.quantile.sampled(jax.random.PRNGKey(4), (1000,)))
  np.testing.assert_array_equal(tau, jax.random.uniform(jax.random.PRNGKey(4), (1000,)))
  assert not np.allclose(tau, returns.quantile.sampled(jax.random.PRNGKey(5), (1000,)))


def test_the_quantile_loss_equals_rlax():
  """rlax.quantile_q_learning (quantiles (N, A), one sample) with the Huber parameter 1: its target is ours."""
  keys = jax.random.split(jax.random.PRNGKey(5), 5)
  quantiles_tm1, quantiles_t = (jax.random.normal(k, (16, 3, 8)) for k in keys[:2])
  a_tm1 = jax.random.randint(keys[2], (16,), 0, 3)
  r_t, discount_t = jax.random.normal(keys[3], (16,)), 0.9 * (jax.random.uniform(keys[4], (16,)) > 0.2)
  tau = returns.quantile.midpoints(8)
  expected = jax.vmap(rlax.quantile_q_learning, in_axes=(0, None, 0, 0, 0, 0, 0, None))(
      quantiles_tm1.swapaxes(1, 2), tau, a_tm1, r_t, discount_t, quantiles_t.swapaxes(1, 2),
      quantiles_t.swapaxes(1, 2), 1.0)
  target = returns.quantile_target(r_t, discount_t, quantiles_t)
  loss, per_sample = td_loss.quantile_loss(quantiles_tm1, a_tm1, target)
  np.testing.assert_allclose(per_sample, expected, rtol=1e-5, atol=1e-6)
  assert float(loss) == pytest.approx(float(np.mean(expected)), rel=1e-5)
