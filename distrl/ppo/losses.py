"""PPO math as pure functions of arrays: generalised advantage estimation and the PPO loss.

`gae` takes arrays positionally (time-indexed names); `ppo_loss` takes its seven same-shaped arrays by
keyword. Hyperparameters are keyword-only; bind them once with `functools.partial`.
"""

import jax
import jax.numpy as jnp
from flax import struct


def gae(reward_t, value_t, value_tp1, terminated_t, episode_end_t, *, gamma: float, gae_lambda: float):
  """Generalised advantage estimates (Schulman et al. 2016) by a reverse scan over time.

      delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
      A_t     = delta_t + gamma * lambda * (1 - episode_end_t) * A_{t+1},   A_T = 0

  `s_{t+1}` is the state step t reached, before any auto-reset. An episode cut by a time limit
  (truncated, not terminated) ends the trace but still bootstraps from V(s_{t+1}); a terminal
  state bootstraps from nothing.

  Args:
    reward_t: r_t, shaped (T, ...).
    value_t: V(s_t), shaped (T, ...).
    value_tp1: V(s_{t+1}), shaped (T, ...).
    terminated_t: 1 where s_{t+1} is terminal, shaped (T, ...).
    episode_end_t: 1 where the episode ended at step t (terminated or truncated), shaped (T, ...).
  Returns:
    A_t shaped (T, ...); the value targets are A_t + V(s_t).
  """
  shapes = {x.shape for x in (reward_t, value_t, value_tp1, terminated_t, episode_end_t)}
  if len(shapes) != 1:
    raise ValueError(f"gae inputs must share one shape, got {shapes}")
  not_terminal = 1.0 - terminated_t.astype(jnp.float32)
  continues = 1.0 - episode_end_t.astype(jnp.float32)
  delta_t = reward_t + gamma * not_terminal * value_tp1 - value_t

  def backward(advantage_tp1, inputs):
    delta, cont = inputs
    advantage = delta + gamma * gae_lambda * cont * advantage_tp1
    return advantage, advantage

  _, advantage_t = jax.lax.scan(backward, jnp.zeros_like(delta_t[0]), (delta_t, continues), reverse=True)
  return advantage_t


@struct.dataclass
class Losses:
  """The terms of the PPO loss and its diagnostics, each a mean over the batch."""

  total: jax.Array
  policy: jax.Array
  value: jax.Array
  entropy: jax.Array
  approx_kl: jax.Array
  clip_fraction: jax.Array


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


def combined(*, policy, value, entropy, log_ratio, clipped, vf_coef: float, ent_coef: float) -> Losses:
  """An actor-critic's total loss, policy + vf_coef * value - ent_coef * mean(entropy), with its terms and
  diagnostics: approx_kl, the low-variance estimator mean((ratio - 1) - log ratio) of the (B,) `log_ratio` of the
  policy over the one that acted, and clip_fraction, the share of the (B,) `clipped`."""
  mean_entropy = jnp.mean(entropy)
  return Losses(
      total=policy + vf_coef * value - ent_coef * mean_entropy,
      policy=policy,
      value=value,
      entropy=mean_entropy,
      approx_kl=jnp.mean((jnp.exp(log_ratio) - 1.0) - log_ratio),
      clip_fraction=jnp.mean(clipped.astype(jnp.float32)),
  )
