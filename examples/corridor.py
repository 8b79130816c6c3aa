"""An environment of your own: a corridor with a goal, written against the gymnax API.

  python -m distrl.launch --config=ppo --config.env_name=examples.corridor:make \
      --config.total_timesteps=100000 --workdir=runs/corridor

The agent stands in a corridor of `length` cells and the goal is in another cell, both drawn
at random each episode. It steps left or right; reaching the goal ends the episode with reward 1,
every other step costs 0.01, and an episode is cut after `4 * length` steps. The observation is
(agent position, goal position), scaled to [0, 1]. A random walk seldom finds the goal in time;
walking straight to it scores 1 - 0.01 * (distance - 1), about 0.97 on average.

distrl calls `make(**config.env_kwargs)`: e.g. `env_kwargs = ml_collections.ConfigDict({"length": 20})`
in a config file of your own. Subclassing gymnax's `Environment` and writing `reset_env` and
`step_env` is all it takes: gymnax's `step` resets finished episodes and reports the observation
before the reset (`info["final_observation"]`), which distrl bootstraps truncated episodes from.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class State(environment.EnvState):
  position: jax.Array
  goal: jax.Array
  time: jax.Array


@struct.dataclass
class Params(environment.EnvParams):
  max_steps_in_episode: int = 40  # distrl reads the time limit from here
  step_cost: float = 0.01


class Corridor(environment.Environment[State, Params]):

  def __init__(self, length: int = 10):
    super().__init__()
    if length < 2:
      raise ValueError(f"a corridor needs at least 2 cells, got length={length}")
    self.length = length

  @property
  def default_params(self) -> Params:
    return Params(max_steps_in_episode=4 * self.length)

  def reset_env(self, key: jax.Array, params: Params) -> tuple[jax.Array, State]:
    position_key, offset_key = jax.random.split(key)
    position = jax.random.randint(position_key, (), 0, self.length)
    goal = (position + jax.random.randint(offset_key, (), 1, self.length)) % self.length  # never the start cell
    state = State(position=position, goal=goal, time=jnp.int32(0))
    return self._observe(state), state

  def step_env(self, key: jax.Array, state: State, action: jax.Array, params: Params):
    position = jnp.clip(state.position + 2 * action - 1, 0, self.length - 1)  # action 0: left, 1: right
    reached = position == state.goal
    state = state.replace(position=position, time=state.time + 1)
    reward = jnp.where(reached, 1.0, -params.step_cost)
    info: dict[str, Any] = {}
    return self._observe(state), state, reward, reached, info

  def _observe(self, state: State) -> jax.Array:
    return jnp.stack([state.position, state.goal]).astype(jnp.float32) / (self.length - 1)

  def action_space(self, params: Params | None = None) -> spaces.Discrete:
    return spaces.Discrete(2)

  def observation_space(self, params: Params) -> spaces.Box:
    return spaces.Box(0.0, 1.0, (2,), jnp.float32)


def make(length: int = 10) -> tuple[Corridor, Params]:
  """The factory distrl calls: -> (env, env_params)."""
  env = Corridor(length)
  return env, env.default_params
