"""The TD loss of a Q-network against fixed targets, which DQN (on replayed batches) and PQN (on Q(lambda) returns
of a rollout) both minimise; and its distributional (C51) counterpart."""

import jax
import jax.numpy as jnp
import optax


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


def categorical_loss(logits_tm1, a_tm1, target, weights=None):
  """Weighted mean KL divergence from the target distributions to the predicted ones at the actions taken (C51).

      kl = sum_i m_i (log m_i - log p_i),   p = softmax(logits_tm1[a_tm1])
  with w = 1 unless `weights` (B,) are given. Its gradient is the cross-entropy's (m is fixed); unlike the
  cross-entropy it is 0 where the prediction is the target, so it is also what prioritised replay ranks by
  (Hessel et al. 2018).

  logits_tm1 is shaped (B, A, N), a_tm1 (B,), target (B, N). Returns (loss, kl (B,)).
  """
  log_p = jax.nn.log_softmax(jnp.take_along_axis(logits_tm1, a_tm1[:, None, None], axis=1)[:, 0], axis=-1)
  kl = jnp.sum(jax.scipy.special.xlogy(target, target) - target * log_p, axis=-1)
  per_sample = kl if weights is None else weights * kl
  return jnp.mean(per_sample), kl
