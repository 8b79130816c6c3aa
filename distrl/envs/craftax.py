"""Craftax (`craftax:<id>`, e.g. `craftax:Craftax-Classic-Symbolic-v1`) with the gymnax API: `pip install
'distrl[craftax]'`.

    python -m distrl.launch --config=ppo:craftax:Craftax-Classic-Symbolic-v1

Craftax keeps gymnax's older API, one `done` for a death and for its time limit
(`params.max_timesteps`: 10,000 steps in Craftax-Classic, 100,000 in Craftax). distrl tells them
apart: an episode is `terminated` where Craftax's own terminal test holds with the clock set back
to 0 (the agent died, stood in lava, or beat the final boss), and `truncated` where its clock
reached the limit; a step that is both is terminated. The environment resets itself as gymnax's
`Environment.step` does (as Craftax's own auto-reset does), keeping the observation before the
reset in `info["final_observation"]`; a batch of environments generates new worlds only for those
whose episodes ended (`reset_in_batches`, see distrl.envs), not one per environment and step.

Craftax reports at the end of each episode which achievements it unlocked (100 if unlocked, else
0): distrl logs them as `train/achievements/<name>`, the percentage of the episodes ending in a log
interval that unlocked it. `config.env_kwargs` set fields of Craftax's `EnvParams` (e.g.
`max_timesteps`).
"""

from typing import Any

import jax
import jax.numpy as jnp
from craftax.craftax_env import make_craftax_env_from_name
from flax import struct
from gymnax.environments import environment

from distrl.errors import ConfigError

NAMES = ("Craftax-Classic-Symbolic-v1", "Craftax-Symbolic-v1", "Craftax-Classic-Pixels-v1", "Craftax-Pixels-v1")
ACHIEVEMENT = "Achievements/"  # the prefix of Craftax's achievement entries in `info`


@struct.dataclass
class Params:
  craftax: Any  # Craftax's EnvParams

  @property
  def max_steps_in_episode(self) -> int:
    return self.craftax.max_timesteps


class Craftax(environment.Environment):
  """A Craftax environment without its auto-reset, as a gymnax environment that resets itself; a reset generates
  a world, so a batch of them resets only the environments that ended (`reset_in_batches`, see distrl.envs)."""

  reset_in_batches = True

  def __init__(self, env):
    super().__init__()
    self.env = env

  @property
  def default_params(self) -> Params:
    return Params(craftax=self.env.default_params)

  def reset_env(self, key: jax.Array, params: Params):
    return self.env.reset_env(key, params.craftax)

  def step_env(self, key: jax.Array, state, action: jax.Array, params: Params):
    obs, state, reward, _, info = self.env.step_env(key, state, action, params.craftax)
    terminated = self.env.is_terminal(state.replace(timestep=jnp.zeros_like(state.timestep)), params.craftax)
    achievements = {f"achievements/{name[len(ACHIEVEMENT):]}": value for name, value in info.items()
                    if name.startswith(ACHIEVEMENT)}
    return obs, state, reward, terminated, {"episode_metrics": achievements}

  def is_truncated(self, state, params: Params) -> jax.Array:
    return state.timestep >= params.craftax.max_timesteps

  def action_space(self, params: Params | None = None):
    return self.env.action_space(None if params is None else params.craftax)

  def observation_space(self, params: Params):
    return self.env.observation_space(params.craftax)

  @property
  def name(self) -> str:
    return f"craftax:{self.env.name}"


def make(name: str, **kwargs) -> tuple[Craftax, Params]:
  """Craftax environment `name`, its EnvParams fields replaced by `kwargs`."""
  if name not in NAMES:
    raise ConfigError(f"unknown Craftax environment {name!r}: choose one of {', '.join(NAMES)}")
  env = Craftax(make_craftax_env_from_name(name, auto_reset=False))
  try:
    params = Params(craftax=env.env.default_params.replace(**kwargs))
  except (TypeError, ValueError) as error:
    raise ConfigError(f"env_kwargs {kwargs} do not fit craftax:{name} (its EnvParams fields): {error}") from None
  return env, params
