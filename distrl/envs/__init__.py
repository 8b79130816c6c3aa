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

The modules: `interface` (`Env`, `reset_batch`), `sources` (a name to `(env, env_params)`: gymnax, `SUITES`, a
user's factory), `checks` (a suite's or user's environment against the API above), `wrappers`, `gymnax_import`
(gymnax without its render-only libraries); `brax`, `craftax`, `jumanji` adapt the suites; `host` is the source of
environments outside JAX (envpool, gymnasium, a gymnasium factory), which step on the host.
"""

from typing import Any

import jax

# First, before anything below imports gymnax: gymnax without the libraries only its renderers use.
from distrl.envs import gymnax_import  # noqa: F401
from distrl.envs.checks import checked
from distrl.envs.interface import Env, reset_batch
from distrl.envs.sources import SUITES, from_factory, from_gymnax, from_suite, names
from distrl.envs import host
from distrl.envs.wrappers import FlattenPytreeObservation, ResetLater, with_episode_statistics

__all__ = ["Env", "FlattenPytreeObservation", "ResetLater", "SUITES", "make", "names", "reset_batch"]


def make(name: str, kwargs: Any = None) -> Env | host.Spec:
  """The environment `name` (a gymnax id, `suite:id` or `package.module:factory`) built with `kwargs`, checked and
  wrapped (an `Env`, of kind "jax"); or, for a host environment (`envpool:ID`, `gymnasium:ID`, a factory of a
  gymnasium environment), its `host.Spec` (of kind "host"). Which architecture runs it is the config's choice."""
  kwargs = _as_dict(kwargs)
  mask_slice = None
  if name.partition(":")[0] in host.SUITES:
    return host.make(name, kwargs)
  if ":" in name:
    made = from_suite(name, kwargs) if name.partition(":")[0] in SUITES else from_factory(name, kwargs)
    if isinstance(made, host.Spec):
      return made
    env, params = made
    env, mask_slice = checked(env, params, name)
  else:
    env, params = from_gymnax(name, kwargs)
  obs, _ = jax.eval_shape(env.reset, jax.random.PRNGKey(0), params)
  wrapped, without_reset = with_episode_statistics(env)
  return Env(env=wrapped, params=params, name=name, observation_shape=tuple(obs.shape), action_mask_slice=mask_slice,
             without_reset=without_reset)


def _as_dict(kwargs) -> dict:
  if kwargs is None:
    return {}
  return kwargs.to_dict() if hasattr(kwargs, "to_dict") else dict(kwargs)
