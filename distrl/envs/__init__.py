"""Environments: `make(name, kwargs)` over the gymnax registry, the suites, or a user's factory, wrapped for training.

`name` is a gymnax id ("CartPole-v1"), `suite:id` for an environment of a suite installed as an
extra (`brax:ant`, `craftax:Craftax-Classic-Symbolic-v1`, `jumanji:Snake-v1`; see `SUITES`), or
`package.module:factory`, where `factory(**kwargs)` returns `(env, env_params)` of an environment
with the gymnax >= 1.0 API:

    env.reset(key, params) -> (obs, state)
    env.step(key, state, action, params) -> (obs, state, reward, terminated, truncated, info)
    env.action_space(params) -> Discrete(n), or a Box of one axis (continuous actions)
    params.max_steps_in_episode: the time limit (evaluation runs each episode at most this long)

`step` resets the environment itself when an episode ends and puts the observation the step
reached *before* that reset in `info["final_observation"]`: the state to bootstrap from when an
episode is truncated by its time limit (`terminated` is False there); where no episode ended, it is the
observation `step` returns (PPO and PQN value s_{t+1} there from the next step's acting). Subclassing gymnax's
`Environment` and writing `step_env` / `reset_env` gives all of this. A `step` of the older API
(five values, one `done` for both terminal states and time limits) is refused: it cannot tell
the two apart, and bootstrapping depends on it.

Observations are arrays of any shape (an MLP flattens them; `torso="cnn"` takes (H, W, C) images)
or pytrees (dicts, tuples) of arrays, which are flattened into one float vector. gymnax's own
environments with observations of several axes are flattened, except MinAtar's images. Every
environment is wrapped in gymnax's `LogWrapper`, whose `info` carries the return and length of
each episode that ends.

Two optional conventions:
- Action masks: a pytree observation with a leaf named `action_mask` (a dict key or a field, of
  `Discrete(n)`'s n booleans: True where the action is allowed) makes `Env.action_mask(obs)` return
  it, and the policies choose among the allowed actions only (`distributions.Categorical.masked`,
  `distributions.masked_argmax`).
- Episode metrics: `info["episode_metrics"]`, a dict of scalars read where an episode ends (e.g.
  Craftax's achievements), is logged as `train/<name>`, averaged over the episodes that ended.
- Costly resets: a gymnax `Environment` subclass with array observations, gymnax's own `step`, and the class
  attribute `reset_in_batches = True` (Craftax: a reset generates a world) is stepped by `Env.step_batch`
  without the reset its `step` computes for every environment under `vmap`; the environments that
  ended are then reset together, a few at a time, each from the key its own `step` would have used:
  the same observations and states as `vmap(env.step)`, with resets only where episodes end.
"""

import contextlib
import difflib
import functools
import importlib
import inspect
import sys
import types
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


class _OnFirstUse(types.ModuleType):
  """A module that is imported when one of its attributes is first read."""

  def __getattr__(self, attribute: str):
    return getattr(importlib.import_module(self.__name__), attribute)


@contextlib.contextmanager
def _imported_on_first_use(*names: str):
  """Within it, an `import` of one of `names` (not yet imported) binds an `_OnFirstUse` stand-in; after it, the
  stand-ins leave sys.modules, so any later import is the real one."""
  stand_ins = {name: _OnFirstUse(name) for name in names if name not in sys.modules}
  sys.modules.update(stand_ins)
  try:
    yield
  finally:
    for name, stand_in in stand_ins.items():
      if sys.modules.get(name) is stand_in:
        del sys.modules[name]


# gymnax's package imports all of its environments, and some import seaborn (which imports scipy.stats and pandas)
# and pyplot at the top, for their `render` only: ~1 s of every command's start on a 2-core machine. They are
# imported when a render first uses them.
with _imported_on_first_use("seaborn", "matplotlib.pyplot"):
  import gymnax
from gymnax.environments import environment
from gymnax.wrappers.purerl import FlattenObservationWrapper, GymnaxWrapper, LogWrapper

from distrl.rl import masked_map
from distrl.errors import ConfigError, first_line
from distrl.user_modules import load_attribute

# Suites adapted to the gymnax API, each behind the pip extra of its name: `suite:id` -> the adapter module, whose
# `make(id, **env_kwargs)` returns (env, env_params). The adapter (and the suite) is imported only when named.
SUITES = {"brax": "distrl.envs.brax", "craftax": "distrl.envs.craftax", "jumanji": "distrl.envs.jumanji"}


