"""`Env`, the interface training sees (an environment with its parameters bound), and `reset_batch`."""

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from distrl.errors import ConfigError
from distrl.rl import masked_map


class Actions:
  """What the networks read of an environment's action space, for any class with `name` and `action_space`."""

  @property
  def discrete(self) -> bool:
    return is_discrete(self.action_space)

  @property
  def num_actions(self) -> int:
    """How many discrete actions there are (a ConfigError for a continuous action space)."""
    if not self.discrete:
      raise ConfigError(f"{self.name} has a {type(self.action_space).__name__} action space; this algorithm needs "
                        f"discrete actions")
    return int(self.action_space.n)

  @property
  def action_dim(self) -> int:
    """The size of a continuous action (a Box of one axis)."""
    space = self.action_space
    if self.discrete or len(space.shape) != 1:
      raise ConfigError(f"{self.name}'s action space {type(space).__name__}{tuple(space.shape)} is not a vector")
    return int(space.shape[0])


@struct.dataclass
class Env(Actions):
  """A wrapped environment with its parameters bound: `reset(key)`, `step(key, state, action)`."""

  env: Any = struct.field(pytree_node=False)
  params: Any
  name: str = struct.field(pytree_node=False)
  observation_shape: tuple[int, ...] = struct.field(pytree_node=False)  # of one observation, as the agent sees it
  # Where the action mask lies in the (flattened) observation: obs[..., start:stop], or None without one.
  action_mask_slice: tuple[int, int] | None = struct.field(pytree_node=False, default=None)
  # For an environment that resets in batches: LogWrapper(ResetLater(env)), whose step does not reset.
  without_reset: Any = struct.field(pytree_node=False, default=None)
  kind = "jax"  # steps inside the compiled program: `distrl.architectures.compiled` runs it

  def reset(self, key: jax.Array):
    """-> (obs, state) for one environment."""
    return self.env.reset(key, self.params)

  def step(self, key: jax.Array, state, action: jax.Array):
    """-> (obs, state, reward, terminated, truncated, info) for one environment; resets itself."""
    return self.env.step(key, state, action, self.params)

  def step_batch(self, keys: jax.Array, states, actions: jax.Array):
    """`step` of a batch of environments (leaves (E, ...)): `jax.vmap(self.step)`, to the bit, but an environment
    that resets in batches (`reset_in_batches`) computes resets only for the environments that ended."""
    if self.without_reset is None:
      return jax.vmap(self.step)(keys, states, actions)
    step = jax.vmap(self.without_reset.step, in_axes=(0, 0, 0, None))
    obs, states, reward, terminated, truncated, info = step(keys, states, actions, self.params)
    info = dict(info)
    reset_keys = info.pop("reset_key")
    reset = functools.partial(self.without_reset._env.reset_env, params=self.params)
    # Only the environments that ended reset, a sixteenth of the batch at a time (at most 16 passes).
    obs, inner = masked_map.where(info["returned_episode"], jax.vmap(reset), reset_keys, (obs, states.env_state))
    return obs, states.replace(env_state=inner), reward, terminated, truncated, info

  @property
  def action_space(self):
    return self.env.action_space(self.params)

  @property
  def max_steps(self) -> int:
    """The episode time limit, `params.max_steps_in_episode`."""
    return int(self.params.max_steps_in_episode)

  def action_mask(self, obs: jax.Array) -> jax.Array | None:
    """The allowed actions in observations (..., *observation_shape) as booleans (..., num_actions), or None if
    the environment has no action mask (every action is allowed)."""
    if self.action_mask_slice is None:
      return None
    start, stop = self.action_mask_slice
    return obs[..., start:stop] > 0.5

  def clip(self, action: jax.Array) -> jax.Array:
    """A continuous action clipped to the action space's bounds (a discrete action as it is)."""
    if self.discrete:
      return action
    return jnp.clip(action, self.action_space.low, self.action_space.high)


def reset_batch(env: Env, key: jax.Array, indices: jax.Array):
  """Resets environments `indices` (global indices, shaped (E,)), each from its own stream fold_in(key, i).

  Returns (obs, env_state, keys): batched first observations and states, and each environment's
  key (E, 2) for what comes after the reset. The same index gives the same stream on any device.
  """
  keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, indices)
  keys, reset_keys = jnp.unstack(jax.vmap(jax.random.split)(keys), axis=1)
  obs, env_state = jax.vmap(env.reset)(reset_keys)
  return obs, env_state, keys


def is_discrete(space) -> bool:
  """Whether an action space is Discrete(n) (an `n` and no axes)."""
  return hasattr(space, "n") and tuple(getattr(space, "shape", ())) == ()
