"""Environments that run on the host, not in the compiled program: envpool, gymnasium, a user's gymnasium factory.

`make(name, kwargs)` returns a `Spec`: what the networks need to know (observation shape, action space, time limit)
and `open(num_envs, seed)`, which makes a `Batch` of environments. A `Batch` steps every environment at once and
resets an ended one in the same step (gymnasium's "same step" autoreset), so a step returns the observation to act
on next and, where an episode ended, the one it reached before the reset (`Stepped.final_obs`): the same record the
compiled path's environments give. envpool resets an environment on the step *after* its end; `EnvpoolBatch` does
that step at once for the environments that ended (envpool ignores its action).

The suites are imported only when a name asks for them (`pip install -e '.[envpool]'`).
"""

import contextlib
import dataclasses
import importlib
import warnings
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np
from flax import struct

from distrl.errors import ConfigError, first_line, where
from distrl.envs.interface import Actions, is_discrete
from distrl.user_modules import load_attribute

SUITES = ("envpool", "gymnasium")  # env_name prefixes of host environments; package.module:factory is the third


@struct.dataclass
class Stepped:
  """One step of every environment of a batch, as numpy arrays with a leading environment axis."""

  obs: np.ndarray  # the observation to act on next (after a reset where the episode ended)
  reward: np.ndarray  # float32, as the agent learns from it (clipped where the suite clips)
  terminated: np.ndarray  # bool: a terminal state, nothing to bootstrap
  episode_end: np.ndarray  # bool: terminated or truncated; the environment was reset
  final_obs: np.ndarray  # the observation the step reached, before any reset
  counted: np.ndarray  # bool: a whole episode for the statistics ended (an Atari game over, under episodic life)
  episode_return: np.ndarray  # float32: its return (of unclipped rewards) where `counted`
  episode_length: np.ndarray  # int32: its length where `counted`


class Batch:
  """`num_envs` host environments; subclasses give `_reset` and `_step` -> (obs, reward, terminated, truncated,
  final_obs, raw reward, game over) and this class keeps the episode statistics."""

  def __init__(self, num_envs: int):
    self.num_envs = num_envs
    self._return = np.zeros(num_envs, np.float64)
    self._length = np.zeros(num_envs, np.int64)

  def reset(self) -> np.ndarray:
    self._return[:], self._length[:] = 0, 0
    return self._reset()

  def step(self, action: np.ndarray, keys: np.ndarray | None = None) -> Stepped:
    """Steps every environment with `action` (`keys`: each environment's key for this step, which only a JAX
    environment run on the host uses)."""
    obs, reward, terminated, truncated, final_obs, raw, over = self._step(action, keys)
    end = terminated | truncated
    counted = over | truncated
    self._return += raw
    self._length += 1
    episode_return, episode_length = self._return.astype(np.float32), self._length.astype(np.int32)
    self._return[counted], self._length[counted] = 0, 0
    return Stepped(obs=obs, reward=reward.astype(np.float32), terminated=terminated, episode_end=end,
                   final_obs=final_obs, counted=counted, episode_return=episode_return, episode_length=episode_length)

  def close(self) -> None:
    pass

  def _reset(self) -> np.ndarray:
    raise NotImplementedError

  def _step(self, action, keys):
    raise NotImplementedError


UNDECLARED_LIMIT = 10_000  # the longest evaluation episode of an environment that declares no time limit


@dataclasses.dataclass
class Spec(Actions):
  """A host environment by name: what the networks and policies need (the `Env` attributes they read), and `open`."""

  name: str
  observation_shape: tuple[int, ...]
  action_space: Any  # a gymnasium Discrete or Box
  max_steps: int  # the time limit, for evaluation
  open_batch: Callable[[int, int], Batch]  # (num_envs, seed) -> the environments, environment i seeded seed + i
  observation_dtype: Any = np.float32  # uint8 for Atari's frames (the CNN torsos scale them), else float32
  declared_limit: bool = True  # False: the environment declares no time limit; max_steps is UNDECLARED_LIMIT
  action_mask_slice: None = None
  kind = "host"  # steps outside JAX: `distrl.architectures.host` runs it

  def reset(self, key):
    """A placeholder observation (zeros) and no state: `init` builds the actors' rows with it; the actor replaces
    it with the environments' own first observations."""
    return jnp.zeros(self.observation_shape, self.observation_dtype), None

  def open(self, num_envs: int, seed: int) -> Batch:
    try:
      return self.open_batch(num_envs, seed)
    except ConfigError:
      raise
    except Exception as error:
      raise ConfigError(f"env_name={self.name!r}: making {num_envs} environments failed: "
                        f"{first_line(error, with_type=True)}") from None

  def action_mask(self, obs):
    return None

  def clip(self, action):
    if self.discrete:
      return action
    return jnp.clip(action, self.action_space.low, self.action_space.high)