@struct.dataclass
class Env:
  """A wrapped environment with its parameters bound: `reset(key)`, `step(key, state, action)`."""

  env: Any = struct.field(pytree_node=False)
  params: Any
  name: str = struct.field(pytree_node=False)
  observation_shape: tuple[int, ...] = struct.field(pytree_node=False)  # of one observation, as the agent sees it
  # Where the action mask lies in the (flattened) observation: obs[..., start:stop], or None without one.
  action_mask_slice: tuple[int, int] | None = struct.field(pytree_node=False, default=None)
  # For an environment that resets in batches: LogWrapper(ResetLater(env)), whose step does not reset.
  without_reset: Any = struct.field(pytree_node=False, default=None)

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
  def discrete(self) -> bool:
    return _is_discrete(self.action_space)

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


class ResetLater(GymnaxWrapper):
  """A gymnax `Environment`'s `step` (gymnax >= 1.0) without its automatic reset: the observation and state the
  step reached, and in `info["reset_key"]` the key the reset would have used."""

  def step(self, key, state, action, params=None):
    key_step, key_reset = jax.random.split(key)  # as gymnax's Environment.step splits it
    obs, state, reward, terminated, info = self._env.step_env(key_step, state, action, params)
    truncated = self._env.is_truncated(state, params)
    return obs, state, reward, terminated, truncated, {**info, "terminated": terminated, "truncated": truncated,
                                                       "final_observation": obs, "reset_key": key_reset}


def names() -> list[str]:
  """Every gymnax id `make` accepts (and any `suite:id` or `package.module:factory`)."""
  return list(gymnax.registered_envs)


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


def make(name: str, kwargs: Any = None) -> Env:
  """The environment `name` (a gymnax id, `suite:id` or `package.module:factory`) built with `kwargs`, checked and
  wrapped."""
  kwargs = _as_dict(kwargs)
  mask_slice = None
  if ":" in name:
    env, params = _from_suite(name, kwargs) if name.partition(":")[0] in SUITES else _from_factory(name, kwargs)
    env, mask_slice = _checked(env, params, name)
  else:
    if name not in gymnax.registered_envs:
      if "." in name:
        raise ConfigError(f"env_name={name!r} names no factory: use package.module:factory, e.g. {name}:make")
      close = difflib.get_close_matches(name, names(), n=1)
      hint = f"did you mean {close[0]!r}? " if close else ""
      raise ConfigError(f"unknown environment {name!r}: {hint}choose one of {', '.join(names())}, or name your own "
                        f"as package.module:factory")
    try:
      env, params = gymnax.make(name, **kwargs)
    except TypeError as error:
      raise ConfigError(f"env_kwargs {kwargs} do not fit {name}: {error}") from None
    except OSError as error:  # MNISTBandit-bsuite downloads MNIST when made: offline, a URLError
      raise ConfigError(f"{name} fetches data when it is made and that failed ({first_line(error, with_type=True)}); "
                        f"run it once with network access, or choose another environment") from None
    if len(env.observation_space(params).shape) > 1 and not name.endswith("MinAtar"):
      env = FlattenObservationWrapper(env)
  obs, _ = jax.eval_shape(env.reset, jax.random.PRNGKey(0), params)
  # Only where `step` is gymnax's own: ResetLater rebuilds it without the reset (a `step` of its own would be lost).
  in_batches = (getattr(env, "reset_in_batches", False) and isinstance(env, environment.Environment)
                and type(env).step is environment.Environment.step)
  return Env(env=LogWrapper(env), params=params, name=name, observation_shape=tuple(obs.shape),
             action_mask_slice=mask_slice, without_reset=LogWrapper(ResetLater(env)) if in_batches else None)


def _as_dict(kwargs) -> dict:
  if kwargs is None:
    return {}
  return kwargs.to_dict() if hasattr(kwargs, "to_dict") else dict(kwargs)


def _from_factory(name: str, kwargs: dict):
  """`factory(**kwargs)` of `package.module:factory`, checked to be a callable returning (env, params)."""
  factory = load_attribute(name, "env_name")
  if not callable(factory):
    raise ConfigError(f"env_name={name!r} is not a function returning (env, env_params) but a "
                      f"{type(factory).__name__}")
  try:
    inspect.signature(factory).bind(**kwargs)
  except TypeError as error:
    raise ConfigError(f"env_kwargs {kwargs} do not fit {name}: {error}") from None
  except ValueError:  # no signature to check (a builtin): calling it will tell
    pass
  try:
    made = factory(**kwargs)
  except Exception as error:
    raise ConfigError(f"env_name={name!r}: the factory raised {first_line(error, with_type=True)}") from None
  if not (isinstance(made, tuple) and len(made) == 2):
    raise ConfigError(f"env_name={name!r}: the factory returned {type(made).__name__}, not (env, env_params)")
  return made


