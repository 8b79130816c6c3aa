"""n-step returns (Sutton & Barto 7.1) as the replay computes them at sampling time: from a window of n consecutive
steps of one environment's row, cut at the first episode end (`distrl.rl.replay_learner.read`)."""

import jax.numpy as jnp


def n_step_return(r_t, terminated_t, episode_end_t, *, gamma: float):
  """Discounted sums of up to n rewards, cut at the first episode end, and the discount of their bootstrap.

  Row b holds the n consecutive steps of one environment that start at a sampled step (k = 0 is the
  sampled transition itself); the batch leads, as the replay reads the windows:
      alive_k  = prod_{j<k} (1 - episode_end_j)         (1 for k = 0: the sampled step always counts)
      G        = sum_k gamma^k alive_k r_k
      last     = sum_k alive_k - 1                      (the step the return stops at)
      discount = gamma^(last + 1) * (1 - terminated_last)
  and the target is y = G + discount * Q(s'_last, a*), where s'_last is the observation step `last`
  reached before any reset. An episode cut by a time limit (truncated, not terminated) stops the sum
  but still bootstraps; a terminal state does not. With n = 1 this is y = r + gamma (1 - terminated) Q.

  Args:
    r_t: rewards, shaped (B, n).
    terminated_t: 1 where step k reached a terminal state, shaped (B, n).
    episode_end_t: 1 where the episode ended at step k (terminated or truncated), shaped (B, n).
  Returns:
    (G, discount, last): shaped (B,), (B,) and (B,) int32.
  """
  if r_t.ndim != 2 or terminated_t.shape != r_t.shape or episode_end_t.shape != r_t.shape:
    raise ValueError(f"n_step_return wants r_t, terminated_t, episode_end_t shaped (B, n); got "
                     f"{r_t.shape}, {terminated_t.shape}, {episode_end_t.shape}")
  n = r_t.shape[1]
  ended = episode_end_t.astype(jnp.float32)
  alive = jnp.cumprod(jnp.concatenate([jnp.ones_like(ended[:, :1]), 1.0 - ended[:, :-1]], axis=1), axis=1)
  powers = gamma ** jnp.arange(n, dtype=jnp.float32)
  n_step = jnp.sum(powers * alive * r_t, axis=1)
  last = (jnp.sum(alive, axis=1) - 1).astype(jnp.int32)
  terminated_last = jnp.take_along_axis(terminated_t.astype(jnp.float32), last[:, None], axis=1)[:, 0]
  discount = gamma ** (last + 1).astype(jnp.float32) * (1.0 - terminated_last)
  return n_step, discount, last
