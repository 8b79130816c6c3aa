"""DQN math as pure functions of arrays (Mnih et al. 2015; double DQN: van Hasselt et al. 2016)."""

import jax
import jax.numpy as jnp
import optax


def td_target(r_t, terminated_t, q_t_target, q_t_online=None, *, gamma: float):
  """One-step Q-learning targets for a batch of transitions (s_tm1, a_tm1, r_t, s_t).

      y = r_t + gamma * (1 - terminated_t) * Q_target(s_t, a*),
      a* = argmax_a Q_target(s_t, a)            (DQN)
      a* = argmax_a Q_online(s_t, a)            (double DQN, when q_t_online is given)

  s_t is the state the step reached before any auto-reset, so a time-limit truncation
  (terminated_t = 0) still bootstraps.

  Args:
    r_t: rewards, shaped (B,).
    terminated_t: 1 where s_t is terminal, shaped (B,).
    q_t_target: target-network values Q_target(s_t, .), shaped (B, A).
    q_t_online: online-network values Q_online(s_t, .), shaped (B, A), for double DQN.
  Returns:
    y shaped (B,), with no gradient through it.
  """
  if q_t_target.ndim != 2 or r_t.shape != q_t_target.shape[:1] or terminated_t.shape != r_t.shape:
    raise ValueError(f"td_target wants r_t (B,), terminated_t (B,), q_t (B, A); got "
                     f"{r_t.shape}, {terminated_t.shape}, {q_t_target.shape}")
  selector = q_t_target if q_t_online is None else q_t_online
  a_star = jnp.argmax(selector, axis=-1)
  bootstrap = jnp.take_along_axis(q_t_target, a_star[:, None], axis=-1)[:, 0]
  return jax.lax.stop_gradient(r_t + gamma * (1.0 - terminated_t.astype(jnp.float32)) * bootstrap)


def q_loss(q_tm1, a_tm1, y, *, loss: str):
  """Mean TD loss of Q(s_tm1, a_tm1) against targets y: "mse" = mean(td^2), "huber" = mean(huber_1(td)).

  q_tm1 is shaped (B, A), a_tm1 and y (B,). Returns (loss, mean of the chosen Q values).
  """
  q_chosen = jnp.take_along_axis(q_tm1, a_tm1[:, None], axis=-1)[:, 0]
  td = y - q_chosen
  if loss == "mse":
    value = jnp.mean(jnp.square(td))
  elif loss == "huber":
    value = jnp.mean(optax.huber_loss(td, delta=1.0))
  else:
    raise ValueError(f"unknown loss {loss!r}: use 'mse' or 'huber'")
  return value, jnp.mean(q_chosen)
