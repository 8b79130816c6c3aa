"""Execution architectures: how a run's batches are made, chosen once per run by `config.architecture`.

An architecture is any object (a module, here) with what `Architecture` declares: the kind of environment it runs,
the optional algorithm hooks and config fields it needs, and the runner and evaluator it builds. The runtime
(`distrl.runtime.programs`, the trainer, resume, `distrl.evaluate`) calls only this interface and never asks which
architecture or environment it has. Shipped:

- "compiled" (the default): environments step inside the compiled program; one call runs K updates of the
  algorithm's `update` on every device (`distrl.sharding.Runner`).
- "host": environments outside JAX (envpool, gymnasium, a user's simulator) step on host threads; an actor runs the
  algorithm's `behaviour` a bounded number of updates behind the learner, which runs its `learn` sharded.

Adding one is a package beside these two and a line in `_REGISTRY` (or `register(name, architecture)`).
"""

import importlib
from typing import Any, Protocol

import jax
import ml_collections

from distrl import algorithms
from distrl.errors import ConfigError
from distrl.rl.state import TrainState


class Runner(Protocol):
  """N updates of every agent per call, on a mesh; the trainer's loop, checkpoints and stops use nothing else."""

  zeros: dict  # metric sums of no updates, {name: (sum, count)}: where a log interval's first call starts

  def put(self, state: TrainState) -> Any:
    """The global layout (what checkpoints hold) -> the runner's layout."""

  def get(self, state: Any) -> TrainState:
    """The runner's layout -> the global layout."""

  def compile(self, state: Any) -> None:
    """Compiles what a call runs for `state`'s shapes now, so that compile time is measured apart."""

  def memory_analysis(self) -> Any:
    """XLA's memory analysis of what a call runs on each device, once compiled (None where XLA has none): the
    trainer refuses a run that cannot fit (`distrl.runtime.memory`)."""

  def __call__(self, state: Any, num_updates: int, totals: dict | None = None) -> Any:
    """Runs `num_updates` updates -> `sharding.Chunk(state, totals, finite)`, the metric sums going on from
    `totals` (an earlier call's: the interval goes on) or from `zeros`."""

  def close(self) -> None:
    """Stops whatever runs beside the program (threads, environments); the runner is not called again."""


class Evaluator(Protocol):
  """Evaluation episodes of every agent (greedy or sampled: `config.eval_policy`):
  `evaluator(learner, keys) -> {"return": (..., episodes), "length": ...}`."""

  def compile(self, learner: Any, keys: jax.Array) -> None:
    """Compiles the evaluation for these shapes now (the trainer does it beside the update's compile)."""

  def __call__(self, learner: Any, keys: jax.Array) -> dict:
    """Each episode's return and length; fresh environment i of the evaluation drawn from `keys`."""


class Architecture(Protocol):
  """How batches are made: what an architecture declares and builds."""

  ENV_KIND: str  # the kind of environment it runs: "jax" (`envs.Env`) or "host" (`envs.host.Spec`)
  HOOKS: tuple[str, ...]  # the optional algorithm hooks it calls (`algorithms.HOOKS`)
  FIELDS: tuple[str, ...]  # the config fields it reads beyond `configs.RUN_FIELDS`
  RESUME_NOTE: str | None  # what a resume says of the environments' state (None: it is restored with the rest)

  def check(self, config: ml_collections.ConfigDict, algorithm: algorithms.Algorithm, env: Any) -> None:
    """Refuses, as one ConfigError line each, what this architecture cannot run (beyond kind, hooks and fields)."""

  def mesh(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> jax.sharding.Mesh:
    """The devices of `mesh` the update runs on."""

  def runner(self, *, config: ml_collections.ConfigDict, algorithm: algorithms.Algorithm, env: Any, sizes: Any,
             mesh: jax.sharding.Mesh, state: TrainState) -> Runner:
    """The runner of `algorithm`'s updates for every agent of `config`, from the initial `state` (global layout)."""

  def evaluator(self, *, config: ml_collections.ConfigDict, algorithm: algorithms.Algorithm, env: Any,
                mesh: jax.sharding.Mesh, episodes: int) -> Evaluator:
    """Evaluation of `episodes` fresh environments per agent, acting as `config.eval_policy` says."""


# A module path is imported when used.
EVAL_POLICIES = ("greedy", "sampled")  # config.eval_policy: how an evaluator acts


def greedy(config) -> bool:
  """Whether evaluation acts greedily (`config.eval_policy`, "greedy" in a config without it), else as it samples."""
  return config.get("eval_policy", "greedy") == "greedy"


_REGISTRY: dict[str, Architecture | str] = {"compiled": "distrl.architectures.compiled",
                                            "host": "distrl.architectures.host"}
DEFAULT = "compiled"
_KINDS = {"jax": "a JAX environment", "host": "a host environment (it steps outside JAX)"}  # for messages
DECLARED = ("ENV_KIND", "HOOKS", "FIELDS", "RESUME_NOTE", "check", "mesh", "runner", "evaluator")


def names() -> list[str]:
  """The registered architecture names."""
  return list(_REGISTRY)


def register(name: str, architecture: Architecture) -> None:
  """Makes `config.architecture = name` run `architecture` (in this process)."""
  _declared(architecture, name)
  _REGISTRY[name] = architecture


def get(name: str) -> Architecture:
  """The architecture registered as `name`."""
  if not isinstance(name, str) or name not in _REGISTRY:
    raise ConfigError(f"architecture={name!r} is not an architecture; choose one of {', '.join(names())}")
  found = _REGISTRY[name]
  return _declared(importlib.import_module(found) if isinstance(found, str) else found, name)


def _declared(architecture: Any, name: str) -> Architecture:
  missing = [attribute for attribute in DECLARED if not hasattr(architecture, attribute)]
  if missing:
    raise ConfigError(f"architecture={name!r} lacks {', '.join(missing)} (see distrl/architectures/__init__.py)")
  return architecture


def resolve(config: ml_collections.ConfigDict, algorithm: algorithms.Algorithm, env: Any) -> Architecture:
  """The architecture of `config`, checked against the environment's kind, the algorithm's hooks and the config's
  fields: every mismatch is one ConfigError line that says what would run it."""
  architecture = get(config.architecture)
  if env.kind != architecture.ENV_KIND:
    runs = [other for other in names() if get(other).ENV_KIND == env.kind]
    fix = f"--config.architecture={runs[0]}" if runs else "an environment it runs"
    raise ConfigError(f"env_name={config.env_name!r} is {_KINDS.get(env.kind, f'a {env.kind} environment')}, "
                      f"which architecture={config.architecture!r} does not run: use {fix}")
  algorithms.require(algorithm, config.algo, architecture.HOOKS,
                     f"run architecture={config.architecture!r} ({env.kind} environments)")
  missing = [field for field in architecture.FIELDS if field not in config]
  if missing:
    raise ConfigError(f"architecture={config.architecture!r} reads {', '.join(missing)}, which this config lacks "
                      f"(its FIELDS, distrl/architectures/{config.architecture}/)")
  architecture.check(config, algorithm, env)
  return architecture
