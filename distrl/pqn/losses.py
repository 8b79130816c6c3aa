"""PQN math as pure functions of arrays: Peng's Q(lambda) returns over a rollout (Gallici et al. 2024).

The TD loss itself is DQN's (`distrl.dqn.losses.q_loss`). Hyperparameters are keyword-only.
"""

import jax
import jax.numpy as jnp


def q_lambda_returns(r_t, q_tp1, terminated_t, episode_end_t, *, gamma: float, q_lambda: float):
  """Q(lambda) targets by a reverse scan over time, with no gradient:

      G_t      = r_t + gamma (1 - terminated_t) [(1 - lambda_t) q_tp1_t + lambda_t G_{t+1}]
      lambda_t = q_lambda (1 - episode_end_t),        G_T = q_tp1_{T-1}

  q_tp1_t = max_a Q(s_{t+1}, a) is taken at the state step t reached, before any auto-reset. The
  last step of the rollout bootstraps from it fully; an episode end stops the trace there (the
  next row is another episode), and a time limit (truncated, not terminated) still bootstraps
  from q_tp1 while a terminal state does not. q_lambda = 0 gives one-step targets, 1 the
  Monte Carlo return bootstrapped at the rollout's end.

  Args:
    r_t: rewards, shaped (T, ...).
    q_tp1: max_a Q(s_{t+1}, a), shaped (T, ...).
    terminated_t: 1 where step t reached a terminal state, shaped (T, ...).
    episode_end_t: 1 where the episode ended at step t (terminated or truncated), shaped (T, ...).
  Returns:
    G_t shaped (T, ...).
  """
  shapes = {x.shape for x in (r_t, q_tp1, terminated_t, episode_end_t)}
  if len(shapes) != 1:
    raise ValueError(f"q_lambda_returns inputs must share one shape, got {shapes}")
  discount = gamma * (1.0 - terminated_t.astype(jnp.float32))
  trace = q_lambda * (1.0 - episode_end_t.astype(jnp.float32))

  def backward(g_tp1, inputs):
    r, q, d, lam = inputs
    g = r + d * ((1.0 - lam) * q + lam * g_tp1)
    return g, g

  _, g_t = jax.lax.scan(backward, q_tp1[-1], (r_t, q_tp1, discount, trace), reverse=True)
  return jax.lax.stop_gradient(g_t)
