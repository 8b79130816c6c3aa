"""An environment made for tests (as Brax keeps `brax/envs/fast.py`): trivial dynamics that compile at once, for a test
that needs "some environment" rather than a particular one.

  config.env_name = "tests.fast_env:make"                                   # two discrete actions
  config.env_kwargs = ml_collections.ConfigDict({"continuous": True})      # a Box of one axis, [-2, 2]
  config.env_kwargs = ml_collections.ConfigDict({"in_batches": True})      # resets in batches, as Craftax's

The observation is `size` numbers drawn uniformly from [-1, 1] at every reset and step. The agent is paid for
answering the sign of the first, x_0: x_0 for the action 1 and -x_0 for the action 0, or, with continuous actions,
1 - |a / 2 - x_0| (so a = 2 x_0 earns 1). Rewards are real numbers, so two policies seldom score exactly alike. An
episode terminates at random (probability 1/8 a step) or is truncated at its time limit, `length` steps: both ends
occur within a few steps. A uniformly random policy earns 0 a step (discrete) or 1/3 (continuous); the best, 1/2
or 1.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

TERMINATION = 1 / 8  # the probability that a step terminates its episode


@struct.dataclass
class State(environment.EnvState):
  obs: jax.Array


class Fast(environment.Environment[State, environment.EnvParams]):

  def __init__(self, continuous: bool = False, size: int = 2, length: int = 8):
    super().__init__()
    self.continuous, self.size, self.length = continuous, size, length

  @property
  def default_params(self) -> environment.EnvParams:
    return environment.EnvParams(max_steps_in_episode=self.length)

  def reset_env(self, key: jax.Array, params: environment.EnvParams) -> tuple[jax.Array, State]:
    state = State(time=jnp.int32(0), obs=jax.random.uniform(key, (self.size,), minval=-1.0, maxval=1.0))
    return state.obs, state

  def step_env(self, key: jax.Array, state: State, action: jax.Array, params: environment.EnvParams):
    x = state.obs[0]
    if self.continuous:
      reward = 1.0 - jnp.abs(jnp.reshape(action, (-1,))[0] / 2 - x)
    else:
      reward = jnp.where(action == 1, x, -x)
    obs_key, end_key = jax.random.split(key)
    state = State(time=state.time + 1, obs=jax.random.uniform(obs_key, (self.size,), minval=-1.0, maxval=1.0))
    terminated = jax.random.uniform(end_key) < TERMINATION
    info: dict[str, Any] = {}
    return state.obs, state, reward, terminated, info

  def action_space(self, params: environment.EnvParams | None = None) -> spaces.Discrete | spaces.Box:
    return spaces.Box(-2.0, 2.0, (1,), jnp.float32) if self.continuous else spaces.Discrete(2)

  def observation_space(self, params: environment.EnvParams) -> spaces.Box:
    return spaces.Box(-1.0, 1.0, (self.size,), jnp.float32)


def make(continuous: bool = False, size: int = 2, length: int = 8,
         in_batches: bool = False) -> tuple[Fast, environment.EnvParams]:
  """The factory distrl calls (`env_name="tests.fast_env:make"`): -> (env, env_params). `in_batches`: the environment
  says its resets are costly (`reset_in_batches`, as Craftax's), so a batch steps without them and resets only the
  environments that ended."""
  env = Fast(continuous, size, length)
  env.reset_in_batches = in_batches
  return env, env.default_params
