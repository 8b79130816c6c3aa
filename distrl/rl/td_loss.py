"""The TD loss of a Q-network against fixed targets, which DQN (on replayed batches) and PQN (on Q(lambda) returns
of a rollout) both minimise; and its distributional counterparts (C51's; QR-DQN's and IQN's)."""

import jax
import jax.numpy as jnp
import optax

from distrl.rl.returns import quantile


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


def quantile_loss(quantiles_tm1, a_tm1, target, weights=None, *, tau=None, kappa: float = 1.0):
  """Weighted mean quantile Huber loss of the predicted quantiles at the actions taken against target samples
  (QR-DQN and IQN, Dabney et al. 2018):

      u_ij = T_j - theta_i,   rho_i(u) = |tau_i - 1{u < 0}| huber_kappa(u)
      per sample: sum_i mean_j rho_i(u_ij)

  with tau_i the quantile fractions of theta: QR-DQN's fixed midpoints (2i + 1) / 2N (`returns.quantile.midpoints`,
  when `tau` is None), or IQN's sampled ones, `tau` (B, N) or (N,); and w = 1 unless `weights` (B,) are given. The
  per-sample loss also ranks priorities.

  quantiles_tm1 is shaped (B, A, N), a_tm1 (B,), target (B, N'). Returns (loss, per-sample loss (B,)).
  """
  theta = jnp.take_along_axis(quantiles_tm1, a_tm1[:, None, None], axis=1)[:, 0]  # (B, N)
  u = target[:, None, :] - theta[:, :, None]  # (B, N, N')
  tau = quantile.midpoints(theta.shape[-1]) if tau is None else jnp.asarray(tau)
  tau = jnp.broadcast_to(tau, theta.shape)  # the fraction of each theta_i
  weight = jnp.abs(tau[:, :, None] - jax.lax.stop_gradient((u < 0).astype(u.dtype)))
  per_sample = jnp.sum(jnp.mean(weight * optax.huber_loss(u, delta=kappa), axis=-1), axis=-1)
  return jnp.mean(per_sample if weights is None else weights * per_sample), per_sample
