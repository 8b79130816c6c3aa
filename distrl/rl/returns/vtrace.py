"""V-trace (Espeholt et al. 2018): value targets and policy-gradient advantages of a rollout acted by an older
policy, corrected by truncated importance ratios (IMPALA's)."""

import jax
import jax.numpy as jnp
from flax import struct


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

  On-policy (rho = 1) a_t is GAE(lambda)'s advantage (`gae`). V(s_{t+1}) is that of the state step t reached before
  any reset: the bootstrap past a truncation is V of its final state, with no trace beyond it; a terminal state
  bootstraps from nothing; past the rollout's last step, V(s_T).

  Args:
    reward_t: r_t, shaped (T, ...).
    value_t: V(s_t), shaped (T, ...).
    value_tp1: V(s_{t+1}), shaped (T, ...).
    terminated_t: 1 where s_{t+1} is terminal, shaped (T, ...).
    episode_end_t: 1 where the episode ended at step t (terminated or truncated), shaped (T, ...).
    log_rho_t: log pi(a_t | s_t) - log mu(a_t | s_t), shaped (T, ...).
  Returns:
    VTrace(target v_s, advantage A_t), each shaped (T, ...).
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
