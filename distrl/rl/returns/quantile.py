"""The quantile target of QR-DQN (Dabney et al. 2018): the return distribution as N equally likely values, the
quantiles at the midpoints tau_i = (2i + 1) / 2N, bootstrapped through the n-step return.

    T theta_j = G + discount * theta_j(s_t, a*)    (discount = 0 after a terminal state: every sample is G)

IQN (Dabney et al. 2018, "Implicit Quantile Networks") learns the quantile function itself: its fractions are
drawn uniformly (`sampled`) rather than fixed, and the same target moves the target network's quantiles at its own
sampled fractions tau'_j.

The loss that fits each predicted quantile to these samples is `distrl.rl.td_loss.quantile_loss`.
"""

import jax
import jax.numpy as jnp

from distrl.rl import distributions


def midpoints(num_quantiles: int) -> jax.Array:
  """The quantile fractions tau_i = (2i + 1) / 2N, i = 0 .. N - 1, (N,)."""
  return (2 * jnp.arange(num_quantiles, dtype=jnp.float32) + 1) / (2 * num_quantiles)


def sampled(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Quantile fractions drawn uniformly from [0, 1), `shape` of them, from `key` alone (IQN's tau ~ U[0, 1])."""
  return jax.random.uniform(key, shape, jnp.float32)


def quantile_target(return_t, discount_t, quantiles_t_target, q_t_online=None, mask_t=None):
  """QR-DQN's and IQN's target samples for a batch, with no gradient: the target network's quantiles at s_t for the
  action a*, moved through the n-step return.

      a* = argmax_a mean_j theta_target_j(s_t, a)     (QR-DQN)
      a* = argmax_a Q_online(s_t, a)                   (with double Q, when q_t_online is given)

  IQN passes its selector as q_t_online always: the mean over K sampled fractions of the online network's quantiles
  (double Q) or of the target network's.

  the argmax over the actions allowed at s_t where `mask_t` is given.

  Args:
    return_t: the n-step return G (B,) and discount_t its bootstrap's discount (B,) (`n_step_return`).
    quantiles_t_target: the target network's quantiles at s_t, (B, A, N).
    q_t_online: the expected returns at s_t (B, A) that choose a*: the online network's, for double Q.
    mask_t: the actions allowed at s_t (True), (B, A), or None: all of them.
  Returns:
    the target samples (B, N).
  """
  if quantiles_t_target.ndim != 3 or return_t.shape != quantiles_t_target.shape[:1] or \
      discount_t.shape != return_t.shape:
    raise ValueError(f"quantile_target wants return_t (B,), discount_t (B,), quantiles (B, A, N); got "
                     f"{return_t.shape}, {discount_t.shape}, {quantiles_t_target.shape}")
  selector = jnp.mean(quantiles_t_target, axis=-1) if q_t_online is None else q_t_online
  a_star = distributions.masked_argmax(selector, mask_t)
  chosen = jnp.take_along_axis(quantiles_t_target, a_star[:, None, None], axis=1)[:, 0]
  return jax.lax.stop_gradient(return_t[:, None] + discount_t[:, None] * chosen)
