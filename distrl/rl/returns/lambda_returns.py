"""lambda-returns (Sutton & Barto 12.1) over a rollout; with the greedy value max_a Q(s_{t+1}, a) they are Peng's
Q(lambda) returns, PQN's targets (Gallici et al. 2024)."""

import jax
import jax.numpy as jnp


def lambda_returns(r_t, v_tp1, terminated_t, episode_end_t, *, gamma: float, lambda_: float):
  """lambda-returns by a reverse scan over time, with no gradient:

      G_t      = r_t + gamma (1 - terminated_t) [(1 - lambda_t) v_tp1_t + lambda_t G_{t+1}]
      lambda_t = lambda_ (1 - episode_end_t),        G_T = v_tp1_{T-1}

  v_tp1_t is the value of s_{t+1}, the state step t reached, before any auto-reset: V(s_{t+1}) for TD(lambda),
  max_a Q(s_{t+1}, a) for Peng's Q(lambda) (PQN). The last step of the rollout bootstraps from it fully; an episode
  end stops the trace there (the next row is another episode), and a time limit (truncated, not terminated) still
  bootstraps from v_tp1 while a terminal state does not. lambda_ = 0 gives one-step targets, 1 the Monte Carlo
  return bootstrapped at the rollout's end.

  Args:
    r_t: rewards, shaped (T, ...).
    v_tp1: the value of s_{t+1}, shaped (T, ...).
    terminated_t: 1 where step t reached a terminal state, shaped (T, ...).
    episode_end_t: 1 where the episode ended at step t (terminated or truncated), shaped (T, ...).
  Returns:
    G_t shaped (T, ...).
  """
  shapes = {x.shape for x in (r_t, v_tp1, terminated_t, episode_end_t)}
  if len(shapes) != 1:
    raise ValueError(f"lambda_returns inputs must share one shape, got {shapes}")
  discount = gamma * (1.0 - terminated_t.astype(jnp.float32))
  trace = lambda_ * (1.0 - episode_end_t.astype(jnp.float32))

  def backward(g_tp1, inputs):
    r, v, d, lam = inputs
    g = r + d * ((1.0 - lam) * v + lam * g_tp1)
    return g, g

  _, g_t = jax.lax.scan(backward, v_tp1[-1], (r_t, v_tp1, discount, trace), reverse=True)
  return jax.lax.stop_gradient(g_t)
