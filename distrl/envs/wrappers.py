"""The wrappers around every environment: gymnax's episode statistics (`LogWrapper`), a step without its reset for
environments that reset in batches, pytree observations as one vector."""

import jax
import jax.numpy as jnp
from gymnax.environments import environment
from gymnax.wrappers.purerl import GymnaxWrapper, LogWrapper


class ResetLater(GymnaxWrapper):
  """A gymnax `Environment`'s `step` (gymnax >= 1.0) without its automatic reset: the observation and state the
  step reached, and in `info["reset_key"]` the key the reset would have used."""

  def step(self, key, state, action, params=None):
    key_step, key_reset = jax.random.split(key)  # as gymnax's Environment.step splits it
    obs, state, reward, terminated, info = self._env.step_env(key_step, state, action, params)
    truncated = self._env.is_truncated(state, params)
    return obs, state, reward, terminated, truncated, {**info, "terminated": terminated, "truncated": truncated,
                                                       "final_observation": obs, "reset_key": key_reset}


class FlattenPytreeObservation(GymnaxWrapper):
  """Observations that are pytrees (dicts, tuples of arrays) as one float32 vector: the leaves, flattened and
  concatenated in pytree order (dict keys sorted). `info["final_observation"]` likewise."""

  @staticmethod
  def flatten(obs) -> jax.Array:
    return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in jax.tree.leaves(obs)])

  def reset(self, key, params=None):
    obs, state = self._env.reset(key, params)
    return self.flatten(obs), state

  def step(self, key, state, action, params=None):
    obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
    info = {**info, "final_observation": self.flatten(info["final_observation"])}
    return self.flatten(obs), state, reward, terminated, truncated, info


def with_episode_statistics(env):
  """-> (`LogWrapper(env)`, gymnax's episode statistics in `info`; for an environment that resets in batches, the same
  without the reset, `LogWrapper(ResetLater(env))`, else None)."""
  # Only where `step` is gymnax's own: ResetLater rebuilds it without the reset (a `step` of its own would be lost).
  in_batches = (getattr(env, "reset_in_batches", False) and isinstance(env, environment.Environment)
                and type(env).step is environment.Environment.step)
  return LogWrapper(env), LogWrapper(ResetLater(env)) if in_batches else None