def _from_suite(name: str, kwargs: dict):
  """`make(id, **kwargs)` of the adapter of `suite:id`; a missing suite is one line naming the extra to install."""
  suite, _, env_id = name.partition(":")
  try:
    adapter = importlib.import_module(SUITES[suite])
  except ModuleNotFoundError as error:
    if (error.name or "").startswith("distrl"):
      raise
    package = (error.name or suite).partition(".")[0]  # `brax`, not the submodule `brax.envs` it was importing
    raise ConfigError(f"env_name={name!r} needs the {suite} extra ({package} is not installed): "
                      f"pip install 'distrl[{suite}]' (pip install -e '.[{suite}]' in a clone)") from None
  return adapter.make(env_id, **kwargs)


def _mask_slice(obs, num_actions: int | None, name: str) -> tuple[int, int] | None:
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


def _is_discrete(space) -> bool:
  return hasattr(space, "n") and tuple(getattr(space, "shape", ())) == ()


def _checked(env, params, name: str):
  """(`env`, flattening pytree observations, and where its action mask lies) if it keeps the gymnax API that training
  relies on, else a ConfigError."""
  lacking = [f for f in ("reset", "step", "action_space") if not callable(getattr(env, f, None))]
  if lacking:
    raise ConfigError(f"env_name={name!r}: the environment lacks {', '.join(lacking)} of the gymnax API "
                      f"(reset, step, action_space)")
  if not hasattr(params, "max_steps_in_episode"):
    raise ConfigError(f"env_name={name!r}: env_params ({type(params).__name__}) has no max_steps_in_episode, the "
                      f"time limit that evaluation and truncation need")
  limit = params.max_steps_in_episode
  if not (np.ndim(limit) == 0 and np.issubdtype(np.asarray(limit).dtype, np.number) and limit >= 1
          and int(limit) == limit):
    raise ConfigError(f"env_name={name!r}: env_params.max_steps_in_episode={limit!r} must be a positive whole number "
                      f"of steps (the time limit)")
  try:
    space = env.action_space(params)
  except Exception as error:
    raise ConfigError(f"env_name={name!r}: action_space(params) raised {first_line(error, with_type=True)}") from None
  if _is_discrete(space) and not int(space.n) >= 1:
    raise ConfigError(f"env_name={name!r}: the action space is Discrete({space.n}); it needs at least one action")
  if _is_discrete(space):
    action = jax.ShapeDtypeStruct((), jnp.int32)
  elif all(hasattr(space, f) for f in ("low", "high", "shape")) and len(space.shape) == 1:
    action = jax.ShapeDtypeStruct(tuple(space.shape), jnp.float32)
  else:
    raise ConfigError(f"env_name={name!r}: the action space {space!r} is neither Discrete(n) nor a Box of one axis; "
                      f"distrl trains on those two")

  key = jax.ShapeDtypeStruct((2,), jnp.uint32)
  try:
    reset = jax.eval_shape(env.reset, key, params)
  except Exception as error:
    raise ConfigError(f"env_name={name!r}: reset(key, params) failed: {first_line(error, with_type=True)}") from None
  if not (isinstance(reset, tuple) and len(reset) == 2):
    raise ConfigError(f"env_name={name!r}: reset(key, params) must return (obs, state)")
  obs, state = reset
  try:
    stepped = jax.eval_shape(env.step, key, state, action, params)
  except Exception as error:
    raise ConfigError(f"env_name={name!r}: step(key, state, action, params) failed: "
                      f"{first_line(error, with_type=True)}") from None
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
  leaves = jax.tree.leaves(obs)
  real = lambda dtype: any(jnp.issubdtype(dtype, kind) for kind in (jnp.floating, jnp.integer, jnp.bool_))
  if not leaves or not all(real(x.dtype) for x in leaves):
    raise ConfigError(f"env_name={name!r}: observations must be real-valued arrays or pytrees of them, got {obs}")
  if jax.tree.structure(next_obs) != jax.tree.structure(obs) or \
      [x.shape for x in jax.tree.leaves(next_obs)] != [x.shape for x in leaves]:
    raise ConfigError(f"env_name={name!r}: step's observation {next_obs} differs from reset's {obs}")
  if isinstance(obs, jax.ShapeDtypeStruct):
    return env, None
  # A dict, tuple, ... of arrays.
  return FlattenPytreeObservation(env), _mask_slice(obs, int(space.n) if _is_discrete(space) else None, name)
