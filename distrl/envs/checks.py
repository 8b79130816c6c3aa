"""A suite's or a user's environment checked against the gymnax API that training relies on, each check a
ConfigError that names what is wrong; shapes are traced (`jax.eval_shape`), nothing is run."""

import jax
import jax.numpy as jnp
import numpy as np

from distrl.envs.interface import is_discrete
from distrl.envs.wrappers import FlattenPytreeObservation
from distrl.errors import ConfigError, first_line, where

_KEY = jax.ShapeDtypeStruct((2,), jnp.uint32)


def checked(env, params, name: str):
  """(`env`, flattening pytree observations, and where its action mask lies) if it keeps the gymnax API that training
  relies on, else a ConfigError."""
  _check_methods(env, name)
  _check_time_limit(params, name)
  space = _action_space(env, params, name)
  action = _action_like(space, name)
  obs, state = _reset_shapes(env, params, name)
  next_obs = _step_observation(env, state, action, params, name)
  _check_observations(obs, next_obs, name)
  if isinstance(obs, jax.ShapeDtypeStruct):
    return env, None
  # A dict, tuple, ... of arrays.
  return FlattenPytreeObservation(env), mask_slice(obs, int(space.n) if is_discrete(space) else None, name)


def mask_slice(obs, num_actions: int | None, name: str) -> tuple[int, int] | None:
  """Where the leaf named `action_mask` of a pytree observation lies once the observation is flattened
  (`FlattenPytreeObservation`: leaves in pytree order), or None if there is none."""
  offset, found = 0, None
  for path, leaf in jax.tree_util.tree_flatten_with_path(obs)[0]:
    key = path[-1] if path else None
    label = getattr(key, "key", getattr(key, "name", None))
    size = int(np.prod(leaf.shape))
    if label == "action_mask":
      found = (offset, offset + size)
    offset += size
  if found is None:
    return None
  if num_actions is None or found[1] - found[0] != num_actions:
    raise ConfigError(f"env_name={name!r}: the observation's action_mask has {found[1] - found[0]} values, but the "
                      f"action space is {'not Discrete' if num_actions is None else f'Discrete({num_actions})'}; "
                      f"a mask holds one boolean per discrete action")
  return found


def _check_methods(env, name: str):
  lacking = [f for f in ("reset", "step", "action_space") if not callable(getattr(env, f, None))]
  if lacking:
    raise ConfigError(f"env_name={name!r}: the environment lacks {', '.join(lacking)} of the gymnax API "
                      f"(reset, step, action_space)")


def _check_time_limit(params, name: str):
  """`params.max_steps_in_episode` is a positive whole number."""
  if not hasattr(params, "max_steps_in_episode"):
    raise ConfigError(f"env_name={name!r}: env_params ({type(params).__name__}) has no max_steps_in_episode, the "
                      f"time limit that evaluation and truncation need")
  limit = params.max_steps_in_episode
  if not (np.ndim(limit) == 0 and np.issubdtype(np.asarray(limit).dtype, np.number) and limit >= 1
          and int(limit) == limit):
    raise ConfigError(f"env_name={name!r}: env_params.max_steps_in_episode={limit!r} must be a positive whole number "
                      f"of steps (the time limit)")


def _action_space(env, params, name: str):
  """`env.action_space(params)`, with at least one action if it is Discrete."""
  try:
    space = env.action_space(params)
  except Exception as error:
    raise ConfigError(f"env_name={name!r}: action_space(params) raised {first_line(error, with_type=True)}"
                      f"{where(error)}") from None
  if is_discrete(space) and not int(space.n) >= 1:
    raise ConfigError(f"env_name={name!r}: the action space is Discrete({space.n}); it needs at least one action")
  return space


def _action_like(space, name: str) -> jax.ShapeDtypeStruct:
  """The shape and dtype of one action of `space`: Discrete(n) or a Box of one axis."""
  if is_discrete(space):
    return jax.ShapeDtypeStruct((), jnp.int32)
  if all(hasattr(space, f) for f in ("low", "high", "shape")) and len(space.shape) == 1:
    return jax.ShapeDtypeStruct(tuple(space.shape), jnp.float32)
  raise ConfigError(f"env_name={name!r}: the action space {space!r} is neither Discrete(n) nor a Box of one axis; "
                    f"distrl trains on those two")


def _reset_shapes(env, params, name: str):
  """(obs, state) that `reset(key, params)` returns, as shapes."""
  try:
    reset = jax.eval_shape(env.reset, _KEY, params)
  except Exception as error:
    raise ConfigError(f"env_name={name!r}: reset(key, params) failed: {first_line(error, with_type=True)}"
                      f"{where(error)}") from None
  if not (isinstance(reset, tuple) and len(reset) == 2):
    raise ConfigError(f"env_name={name!r}: reset(key, params) must return (obs, state)")
  return reset


def _step_observation(env, state, action, params, name: str):
  """The observation `step(key, state, action, params)` returns, as shapes, once its six values (gymnax >= 1.0: a
  time limit told from a terminal state) and its info's `final_observation` are checked."""
  try:
    stepped = jax.eval_shape(env.step, _KEY, state, action, params)
  except Exception as error:
    raise ConfigError(f"env_name={name!r}: step(key, state, action, params) failed: "
                      f"{first_line(error, with_type=True)}{where(error)}") from None
  if isinstance(stepped, tuple) and len(stepped) == 5:
    raise ConfigError(f"env_name={name!r}: step returns 5 values (obs, state, reward, done, info), the API of gymnax "
                      f"< 1.0, which does not tell a time limit from a terminal state; return (obs, state, reward, "
                      f"terminated, truncated, info) as gymnax >= 1.0 does (subclass gymnax's Environment)")
  if not (isinstance(stepped, tuple) and len(stepped) == 6):
    raise ConfigError(f"env_name={name!r}: step must return (obs, state, reward, terminated, truncated, info)")
  next_obs, _, reward, terminated, truncated, info = stepped
  if not (isinstance(info, dict) and "final_observation" in info):
    raise ConfigError(f"env_name={name!r}: step's info has no 'final_observation' (the observation before the "
                      f"automatic reset, to bootstrap truncated episodes from); gymnax's Environment.step adds it")
  for what, value in (("reward", reward), ("terminated", terminated), ("truncated", truncated)):
    if not hasattr(value, "shape") or np.prod(value.shape) != 1:
      raise ConfigError(f"env_name={name!r}: step's {what} must be a scalar, got {value}")
  return next_obs


def _check_observations(obs, next_obs, name: str):
  """Observations are real-valued arrays or pytrees of them, and `step`'s are shaped as `reset`'s."""
  leaves = jax.tree.leaves(obs)
  real = lambda dtype: any(jnp.issubdtype(dtype, kind) for kind in (jnp.floating, jnp.integer, jnp.bool_))
  if not leaves or not all(real(x.dtype) for x in leaves):
    raise ConfigError(f"env_name={name!r}: observations must be real-valued arrays or pytrees of them, got {obs}")
  if jax.tree.structure(next_obs) != jax.tree.structure(obs) or \
      [x.shape for x in jax.tree.leaves(next_obs)] != [x.shape for x in leaves]:
    raise ConfigError(f"env_name={name!r}: step's observation {next_obs} differs from reset's {obs}")
