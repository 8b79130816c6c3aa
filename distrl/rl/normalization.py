"""Observation normalisation and return-based reward scaling, with statistics over every device.

Both keep running moments (mean, variance, count) in the learner, so they are checkpointed and
restored with it. The moments of each new batch are taken over the *global* batch (one `psum`
of counts, sums and squares, shifted by the current mean), so a run's statistics do not depend
on how its environments are split over devices or processes.

- Observations: `(obs - mean) / sqrt(var + eps)`, clipped to [-clip, clip]; the moments are over
  every observation an iteration acted on.
- Rewards: divided by the standard deviation of the discounted return
  `R_t = r_t + gamma * R_{t-1}` (restarted at each episode), clipped to [-clip, clip], as
  gym's `NormalizeReward` does. Each environment keeps its own `R` (in `actors`).

A `Normalizer` field is None when that normalisation is off: the state then holds nothing for it.
"""

import jax
import jax.numpy as jnp
from flax import struct

from distrl import sharding

EPSILON = 1e-8  # added to the variance before its square root


@struct.dataclass
class Moments:
  """Running mean and variance of samples shaped like `mean`, over `count` samples."""

  mean: jax.Array
  var: jax.Array
  count: jax.Array  # float32: an int32 would overflow in long runs


@struct.dataclass
class Normalizer:
  obs: Moments | None = None  # of single observations
  returns: Moments | None = None  # of the discounted return


def init(shape: tuple[int, ...], *, normalize_obs: bool, scale_rewards: bool) -> Normalizer:
  """Empty moments (the first batch sets them) for observations of `shape` and/or returns."""
  empty = lambda shape: Moments(mean=jnp.zeros(shape, jnp.float32), var=jnp.ones(shape, jnp.float32),
                                count=jnp.zeros((), jnp.float32))
  return Normalizer(obs=empty(shape) if normalize_obs else None, returns=empty(()) if scale_rewards else None)


def update(moments: Moments, x: jax.Array) -> Moments:
  """`moments` with this device's samples `x` (..., *mean.shape) and every other device's added.

  Chan et al.'s parallel update: with the batch's count n, mean m_b and variance v_b, and
  delta = m_b - mean,
      mean' = mean + delta * n / (count + n)
      var'  = (var * count + v_b * n + delta^2 * count * n / (count + n)) / (count + n)
  The batch moments come from one psum of (n, sum(x - mean), sum((x - mean)^2)).
  """
  x = x.astype(jnp.float32).reshape((-1,) + moments.mean.shape)
  shifted = x - moments.mean
  n, total, squares = sharding.psum((jnp.float32(x.shape[0]), jnp.sum(shifted, 0), jnp.sum(jnp.square(shifted), 0)))
  delta = total / n  # batch mean - running mean
  batch_var = jnp.maximum(squares / n - jnp.square(delta), 0.0)
  count = moments.count + n
  var = (moments.var * moments.count + batch_var * n + jnp.square(delta) * moments.count * n / count) / count
  return Moments(mean=moments.mean + delta * n / count, var=var, count=count)


def observations(normalizer: Normalizer, obs: jax.Array, *, clip: float) -> jax.Array:
  """Normalised observations, or `obs` as they are if observation normalisation is off."""
  if normalizer.obs is None:
    return obs
  stats = normalizer.obs
  return jnp.clip((obs.astype(jnp.float32) - stats.mean) / jnp.sqrt(stats.var + EPSILON), -clip, clip)


def update_observations(normalizer: Normalizer, obs: jax.Array) -> Normalizer:
  """The normaliser with a batch of observations (..., *obs_shape) added (nothing if it is off)."""
  if normalizer.obs is None:
    return normalizer
  return normalizer.replace(obs=update(normalizer.obs, obs))


def discounted_returns(reward_t: jax.Array, episode_end_t: jax.Array, return_0: jax.Array, *, gamma: float):
  """R_t = r_t + gamma * R_{t-1} over a rollout (T, E), restarting after each episode end.

  `return_0` (E,) is each environment's R carried from the previous rollout (0 after an episode
  end). Returns (R_t shaped (T, E), the R to carry into the next rollout).
  """

  def step(carry, inputs):
    reward, end = inputs
    current = reward + gamma * carry
    return current * (1.0 - end.astype(jnp.float32)), current

  carry, returns = jax.lax.scan(step, return_0, (reward_t, episode_end_t))
  return returns, carry


def update_returns(normalizer: Normalizer, reward_t: jax.Array, episode_end_t: jax.Array, return_0: jax.Array | None,
                   *, gamma: float):
  """The return moments with this rollout's (T, E) discounted returns added. -> (normalizer, the returns to carry
  per environment); both as given if reward scaling is off."""
  if normalizer.returns is None:
    return normalizer, return_0
  returns, carry = discounted_returns(reward_t, episode_end_t, return_0, gamma=gamma)
  return normalizer.replace(returns=update(normalizer.returns, returns)), carry


def rewards(normalizer: Normalizer, reward: jax.Array, *, clip: float) -> jax.Array:
  """Rewards divided by the running std of the discounted return and clipped, or as they are if scaling is off."""
  if normalizer.returns is None:
    return reward
  return jnp.clip(reward / jnp.sqrt(normalizer.returns.var + EPSILON), -clip, clip)


def initial_returns(normalizer: Normalizer, num_envs: int) -> jax.Array | None:
  """Each environment's discounted return at the start (zeros), or None if reward scaling is off."""
  return None if normalizer.returns is None else jnp.zeros((num_envs,), jnp.float32)
