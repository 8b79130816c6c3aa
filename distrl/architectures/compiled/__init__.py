"""The compiled architecture (`config.architecture = "compiled"`, the default): JAX environments step inside the
compiled program, and one call runs K updates of the algorithm's `update` for every agent on every device
(`distrl.sharding.Runner`); evaluation plays fresh environments greedily, also compiled (`evaluation`).

It needs nothing of an algorithm beyond the four functions of the contract, and its environments' state is part of
the `TrainState`, so a resume goes on mid-episode.
"""

import functools

import jax
import ml_collections

from distrl import sharding
from distrl.architectures.compiled.evaluation import CompiledEvaluator
from distrl.runtime import agents

ENV_KIND = "jax"
HOOKS = ()
FIELDS = ()
RESUME_NOTE = None


def check(config: ml_collections.ConfigDict, algorithm, env) -> None:
  """Anything a JAX environment and the four functions make can be compiled."""


def mesh(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> jax.sharding.Mesh:
  return mesh


def runner(*, config, algorithm, env, sizes, mesh, state) -> sharding.Runner:
  update = agents.update(functools.partial(algorithm.update, env=env, sizes=sizes), config)
  split = sharding.splits_agents(mesh, agents.count(config))
  return sharding.Runner(update, mesh, config.backend, state, split)


def evaluator(*, config, algorithm, env, mesh, episodes: int) -> CompiledEvaluator:
  return CompiledEvaluator(algorithm, config, env, mesh, episodes)
