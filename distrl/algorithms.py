"""The algorithm contract, and the registry that turns `config.algo` into an algorithm.

An algorithm is any object (a module, a class, a namespace) with the four functions of
`Algorithm`, and any of the optional hooks the Protocols below declare (`HOOKS`: memory, sweepable fields, a
rollout learner's behaviour, learn and actor lag). The trainer, `distrl.evaluate`, the architectures and the
benchmarks know an algorithm only through them. `config.algo` names one: a registered name ("ppo", "impala", "dqn",
"pqn", "sac", "td3", or one given to `register`), or the path of a module outside distrl that defines the four
functions (`examples.a2c`), or `package.module:attribute` for an object that has them.

The state an algorithm threads through its functions is a `TrainState(update, learner, actors)`
(see `distrl.rl.state`): `learner` is replicated on every device; every leaf of `actors` has the
*global* environment index as its leading axis and is split over the devices. `update` is
written for one device's share of the environments, as if there were one device; it reaches
the other devices only through `sharding.pmean` / `sharding.psum` (and `sharding.per_device`
before `jax.grad`). A config for any algorithm also has the fields the trainer reads (see
`RUN_FIELDS`).
"""

import importlib
import inspect
from typing import Any, Callable, Protocol

import jax
import ml_collections

from distrl.configs import RUN_FIELDS  # noqa: F401 - the fields every config has, stated with the configs
from distrl.envs import Env
from distrl.errors import ConfigError
from distrl.rl.state import TrainState
from distrl.user_modules import load_attribute, load_module


Metrics = dict[str, tuple[jax.Array, jax.Array]]  # {name: (sum, count)}, added up over a chunk, divided on the host


class Sizes(Protocol):
  """What an algorithm's `sizes` returns: at least these two, plus whatever its `update` needs."""

  num_updates: int  # training iterations in the whole run
  steps_per_update: int  # global environment steps per iteration


class Algorithm(Protocol):
  """The four functions every algorithm implements."""

  def sizes(self, config: ml_collections.ConfigDict, num_devices: int) -> Sizes:
    """Validates `config` for `num_devices` devices (a `ConfigError` a user can act on otherwise) and derives
    every size `init` and `update` need. Called once, on the host, before anything is traced."""

  def init(self, key: jax.Array, *, config: ml_collections.ConfigDict, env: Env, sizes: Sizes) -> TrainState:
    """The initial state of one agent from `key`, in the global layout: `actors` hold every environment
    (environment i reset from `fold_in(key, i)`, see `envs.reset_batch`), `learner` the parameters."""

  def update(self, state: TrainState, *, config: ml_collections.ConfigDict, env: Env,
             sizes: Sizes) -> tuple[TrainState, Metrics]:
    """One training iteration on one device's share of `state.actors`. Returns the new state and metrics
    as {name: (sum, count)}, the same on every device (psum/pmean them). The trainer counts `state.update`."""

  def act(self, learner: Any, obs: jax.Array, key: jax.Array | None, *, config: ml_collections.ConfigDict,
          env: Env, greedy: bool) -> jax.Array:
    """Actions for a batch of observations (B, *obs_shape), ready for `env.step`: sampled from `key`, or
    the greedy action if `greedy` (then `key` may be None). `learner` is `TrainState.learner`.

    An agent with memory (`WithMemory`) takes it as `act(..., memory=memory)` and returns (actions, the memory after
    this step); see `act` below."""


# The optional hooks: what the runtime or an architecture uses beyond the four functions, each declared by the
# Protocol that names it. `hook(algorithm, name)` is how the runtime reads one (its default where an algorithm has
# none); an architecture that needs some lists them (`distrl.architectures`), and `require` refuses an algorithm
# without them in one line.


class WithMemory(Protocol):
  """An agent with memory (a recurrent core): its actors carry a state from step to step."""

  def initial_memory(self, num: int, *, config: ml_collections.ConfigDict, env: Env) -> Any:
    """The memory `num` actors start an episode with, or None when this config has none (a feed-forward agent).
    `act` then takes `memory=` and returns (actions, the memory after this step)."""


class Sweepable(Protocol):
  """An algorithm a sweep (`distrl.runtime.sweep`) can train many configurations of in one program."""

  SWEEPABLE: tuple[str, ...]  # the config fields a sweep may vary: none of them changes an array shape


class RolloutLearner(Protocol):
  """An algorithm whose update is a rollout of `behaviour` followed by `learn`, so that rollouts made elsewhere
  (host environments, `distrl.architectures.host`) can be learned from."""

  MAX_ACTOR_LAG: int | None  # how many updates old the behaviour's parameters may be (None: any, corrected for)

  def behaviour(self, learner: Any, obs: jax.Array, keys: jax.Array, *, config: ml_collections.ConfigDict,
                env: Env) -> tuple[jax.Array, Any]:
    """The rollout's policy: (actions (E, ...), extras the loss needs, e.g. log-probabilities) for observations
    (E, *obs_shape), environment e drawing from `keys[e]`."""

  def learn(self, state: TrainState, collected: Any, *, config: ml_collections.ConfigDict, env: Env,
            sizes: Sizes) -> tuple[TrainState, Metrics]:
    """The rest of `update` on a collected rollout (`rl.rollout_learner.Collected`) of this device's environments."""


CONTRACT = ("sizes", "init", "update", "act")

# Every optional hook, the Protocol that declares it, and what an algorithm without it means.
HOOKS: dict[str, tuple[type, Any]] = {
    "initial_memory": (WithMemory, None),  # no memory
    "SWEEPABLE": (Sweepable, ()),  # nothing to sweep
    "behaviour": (RolloutLearner, None),
    "learn": (RolloutLearner, None),
    "MAX_ACTOR_LAG": (RolloutLearner, 0),  # acting waits for every update
}


