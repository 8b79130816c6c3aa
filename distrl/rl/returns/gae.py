"""Generalised advantage estimation (Schulman et al. 2016), the advantages of PPO and A2C."""

import jax
import jax.numpy as jnp


def gae(reward_t, value_t, value_tp1, terminated_t, episode_end_t, *, gamma: float, gae_lambda: float):
  """Generalised advantage estimates (Schulman et al. 2016) by a reverse scan over time.

      delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
      A_t     = delta_t + gamma * lambda * (1 - episode_end_t) * A_{t+1},   A_T = 0

  `s_{t+1}` is the state step t reached, before any auto-reset. An episode cut by a time limit
  (truncated, not terminated) ends the trace but still bootstraps from V(s_{t+1}); a terminal
  state bootstraps from nothing. The rollout's last step bootstraps from V(s_T) with no trace beyond.
  A_t + V(s_t) is the lambda-return (`lambda_returns` with lambda_t = lambda (1 - episode_end_t)) where
  V(s_{t+1}) is the next row's V(s_t) wherever the episode goes on.

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
