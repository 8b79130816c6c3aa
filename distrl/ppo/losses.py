"""PPO's loss as a pure function of arrays: the clipped surrogate. Its advantages are GAE's
(`distrl.rl.returns.gae`).

`ppo_loss` takes its seven same-shaped arrays by keyword. Hyperparameters are keyword-only; bind them once with
`functools.partial`.
"""

import jax.numpy as jnp

from distrl.rl.actor_critic_loss import Losses, combined


def ppo_loss(*, log_prob, old_log_prob, advantage, value, old_value, target, entropy,
             clip_eps: float, vf_coef: float, ent_coef: float, clip_value_loss: bool) -> Losses:
  """The clipped PPO objective (Schulman et al. 2017), as a loss to minimise.

      ratio  = exp(log_prob - old_log_prob)
      policy = -mean(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A))
      value  = 0.5 * mean(max((V - target)^2, (old_V + clip(V - old_V, -eps, eps) - target)^2))
      total  = policy + vf_coef * value - ent_coef * mean(entropy)

  All array arguments are shaped (B,); `advantage` is already normalised. Without
  `clip_value_loss` the value term is 0.5 * mean((V - target)^2). approx_kl is the
  low-variance estimator mean((ratio - 1) - log ratio).
  """
  log_ratio = log_prob - old_log_prob
  ratio = jnp.exp(log_ratio)
  surrogate = jnp.minimum(ratio * advantage, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantage)
  policy = -jnp.mean(surrogate)

  value_error = jnp.square(value - target)
  if clip_value_loss:
    clipped = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
    value_error = jnp.maximum(value_error, jnp.square(clipped - target))
  value_loss = 0.5 * jnp.mean(value_error)

  return combined(policy=policy, value=value_loss, entropy=entropy, log_ratio=log_ratio,
                  clipped=jnp.abs(ratio - 1.0) > clip_eps, vf_coef=vf_coef, ent_coef=ent_coef)

