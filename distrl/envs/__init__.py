"""Environments: `make(name)` over the gymnax registry, wrapped for training.

Observations with more than one axis are flattened to vectors (MinAtar keeps its image shape for
a CNN torso), and every environment is wrapped in gymnax's `LogWrapper`, whose `info` carries the return and length of
each episode that ends. gymnax 1.0 auto-resets inside `step` and returns
`(obs, state, reward, terminated, truncated, info)`; `info["final_observation"]` is the
observation the step reached *before* any reset, which is the state to bootstrap from when an
episode is truncated by its time limit.
"""

import difflib
from typing import Any

import gymnax
import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces
from gymnax.wrappers.purerl import FlattenObservationWrapper, LogWrapper

from distrl.errors import ConfigError


@struct.dataclass
class Env:
  """A wrapped gymnax environment with its parameters bound: `reset(key)`, `step(key, state, action)`."""

  env: Any = struct.field(pytree_node=False)
  params: Any
  name: str = struct.field(pytree_node=False)

  def reset(self, key: jax.Array):
    """-> (obs, state) for one environment."""
    return self.env.reset(key, self.params)

  def step(self, key: jax.Array, state, action: jax.Array):
    """-> (obs, state, reward, terminated, truncated, info) for one environment; resets itself."""
    return self.env.step(key, state, action, self.params)

  @property
  def observation_shape(self) -> tuple[int, ...]:
    return tuple(self.env.observation_space(self.params).shape)

  @property
  def discrete(self) -> bool:
    return isinstance(self.env.action_space(self.params), spaces.Discrete)

  @property
  def num_actions(self) -> int:
    """How many discrete actions there are (a ConfigError for a continuous action space)."""
    space = self.env.action_space(self.params)
    if not self.discrete:
      raise ConfigError(f"{self.name} has a {type(space).__name__} action space; this algorithm needs discrete actions")
    return int(space.n)

  @property
  def action_dim(self) -> int:
    """The size of a continuous action (a Box of one axis)."""
    space = self.env.action_space(self.params)
    if self.discrete or len(space.shape) != 1:
      raise ConfigError(f"{self.name}'s action space {type(space).__name__}{tuple(space.shape)} is not a vector")
    return int(space.shape[0])

  def clip(self, action: jax.Array) -> jax.Array:
    """A continuous action clipped to the action space's bounds (a discrete action as it is)."""
    if self.discrete:
      return action
    space = self.env.action_space(self.params)
    return jnp.clip(action, space.low, space.high)


def reset_batch(env: Env, key: jax.Array, indices: jax.Array):
  """Resets environments `indices` (global indices, shaped (E,)), each from its own stream fold_in(key, i).

  Returns (obs, env_state, keys): batched first observations and states, and each environment's
  key (E, 2) for what comes after the reset. The same index gives the same stream on any device.
  """
  keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, indices)
  keys, reset_keys = jnp.unstack(jax.vmap(jax.random.split)(keys), axis=1)
  obs, env_state = jax.vmap(env.reset)(reset_keys)
  return obs, env_state, keys


def names() -> list[str]:
  """Every environment name `make` accepts."""
  return list(gymnax.registered_envs)


def make(name: str) -> Env:
  """The gymnax environment `name`, flattened and with episode statistics."""
  if name not in gymnax.registered_envs:
    close = difflib.get_close_matches(name, names(), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"unknown environment {name!r}: {hint}choose one of {', '.join(names())}")
  env, params = gymnax.make(name)
  if len(env.observation_space(params).shape) > 1 and not name.endswith("MinAtar"):
    env = FlattenObservationWrapper(env)
  return Env(env=LogWrapper(env), params=params, name=name)
