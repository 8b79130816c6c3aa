"""DQN math as pure functions of arrays: Q-learning targets (Mnih et al.
2015; double DQN: van Hasselt et al. 2016), the TD loss, and prioritised replay's importance weights
(Schaul et al. 2016). Hyperparameters are keyword-only.
"""

import jax
import jax.numpy as jnp
import optax

from distrl.rl import distributions


def td_target(return_t, discount_t, q_t_target, q_t_online=None, mask_t=None):
  """Q-learning targets for a batch: y = return_t + discount_t * Q_target(s_t, a*), with no gradient.

      a* = argmax_a Q_target(s_t, a)            (DQN)
      a* = argmax_a Q_online(s_t, a)            (double DQN, when q_t_online is given)

  the argmax over the actions allowed at s_t where `mask_t` is given.

  For one-step targets, return_t = r_t and discount_t = gamma * (1 - terminated_t); `replay.n_step_return`
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
    raise ValueError(f"td_target wants return_t (B,), discount_t (B,), q_t (B, A); got "
                     f"{return_t.shape}, {discount_t.shape}, {q_t_target.shape}")
  selector = q_t_target if q_t_online is None else q_t_online
  a_star = distributions.masked_argmax(selector, mask_t)
  bootstrap = jnp.take_along_axis(q_t_target, a_star[:, None], axis=-1)[:, 0]
  return jax.lax.stop_gradient(return_t + discount_t * bootstrap)


def q_loss(q_tm1, a_tm1, y, weights=None, *, loss: str):
  """Weighted mean TD loss of Q(s_tm1, a_tm1) against targets y.

      td = y - Q(s_tm1, a_tm1)
      "mse":   mean(w * td^2)
      "huber": mean(w * huber_1(td))
  with w = 1 unless `weights` (B,) are given (prioritised replay's importance weights).

  q_tm1 is shaped (B, A), a_tm1, y and weights (B,). Returns (loss, mean of the chosen Q values, td (B,)).
  """
  q_chosen = jnp.take_along_axis(q_tm1, a_tm1[:, None], axis=-1)[:, 0]
  td = y - q_chosen
  if loss == "mse":
    per_sample = jnp.square(td)
  elif loss == "huber":
    per_sample = optax.huber_loss(td, delta=1.0)
  else:
    raise ValueError(f"unknown loss {loss!r}: use 'mse' or 'huber'")
  if weights is not None:
    per_sample = weights * per_sample
  return jnp.mean(per_sample), jnp.mean(q_chosen), td


def importance_weights(probability, min_probability, *, beta: float):
  """Prioritised replay's importance-sampling weights, normalised so that the largest is 1.

      w_i = (N * P(i))^-beta / max_j (N * P(j))^-beta = (P(i) / min_j P(j))^-beta

  where P is the sampling distribution over the N transitions of the buffer (N cancels).

  Args:
    probability: P(i) of each sampled transition, shaped (B,).
    min_probability: min_j P(j) over the whole buffer, a scalar.
  Returns:
    w shaped (B,), in (0, 1].
  """
  return jax.lax.stop_gradient((probability / min_probability) ** -beta)
