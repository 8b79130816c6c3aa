"""IMPALA math as pure functions of arrays: V-trace targets and advantages, and the actor-critic loss.

Arrays are time-major (T, ...), with the conventions of `distrl.ppo.losses.gae`: `value_tp1` is V(s_{t+1}) of the
state step t reached before any reset, `terminated_t` cuts the bootstrap, `episode_end_t` (terminated or truncated)
cuts the trace. Hyperparameters are keyword-only.
"""

import jax
import jax.numpy as jnp
from flax import struct

from distrl.ppo import losses as ppo_losses
from distrl.ppo.losses import Losses


@struct.dataclass
class VTrace:
  """V-trace's outputs, shaped (T, ...)."""

  target: jax.Array  # v_s: the value targets
  advantage: jax.Array  # the policy gradient's advantages, min(pg_rho_clip, rho_t) (r_t + gamma v_{s+1} - V(s_t))


def vtrace(reward_t, value_t, value_tp1, terminated_t, episode_end_t, log_rho_t, *, gamma: float, lambda_: float,
           rho_clip: float, pg_rho_clip: float) -> VTrace:
  """V-trace (Espeholt et al. 2018, eq. 1, with rlax's lambda) by a reverse scan over time.

      rho_t   = exp(log_rho_t) = pi(a_t | s_t) / mu(a_t | s_t)   (target policy over the behaviour that acted)
      delta_t = min(rho_clip, rho_t) (r_t + gamma_t V(s_{t+1}) - V(s_t)),   gamma_t = gamma (1 - terminated_t)
      a_t     = delta_t + gamma lambda min(1, rho_t) (1 - episode_end_t) a_{t+1},   a_T = 0
      v_s     = V(s_t) + a_t
      A_t     = min(pg_rho_clip, rho_t) (r_t + gamma_t (V(s_{t+1}) + lambda (1 - episode_end_t) a_{t+1}) - V(s_t))

  On-policy (rho = 1) a_t is GAE(lambda)'s advantage. The bootstrap past a truncation is V of its final state, with
  no trace beyond it; past the rollout's last step, V(s_T).
  """
  shapes = {x.shape for x in (reward_t, value_t, value_tp1, terminated_t, episode_end_t, log_rho_t)}
  if len(shapes) != 1:
    raise ValueError(f"vtrace inputs must share one shape, got {shapes}")
  rho = jnp.exp(log_rho_t)
  discount = gamma * (1.0 - terminated_t.astype(jnp.float32))
  continues = 1.0 - episode_end_t.astype(jnp.float32)
  delta = jnp.minimum(rho_clip, rho) * (reward_t + discount * value_tp1 - value_t)
  trace = gamma * lambda_ * jnp.minimum(1.0, rho) * continues

  def backward(a_tp1, inputs):
    delta, trace = inputs
    a = delta + trace * a_tp1
    return a, a

  _, a_t = jax.lax.scan(backward, jnp.zeros_like(delta[0]), (delta, trace), reverse=True)
  a_tp1 = jnp.concatenate([a_t[1:], jnp.zeros_like(a_t[:1])])
  target_tp1 = value_tp1 + lambda_ * continues * a_tp1
  advantage = jnp.minimum(pg_rho_clip, rho) * (reward_t + discount * target_tp1 - value_t)
  return VTrace(target=value_t + a_t, advantage=advantage)


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
  return ppo_losses.combined(policy=-jnp.mean(log_prob * advantage),
                             value=0.5 * jnp.mean(jnp.square(value - target)), entropy=entropy, log_ratio=log_ratio,
                             clipped=jnp.exp(log_ratio) > rho_clip + 1e-3, vf_coef=vf_coef, ent_coef=ent_coef)