def make(name: str, kwargs: dict) -> Spec:
  """The `Spec` of `envpool:ID` or `gymnasium:ID` (kwargs go to `envpool.make` / `gymnasium.make`)."""
  prefix, _, env_id = name.partition(":")
  return _envpool(name, env_id, kwargs) if prefix == "envpool" else _gymnasium(name, env_id, kwargs)


def _suite(package: str, name: str):
  try:
    return importlib.import_module(package)
  except ModuleNotFoundError:
    raise ConfigError(f"env_name={name!r} needs {package}: pip install 'distrl[{package}]' (pip install -e "
                      f"'.[{package}]' in a clone)") from None


def _channels_last(shape: tuple[int, ...]) -> bool:
  """envpool's Atari frames are (stack, H, W); the CNN torsos take (H, W, C)."""
  return len(shape) == 3 and shape[0] < shape[1] and shape[0] < shape[2]


@contextlib.contextmanager
def _quiet_envpool():
  """envpool 1.2 builds float64 Box bounds that gymnasium casts with a warning on every make: nothing to act on."""
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*precision lowered by casting to float32", category=UserWarning)
    yield


class EnvpoolBatch(Batch):
  """envpool's synchronous mode: every environment steps in each call, on envpool's own threads."""

  def __init__(self, envpool, env_id: str, kwargs: dict, num_envs: int, seed: int):
    super().__init__(num_envs)
    with _quiet_envpool():
      self.env = envpool.make(env_id, env_type="gymnasium", num_envs=num_envs, batch_size=num_envs, seed=seed,
                              **kwargs)
      self.transpose = _channels_last(self.env.observation_space.shape)
      self.discrete = is_discrete(self.env.action_space)

  def _obs(self, obs):
    obs = np.moveaxis(obs, 1, -1) if self.transpose else obs
    return obs if obs.dtype == np.uint8 else obs.astype(np.float32)

  def _reset(self):
    return self._obs(self.env.reset()[0])

  def _step(self, action, keys):
    action = np.asarray(action, np.int32 if self.discrete else np.float32)
    obs, reward, terminated, truncated, info = self.env.step(action)
    final_obs = obs
    ended = np.flatnonzero(terminated | truncated)
    if ended.size:  # envpool resets on the step after an end (ignoring its action): take that step now
      obs = obs.copy()
      obs[ended] = self.env.step(action[ended], env_id=ended)[0]
    raw = info.get("reward", reward)  # Atari: the unclipped reward
    over = info.get("terminated", terminated).astype(bool)  # Atari: the game is over (not a life lost)
    return self._obs(obs), reward, terminated.astype(bool), truncated.astype(bool), self._obs(final_obs), raw, over

  def close(self):
    self.env.close() if hasattr(self.env, "close") else None


def _envpool(name: str, env_id: str, kwargs: dict) -> Spec:
  envpool = _suite("envpool", name)
  if env_id not in envpool.list_all_envs():
    raise ConfigError(f"env_name={name!r}: envpool has no {env_id!r} (envpool.list_all_envs() lists its ids, e.g. "
                      f"Breakout-v5, CartPole-v1)")
  try:
    with _quiet_envpool():
      spec = envpool.make_spec(env_id, **kwargs)
      observation_space, action_space = spec.observation_space, spec.action_space
  except Exception as error:
    raise ConfigError(f"env_kwargs {kwargs} do not fit {name}: {first_line(error, with_type=True)}") from None
  shape = tuple(observation_space.shape)
  shape = shape[1:] + shape[:1] if _channels_last(shape) else shape
  dtype = np.uint8 if observation_space.dtype == np.uint8 else np.float32
  return Spec(name=name, observation_shape=shape, action_space=action_space, observation_dtype=dtype,
              max_steps=int(spec.config.max_episode_steps),
              open_batch=lambda num_envs, seed: EnvpoolBatch(envpool, env_id, kwargs, num_envs, seed))


