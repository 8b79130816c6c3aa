"""Bootstrap targets of the Q-learning family on a batch of replayed transitions: DQN's target with double Q's
decoupled choice (van Hasselt et al. 2016), and the clipped double-Q target of SAC and TD3 (Fujimoto et al. 2018).

Both take the n-step return G and the discount of its bootstrap (`n_step_return`; for one step G = r_t and
discount = gamma (1 - terminated_t)), so a terminal state bootstraps from nothing and a truncated one from the
values at its final observation. `_t` names the state the target bootstraps from (rlax's convention: the loss's
Q(s_tm1, a_tm1) is regressed on them).
"""

import jax
import jax.numpy as jnp

from distrl.rl import distributions


def double_q_target(return_t, discount_t, q_t_target, q_t_online=None, mask_t=None):
  """Q-learning targets for a batch: y = return_t + discount_t * Q_target(s_t, a*), with no gradient.

      a* = argmax_a Q_target(s_t, a)            (DQN)
      a* = argmax_a Q_online(s_t, a)            (double DQN, when q_t_online is given)

  the argmax over the actions allowed at s_t where `mask_t` is given.

  For one-step targets, return_t = r_t and discount_t = gamma * (1 - terminated_t); `n_step_return`
  gives both for n steps. s_t is the state reached before any auto-reset.

  Args:
    return_t: (discounted sums of) rewards, shaped (B,).
    discount_t: the bootstrap's discount, 0 at terminal states, shaped (B,).
    q_t_target: target-network values Q_target(s_t, .), shaped (B, A).
    q_t_online: online-network values Q_online(s_t, .), shaped (B, A), for double DQN.
    mask_t: the actions allowed at s_t (True), shaped (B, A), or None: all of them.
  Returns:
    y shaped (B,).
  """
  if q_t_target.ndim != 2 or return_t.shape != q_t_target.shape[:1] or discount_t.shape != return_t.shape:
    raise ValueError(f"double_q_target wants return_t (B,), discount_t (B,), q_t (B, A); got "
                     f"{return_t.shape}, {discount_t.shape}, {q_t_target.shape}")
  selector = q_t_target if q_t_online is None else q_t_online
  a_star = distributions.masked_argmax(selector, mask_t)
  bootstrap = jnp.take_along_axis(q_t_target, a_star[:, None], axis=-1)[:, 0]
  return jax.lax.stop_gradient(return_t + discount_t * bootstrap)


def clipped_double_q_target(n_step_return, discount, next_q, next_log_prob=None, alpha=0.0):
  """y = G + discount * (min(Q_1'(s', a'), Q_2'(s', a')) - alpha log pi(a' | s')), with no gradient.

  n_step_return, discount (B,) (0 after a terminal state); next_q (B, 2): the target critics at the next action a'
  (SAC: sampled from its policy; TD3: its target actor's, smoothed); next_log_prob (B,) and alpha: SAC's entropy
  bonus (None: TD3's, none).
  """
  next_v = jnp.min(next_q, axis=-1)
  if next_log_prob is not None:
    next_v = next_v - alpha * next_log_prob
  return jax.lax.stop_gradient(n_step_return + discount * next_v)
