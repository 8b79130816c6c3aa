"""SAC's own math (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications"), as pure functions of
arrays; the critic's clipped double-Q target (`distrl.rl.returns`) and loss (`distrl.rl.twin_critic`) are shared
with TD3."""

import jax
import jax.numpy as jnp


def actor_loss(q, log_prob, alpha):
  """mean_b (alpha log pi(a_b | s_b) - min_i Q_i(s_b, a_b)), for actions a_b drawn from the policy by
  reparameterisation: q (B, 2), log_prob (B,), alpha a scalar (no gradient to it)."""
  return jnp.mean(jax.lax.stop_gradient(alpha) * log_prob - jnp.min(q, axis=-1))


def temperature_loss(log_alpha, log_prob, target_entropy: float):
  """mean_b alpha (-log pi(a_b | s_b) - target_entropy), alpha = exp(log_alpha), the log-probabilities held fixed
  (eq. 18): its gradient raises alpha while the policy's entropy estimate -log pi is below the target, and
  lowers it above."""
  return jnp.mean(jnp.exp(log_alpha) * jax.lax.stop_gradient(-log_prob - target_entropy))
