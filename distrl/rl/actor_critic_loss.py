"""An actor-critic's total loss and its diagnostics, which PPO's clipped objective and IMPALA's policy gradient
both return."""

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Losses:
  """The terms of an actor-critic loss and its diagnostics, each a mean over the batch."""

  total: jax.Array
  policy: jax.Array
  value: jax.Array
  entropy: jax.Array
  approx_kl: jax.Array
  clip_fraction: jax.Array


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
