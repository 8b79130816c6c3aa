"""IMPALA's loss as a pure function of arrays: the actor-critic loss on V-trace's advantages and targets
(`distrl.rl.returns.vtrace`). Hyperparameters are keyword-only.
"""

import jax.numpy as jnp

from distrl.rl.actor_critic_loss import Losses, combined


def impala_loss(*, log_prob, behaviour_log_prob, advantage, value, target, entropy, vf_coef: float, ent_coef: float,
                rho_clip: float) -> Losses:
  """The actor-critic loss on V-trace's advantages and targets (held fixed), as a loss to minimise.

      policy = -mean(log_prob * A)
      value  = 0.5 * mean((V - v_s)^2)
      total  = policy + vf_coef * value - ent_coef * mean(entropy)

  All arrays (B,). approx_kl is mean((ratio - 1) - log ratio) of the policy against the behaviour that acted, and
  clip_fraction the share of ratios above rho_clip (the steps V-trace truncated) by more than 1e-3, so that an
  on-policy ratio of 1 + rounding is not counted.
  """
  log_ratio = log_prob - behaviour_log_prob
  return combined(policy=-jnp.mean(log_prob * advantage), value=0.5 * jnp.mean(jnp.square(value - target)),
                  entropy=entropy, log_ratio=log_ratio, clipped=jnp.exp(log_ratio) > rho_clip + 1e-3, vf_coef=vf_coef,
                  ent_coef=ent_coef)
