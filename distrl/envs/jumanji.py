"""Jumanji's environments (`jumanji:<id>`, e.g. `jumanji:Snake-v1`, `jumanji:Maze-v0`) with the gymnax API:
`pip install 'distrl[jumanji]'`.

    python -m distrl.launch --config=ppo:jumanji:Snake-v1

Jumanji's `step(state, action) -> (state, TimeStep)` says how an episode ends by the TimeStep's
step type and discount: LAST with discount 0 is a terminal state (`terminated`: no bootstrap),
LAST with a discount above 0 is a truncation (`truncated`: bootstrap from the observation it
reached). Jumanji's discrete environments (Snake, Maze, PacMan, ...) end their own `time_limit`
with discount 0, so those ends are terminated, as Jumanji says (their observations carry the step
count, so the end is predictable); a limit of distrl's below it truncates. distrl resets the
environment as gymnax's `Environment.step` does and keeps the observation before the reset in
`info["final_observation"]`. The time limit evaluation needs is the environment's own
`time_limit`, or `max_steps_in_episode` from `config.env_kwargs` (the earlier of the two ends an
episode); the other env_kwargs go to `jumanji.make`.

Observations are Jumanji's named tuples of arrays, flattened into one vector; their
`action_mask` (True where an action is allowed) restricts the policy to legal moves (see
`distrl.envs`). Numeric scalars in the TimeStep's `extras` at the end of an episode are logged as
`train/extras/<name>`. Discrete actions only: environments with several discrete actions per step
(MultiDiscreteArray) or continuous ones are refused.
"""

import difflib
from typing import Any

import jax
import jax.numpy as jnp
import jumanji
from flax import struct
from gymnax.environments import environment, spaces
from jumanji import specs

from distrl.errors import ConfigError, first_line


@struct.dataclass
class State:
  jumanji: Any  # the environment's own state
  time: jax.Array  # steps since the episode began
  truncated: jax.Array  # Jumanji ended the episode at its time limit (LAST with a discount above 0)


@struct.dataclass
class Params:
  max_steps_in_episode: int  # the time limit: the environment's own, or env_kwargs' max_steps_in_episode


class Jumanji(environment.Environment[State, Params]):
  """A Jumanji environment as a gymnax environment that resets itself."""

  def __init__(self, env: jumanji.Environment, max_steps_in_episode: int):
    super().__init__()
    self.env = env
    self.max_steps_in_episode = max_steps_in_episode

  @property
  def default_params(self) -> Params:
    return Params(max_steps_in_episode=self.max_steps_in_episode)

  def reset_env(self, key: jax.Array, params: Params):
    state, timestep = self.env.reset(key)
    return timestep.observation, State(jumanji=state, time=jnp.zeros((), jnp.int32), truncated=jnp.zeros((), bool))

  def step_env(self, key: jax.Array, state: State, action: jax.Array, params: Params):
    del key  # the environment's state carries its own random key
    inner, timestep = self.env.step(state.jumanji, action)
    ended = timestep.last()
    extras = {f"extras/{name}": value.astype(jnp.float32) for name, value in timestep.extras.items()
              if jnp.ndim(value) == 0 and jnp.issubdtype(value.dtype, jnp.number)}
    state = State(jumanji=inner, time=state.time + 1, truncated=ended & (timestep.discount > 0))
    return (timestep.observation, state, timestep.reward.astype(jnp.float32), ended & (timestep.discount == 0),
            {"episode_metrics": extras})

  def is_truncated(self, state: State, params: Params) -> jax.Array:
    return state.truncated | (state.time >= params.max_steps_in_episode)

  def action_space(self, params: Params | None = None) -> spaces.Discrete:
    return spaces.Discrete(int(self.env.action_spec.num_values))

  @property
  def name(self) -> str:
    return f"jumanji:{type(self.env).__name__}"


def make(name: str, *, max_steps_in_episode: int | None = None, **kwargs) -> tuple[Jumanji, Params]:
  """Jumanji environment `name` made with `kwargs`, cut after `max_steps_in_episode` steps if given."""
  known = sorted(jumanji.registered_environments())
  if name not in known:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean jumanji:{close[0]}? " if close else ""
    raise ConfigError(f"unknown Jumanji environment {name!r}: {hint}choose one of {', '.join(known)}")
  if max_steps_in_episode is not None and not (isinstance(max_steps_in_episode, int) and max_steps_in_episode > 0):
    raise ConfigError(f"env_kwargs max_steps_in_episode={max_steps_in_episode!r} must be a positive number of "
                      f"steps, e.g. 1000")
  try:
    env = jumanji.make(name, **kwargs)
  except Exception as error:  # a bad keyword, or a level set that cannot be downloaded here
    raise ConfigError(f"jumanji:{name} with env_kwargs {kwargs} failed: "
                      f"{first_line(error, with_type=True)}") from None
  if not isinstance(env.action_spec, specs.DiscreteArray):
    raise ConfigError(f"jumanji:{name} takes {type(env.action_spec).__name__} actions; distrl trains on one discrete "
                      f"action per step (DiscreteArray), e.g. jumanji:Snake-v1 or jumanji:Maze-v0")
  limit = max_steps_in_episode or getattr(env, "time_limit", None)
  if not limit:
    raise ConfigError(f"jumanji:{name} has no time limit, which evaluation and truncation need: set env_kwargs = "
                      f"{{'max_steps_in_episode': 1000}} (or another limit) in your config")
  wrapped = Jumanji(env, int(min(limit, getattr(env, "time_limit", None) or limit)))
  return wrapped, wrapped.default_params