class GymnasiumBatch(Batch):
  """A gymnasium vector environment (synchronous: one after another in this thread) with same-step autoreset."""

  def __init__(self, vector, seed: int):
    super().__init__(vector.num_envs)
    self.env, self.seed = vector, seed
    self.discrete = is_discrete(vector.single_action_space)

  def _reset(self):
    return np.asarray(self.env.reset(seed=self.seed)[0], np.float32)

  def _step(self, action, keys):
    action = np.asarray(action)
    obs, reward, terminated, truncated, info = self.env.step(action.astype(np.int64) if self.discrete else action)
    obs = np.asarray(obs, np.float32)
    final_obs = obs.copy()
    for i in np.flatnonzero(info.get("_final_obs", ())):
      final_obs[i] = info["final_obs"][i]
    terminated = np.asarray(terminated, bool)
    return obs, np.asarray(reward), terminated, np.asarray(truncated, bool), final_obs, reward, terminated

  def close(self):
    self.env.close()


def _gymnasium(name: str, env_id: str, kwargs: dict) -> Spec:
  gym = _suite("gymnasium", name)
  try:
    probe = gym.make(env_id, **kwargs)
  except gym.error.Error as error:
    raise ConfigError(f"env_name={name!r}: {first_line(error)}") from None
  except TypeError as error:
    raise ConfigError(f"env_kwargs {kwargs} do not fit {name}: {error}") from None
  spec = _gymnasium_spec(name, probe, gym)

  def open_batch(num_envs: int, seed: int) -> Batch:
    vector = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                          vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}, **kwargs)
    return GymnasiumBatch(vector, seed)

  return dataclasses.replace(spec, open_batch=open_batch)


def _gymnasium_spec(name: str, env, gym) -> Spec:
  """The spec of a gymnasium environment (closed after reading it)."""
  shape = tuple(env.observation_space.shape or ())
  if not isinstance(env.observation_space, gym.spaces.Box):
    raise ConfigError(f"env_name={name!r}: the observation space {env.observation_space} is not a Box of numbers")
  if not (isinstance(env.action_space, gym.spaces.Discrete) or
          (isinstance(env.action_space, gym.spaces.Box) and len(env.action_space.shape) == 1)):
    raise ConfigError(f"env_name={name!r}: the action space {env.action_space} is neither Discrete nor a Box of one "
                      f"axis")
  try:  # arguments that make an environment which cannot start fail here, before the run's workdir is made
    env.reset(seed=0)
  except Exception as error:
    env.close()
    raise ConfigError(f"env_name={name!r}: the environment's reset raised {first_line(error, with_type=True)}"
                      f"{where(error)}") from None
  declared = env.spec is not None and bool(env.spec.max_episode_steps)
  limit = env.spec.max_episode_steps if declared else UNDECLARED_LIMIT
  space = env.action_space
  env.close()
  return Spec(name=name, observation_shape=shape, action_space=space, max_steps=int(limit), open_batch=None,
              declared_limit=declared)


def from_factory(name: str, kwargs: dict, made) -> Spec | None:
  """The spec of a user's `package.module:factory` whose `factory(**kwargs)` returned `made`, if it is a gymnasium
  environment (each environment of a batch is another call of the factory); None if it is not one."""
  try:
    gym = importlib.import_module("gymnasium")
  except ModuleNotFoundError:
    return None
  if not isinstance(made, gym.Env):
    return None
  factory = load_attribute(name, "env_name")
  spec = _gymnasium_spec(name, made, gym)

  def open_batch(num_envs: int, seed: int) -> Batch:
    vector = gym.vector.SyncVectorEnv([lambda: factory(**kwargs)] * num_envs,
                                      autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    return GymnasiumBatch(vector, seed)

  return dataclasses.replace(spec, open_batch=open_batch)


class JaxBatch(Batch):
  """A JAX environment (`distrl.envs.Env`) stepped from the host, one compiled step of the whole batch per call, from
  the keys the actor gives: the compiled path's environment behind the host path's interface, for tests and for
  measuring what the host path costs."""

  def __init__(self, env, env_state, obs):
    super().__init__(obs.shape[0])
    import jax
    self.env, self.first_obs = env, np.asarray(obs)
    self.state = jax.tree.map(np.asarray, env_state)  # on the host: stepped on the actor's device
    self._step_batch = jax.jit(env.step_batch)

  def _reset(self):
    return np.asarray(self.first_obs)

  def _step(self, action, keys):
    obs, self.state, reward, terminated, truncated, info = self._step_batch(keys, self.state, self.env.clip(action))
    host = lambda x: np.asarray(x)
    over = host(info["returned_episode"])
    return (host(obs), host(reward), host(terminated).astype(bool), over & ~host(terminated).astype(bool),
            host(info["final_observation"]), host(reward), host(terminated).astype(bool))