def hook(algorithm: Algorithm, name: str) -> Any:
  """The optional hook `name` of `algorithm` (one of `HOOKS`), or the default that stands for its absence."""
  return getattr(algorithm, name, HOOKS[name][1])


def require(algorithm: Algorithm, algo: str, hooks: tuple[str, ...], needed_for: str) -> None:
  """A ConfigError naming the hooks of `hooks` that `algorithm` (config.algo=`algo`) lacks for `needed_for`."""
  missing = [name for name in hooks if not hasattr(algorithm, name)]
  if missing:
    have = shipped(lambda other: all(hasattr(other, name) for name in hooks))
    which = f" ({', '.join(have)} {'has' if len(have) == 1 else 'have'} them)" if have else ""
    raise ConfigError(f"algo={algo!r} cannot {needed_for}: it lacks {', '.join(missing)} "
                      f"(see {', '.join(sorted({HOOKS[n][0].__name__ for n in missing}))} in distrl/algorithms.py)"
                      f"{which}")


def shipped(test: Callable[[Algorithm], bool]) -> list[str]:
  """The names of the registered algorithms for which `test(algorithm)` holds: what an error can suggest."""
  return [name for name in names() if test(get(name))]

# A module path is imported when used.
_REGISTRY: dict[str, Algorithm | str] = {"ppo": "distrl.ppo", "dqn": "distrl.dqn", "pqn": "distrl.pqn",
                                         "sac": "distrl.sac", "td3": "distrl.td3", "impala": "distrl.impala"}


def initial_memory(algorithm: Algorithm, num: int, *, config: ml_collections.ConfigDict, env: Env) -> Any:
  """The memory `num` actors of `algorithm` start an episode with (`WithMemory`), or None for an agent without."""
  initial = hook(algorithm, "initial_memory")
  return None if initial is None else initial(num, config=config, env=env)


def act(algorithm: Algorithm, learner: Any, obs: jax.Array, key: jax.Array | None, memory: Any, *,
        config: ml_collections.ConfigDict, env: Env, greedy: bool) -> tuple[jax.Array, Any]:
  """`algorithm.act` for acting with or without memory alike: -> (actions, the memory after this step), from the
  `memory` `initial_memory` started (None: the agent has none, and None is returned)."""
  if memory is None:
    return algorithm.act(learner, obs, key, config=config, env=env, greedy=greedy), None
  return algorithm.act(learner, obs, key, config=config, env=env, greedy=greedy, memory=memory)


def register(name: str, algorithm: Algorithm) -> None:
  """Makes `config.algo = name` train `algorithm` (in this process; the `module:attribute` form needs no call)."""
  check(algorithm, name)
  _REGISTRY[name] = algorithm


def names() -> list[str]:
  """The registered algorithm names."""
  return list(_REGISTRY)


def _call_fits(function: Any, contract: Any) -> bool:
  """Whether `function` can be called as the trainer calls the contract's `contract` (its positional and keyword-only
  arguments)."""
  params = list(inspect.signature(contract).parameters.values())[1:]  # less self
  args = [None for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
  kwargs = {p.name: None for p in params if p.kind is p.KEYWORD_ONLY}
  try:
    inspect.signature(function).bind(*args, **kwargs)
  except TypeError:
    return False
  except ValueError:  # no signature to read (a builtin): left to the call
    pass
  return True


def check(algorithm: Any, name: str) -> Algorithm:
  """`algorithm` itself if it has every function of the contract, each taking the contract's arguments, else a
  ConfigError naming what it lacks."""
  missing = [f for f in CONTRACT if not callable(getattr(algorithm, f, None))]
  if missing:
    raise ConfigError(f"algo={name!r} is not an algorithm: it lacks {', '.join(missing)} of the contract "
                      f"({', '.join(CONTRACT)}; see distrl/algorithms.py)")
  for f in CONTRACT:
    if not _call_fits(getattr(algorithm, f), getattr(Algorithm, f)):
      raise ConfigError(f"algo={name!r}: its {f}{_bare(getattr(algorithm, f))} cannot be called as the contract's "
                        f"{f}{_bare(getattr(Algorithm, f), skip=1)} (see distrl/algorithms.py)")
  for optional, (protocol, _) in HOOKS.items():  # an optional function, where present, as its Protocol calls it
    declared, given = getattr(protocol, optional, None), getattr(algorithm, optional, None)
    if callable(declared) and given is not None and not (callable(given) and _call_fits(given, declared)):
      raise ConfigError(f"algo={name!r}: its {optional} cannot be called as {protocol.__name__}.{optional}"
                        f"{_bare(declared, skip=1)} (see distrl/algorithms.py)")
  return algorithm


def _bare(function: Any, skip: int = 0) -> inspect.Signature:
  """`function`'s signature without annotations, defaults or its first `skip` parameters."""
  params = list(inspect.signature(function).parameters.values())[skip:]
  return inspect.Signature([p.replace(annotation=p.empty, default=p.empty) for p in params])


def get(name: str) -> Algorithm:
  """The algorithm `config.algo` names: a registered name, `package.module` or `package.module:attribute`."""
  if not isinstance(name, str) or not name:
    raise ConfigError(f"algo={name!r} must name an algorithm: one of {', '.join(names())}, or "
                      f"package.module[:attribute]")
  if ":" in name:
    return check(load_attribute(name, "algo"), name)
  if "." in name:
    return check(load_module(name, "algo"), name)
  if name not in _REGISTRY:
    raise ConfigError(f"algo={name!r} is not an algorithm; choose one of {', '.join(names())}, or name your own "
                      f"as package.module[:attribute]")
  found = _REGISTRY[name]
  return check(importlib.import_module(found) if isinstance(found, str) else found, name)
