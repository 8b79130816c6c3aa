"""The host architecture (`config.architecture = "host"`): environments outside JAX (envpool, gymnasium, a user's
simulator; `distrl.envs.host`) step on host threads, an actor thread acts with the algorithm's `behaviour` at most
`actor_lag` updates behind the learner (`actor`), and the learner runs the algorithm's `learn` on each rollout,
sharded over the mesh like the compiled update (`learner`); evaluation plays fresh host environments (`evaluation`).

An algorithm runs here if it is a `RolloutLearner` (`distrl.algorithms`: `behaviour`, `learn`, `MAX_ACTOR_LAG`). The
host environments' own state cannot be saved: a resume starts fresh episodes.
"""

import jax
import ml_collections

from distrl import algorithms, sharding
from distrl.architectures.host.evaluation import HostEvaluator
from distrl.architectures.host.learner import HostRunner
from distrl.errors import ConfigError, require
from distrl.runtime import sweep

ENV_KIND = "host"
HOOKS = ("behaviour", "learn", "MAX_ACTOR_LAG")
FIELDS = ("num_steps", "actor_lag", "actor_device", "learner_devices")
RESUME_NOTE = ("host environments cannot be saved: every environment starts a fresh episode (the learner, its "
               "optimizer, random streams and counters resume as saved)")


def check(config: ml_collections.ConfigDict, algorithm, env) -> None:
  """What the host architecture cannot do, as one line each."""
  require(config.num_seeds == 1, f"num_seeds={config.num_seeds}: host environments train one agent per run")
  require(not sweep.fields(config), f"sweep.{', sweep.'.join(sweep.fields(config))}: host environments train one "
                                    f"agent per run, not a sweep")
  require(algorithms.initial_memory(algorithm, 1, config=config, env=env) is None,
          f"recurrent={config.get('recurrent')!r}: host environments train agents without memory for now")
  require(config.backend == "shard_map", f"backend={config.backend!r}: host environments learn with shard_map")
  lag, most = config.actor_lag, algorithms.hook(algorithm, "MAX_ACTOR_LAG")
  require(isinstance(lag, int) and not isinstance(lag, bool) and lag >= 0,
          f"actor_lag={lag!r} must be a whole number of updates >= 0 (0: acting waits for every update)")
  if most is not None and lag > most:
    able = algorithms.shipped(lambda other: hasattr(other, "MAX_ACTOR_LAG") and other.MAX_ACTOR_LAG is None)
    raise ConfigError(f"actor_lag={lag} is more than {config.algo} corrects for (MAX_ACTOR_LAG={most}, acting that "
                      f"many updates behind)" + (f"; algo={' or '.join(able)} learns from rollouts of any lag" if able
                                                 else ""))
  processes = jax.process_count()
  require(config.num_envs % processes == 0, f"num_envs={config.num_envs} must split over {processes} processes")


def mesh(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> jax.sharding.Mesh:
  """The devices of `mesh` the learner runs on: all of them, or each process's local devices of the indices in
  `config.learner_devices` (the same indices on every process), e.g. all but the actor's on a GPU host."""
  chosen = tuple(config.learner_devices)
  if not chosen:
    return mesh
  per_process: dict[int, list] = {}
  for device in mesh.devices.flat:
    per_process.setdefault(device.process_index, []).append(device)
  local = len(per_process[jax.process_index()])
  require(len(set(chosen)) == len(chosen) and all(isinstance(i, int) and 0 <= i < local for i in chosen),
          f"learner_devices={chosen} must be distinct indices of this process's {local} device(s), 0 to {local - 1}")
  return sharding.make_mesh([devices[i] for _, devices in sorted(per_process.items()) for i in chosen])


def runner(*, config, algorithm, env, sizes, mesh, state) -> HostRunner:
  return HostRunner(config, algorithm, sizes, env, mesh, state)


def evaluator(*, config, algorithm, env, mesh, episodes: int) -> HostEvaluator:
  return HostEvaluator(algorithm, config, env, episodes)
