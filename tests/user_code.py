"""Environments and algorithms as users write them, good and broken, for tests/test_extensions.py."""

import types

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from examples import corridor


@struct.dataclass
class State(environment.EnvState):
  position: jax.Array
  time: jax.Array


class Walk(environment.Environment):
  """A short walk: the observation is `observe(position)`; step 0 or 1 moves left or right, 5 steps end it."""

  def __init__(self, observe=lambda p: jnp.stack([p, -p]).astype(jnp.float32), action_space=None):
    super().__init__()
    self.obs_fn, self._action_space = observe, action_space or spaces.Discrete(2)

  @property
  def default_params(self):
    return environment.EnvParams(max_steps_in_episode=5)

  def reset_env(self, key, params):
    state = State(position=jnp.int32(0), time=jnp.int32(0))
    return self.obs_fn(state.position), state

  def step_env(self, key, state, action, params):
    move = jnp.asarray(action).reshape(-1)[0].astype(jnp.int32)
    state = State(position=state.position + 2 * move - 1, time=state.time + 1)
    return self.obs_fn(state.position), state, jnp.float32(state.position), state.position >= 3, {}

  def action_space(self, params=None):
    return self._action_space


def dict_observations():
  env = Walk(observe=lambda p: {"position": p.astype(jnp.float32), "pair": jnp.stack([p, 2 * p]), "flag": p > 0})
  return env, env.default_params


def masked_walk():
  """Stepping right (action 1) is never allowed: every episode walks left, scoring -1 - 2 - 3 - 4 - 5 = -15."""
  env = Walk(observe=lambda p: {"position": p.astype(jnp.float32), "action_mask": jnp.array([True, False])})
  return env, env.default_params


def badly_masked_walk():
  """An action mask of 3 values for 2 actions."""
  env = Walk(observe=lambda p: {"position": p.astype(jnp.float32), "action_mask": jnp.ones(3, bool)})
  return env, env.default_params


def image_observations():
  env = Walk(observe=lambda p: jnp.full((5, 5, 2), p, jnp.float32))
  return env, env.default_params


class OldApi(Walk):
  """gymnax < 1.0: step returns (obs, state, reward, done, info)."""

  def step(self, key, state, action, params=None):
    obs, state, reward, done, info = self.step_env(key, state, action, params or self.default_params)
    return obs, state, reward, done, info


def old_api():
  env = OldApi()
  return env, env.default_params


def matrix_actions():
  env = Walk(action_space=spaces.Box(-1.0, 1.0, (2, 2)))
  return env, env.default_params


def no_time_limit():
  return Walk(), {"gravity": 9.8}


def time_limit_of(steps):
  return Walk(), environment.EnvParams(max_steps_in_episode=steps)


def no_actions():
  env = Walk(action_space=spaces.Discrete(0))
  return env, env.default_params


def not_a_pair():
  return Walk()


def raises():
  raise RuntimeError("the simulator failed to start")


def corridor_of(length: int = 4):
  return corridor.make(length)


not_callable = 42

incomplete_algorithm = types.SimpleNamespace(sizes=lambda config, num_devices: None, init=lambda key: None)


def _ppo_but(**functions):
  from distrl import ppo
  return types.SimpleNamespace(**{**{f: getattr(ppo, f) for f in ("sizes", "init", "update", "act")}, **functions})


# update without the contract's `sizes` keyword; sizes returning a number
update_without_sizes = _ppo_but(update=lambda state, config, env: None)
sizes_of_a_number = _ppo_but(sizes=lambda config, num_devices: 4)


def no_observation():
  env = Walk(observe=lambda p: {})
  return env, env.default_params


class RandomStartWalk(Walk):
  """Walk from a random start in [-2, 2], ending at random times (at +3, or by its 5-step limit), reset in
  batches: a test of `Env.step_batch` against `jax.vmap(Env.step)`."""

  reset_in_batches = True

  def reset_env(self, key, params):
    state = State(position=jax.random.randint(key, (), -2, 3), time=jnp.int32(0))
    return self.obs_fn(state.position), state


def random_start_walk(in_batches: bool = True):
  env = RandomStartWalk()
  env.reset_in_batches = in_batches
  return env, env.default_params


def _host_observation(position):
  """A simulator on the host that fails when the walk first reaches position 2."""
  if np.max(position) >= 2:
    raise RuntimeError("the simulator lost its connection")
  return np.stack([position, -position], axis=-1).astype(np.float32)


def fails_mid_run():
  observe = lambda p: jax.pure_callback(_host_observation, jax.ShapeDtypeStruct((2,), jnp.float32), p,
                                        vmap_method="expand_dims")
  env = Walk(observe=observe)
  return env, env.default_params


def gym_corridor_failing_after(steps: int):
  """examples/gym_corridor.py's corridor, whose simulator crashes in `step` after `steps` steps of its own."""
  from examples import gym_corridor

  class Failing(gym_corridor.Corridor):
    taken = 0

    def step(self, action):
      self.taken += 1
      if self.taken > steps:
        raise RuntimeError("the simulator lost its connection")
      return super().step(action)

  return Failing()


class _BrokenStep(Walk):
  def step_env(self, key, state, action, params):
    raise ValueError("the simulator's table has no row 7")


def step_raises():
  env = _BrokenStep()
  return env, env.default_params
