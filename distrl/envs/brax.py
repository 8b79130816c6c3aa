"""Brax's environments (`brax:<name>`, e.g. `brax:ant`) with the gymnax API: `pip install 'distrl[brax]'`.

    python -m distrl.launch --config=ppo:brax:inverted_pendulum

Brax steps its physics without an episode limit: `done` marks a terminal state (an ant that fell
over, a pendulum past its angle), which distrl reports as `terminated` (no bootstrap). The time
limit is distrl's, `episode_length` steps (Brax's `EpisodeWrapper` default, 1000): an episode that
reaches it is `truncated` and bootstraps from the observation it reached, which gymnax's
`Environment.step` puts in `info["final_observation"]` before it resets the environment from a
fresh key (Brax's own `AutoResetWrapper` would restart from the episode's first state instead).
A step that is both terminal and at the limit is terminated, as in Brax's `EpisodeWrapper`.

`config.env_kwargs` go to `brax.envs.get_environment`: `backend` ("mjx", "generalized",
"positional" or "spring": the physics pipeline, in decreasing realism and increasing speed) and
the environment's own arguments (e.g. `ctrl_cost_weight` of ant), besides `episode_length`.
Actions are vectors in [-1, 1]: each Brax environment scales them to its actuators' ranges.
"""

import contextlib
import difflib
import io
import warnings
from typing import Any

with contextlib.redirect_stdout(io.StringIO()):  # MuJoCo's MJX prints that the optional `warp` is not installed
  import brax.envs
import jax
import jax.numpy as jnp
import mujoco
from flax import struct
from gymnax.environments import environment, spaces

from distrl.errors import ConfigError, first_line

# MuJoCo appends its warnings to MUJOCO_LOG.TXT in the working directory (building halfcheetah warns of a deprecated
# attribute): as Python warnings instead, nothing is written where the user runs.
mujoco.set_mju_user_warning(lambda text: warnings.warn(f"MuJoCo: {text}", stacklevel=2))

# Said by Brax at every environment it builds, one line of ~370 columns: distrl runs Brax as it is.
warnings.filterwarnings("ignore", message="Brax System, piplines and environments are not actively being maintained",
                        category=UserWarning)
# Said by MuJoCo of Brax's own halfcheetah model: nothing a user can act on.
warnings.filterwarnings("ignore", message="MuJoCo: compiler attribute 'settotalmass' is deprecated", category=UserWarning)


@struct.dataclass
class State:
  brax: Any  # brax.envs.State: physics state, observation, reward, done, metrics
  time: jax.Array  # steps since the episode began


@struct.dataclass
class Params:
  max_steps_in_episode: int = 1000  # the time limit: episodes are truncated after this many steps


class Brax(environment.Environment[State, Params]):
  """A Brax environment (`brax.envs.Env`) as a gymnax environment that resets itself."""

  def __init__(self, env: brax.envs.Env, episode_length: int):
    super().__init__()
    self.env = env
    self.episode_length = episode_length

  @property
  def default_params(self) -> Params:
    return Params(max_steps_in_episode=self.episode_length)

  def reset_env(self, key: jax.Array, params: Params):
    state = self.env.reset(key)
    return state.obs, State(brax=state, time=jnp.zeros((), jnp.int32))

  def step_env(self, key: jax.Array, state: State, action: jax.Array, params: Params):
    del key  # Brax's dynamics are deterministic
    stepped = self.env.step(state.brax, action)
    return stepped.obs, State(brax=stepped, time=state.time + 1), stepped.reward, stepped.done > 0, {}

  def is_truncated(self, state: State, params: Params) -> jax.Array:
    return state.time >= params.max_steps_in_episode

  def action_space(self, params: Params | None = None) -> spaces.Box:
    return spaces.Box(-1.0, 1.0, (self.env.action_size,), jnp.float32)

  def observation_space(self, params: Params) -> spaces.Box:
    return spaces.Box(-jnp.inf, jnp.inf, (self.env.observation_size,), jnp.float32)

  @property
  def name(self) -> str:
    return f"brax:{type(self.env).__name__}"


def names() -> list[str]:
  """The environments Brax registers (`brax.envs.register_environment` adds more)."""
  return sorted(brax.envs._envs)  # Brax's registry: get_environment looks names up here


def make(name: str, *, episode_length: int = 1000, **kwargs) -> tuple[Brax, Params]:
  """Brax environment `name` built with `kwargs` (e.g. backend="spring"), truncated after `episode_length` steps."""
  if name not in names():
    close = difflib.get_close_matches(name, names(), n=1)
    hint = f"did you mean brax:{close[0]}? " if close else ""
    raise ConfigError(f"unknown Brax environment {name!r}: {hint}choose one of {', '.join(names())}")
  if not (isinstance(episode_length, int) and episode_length > 0):
    raise ConfigError(f"env_kwargs episode_length={episode_length!r} must be a positive number of steps, e.g. 1000")
  try:
    env = brax.envs.get_environment(name, **kwargs)
  except (TypeError, ValueError, KeyError, AssertionError) as error:
    raise ConfigError(f"env_kwargs {kwargs} do not fit brax:{name}: "
                      f"{first_line(error, with_type=True)}") from None
  wrapped = Brax(env, episode_length)
  return wrapped, wrapped.default_params
