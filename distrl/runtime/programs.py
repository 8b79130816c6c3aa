"""What a run executes, built one way for training, `distrl.evaluate`, a loaded policy and the benchmarks: the
algorithm, environment and execution architecture of a config, validated for a mesh, with the initial state placed on
it and the architecture's runner of its update; `load` rebuilds a saved run's program and reads its checkpoint."""

import dataclasses
import functools
import math
import os
import sys

import jax
import ml_collections

from distrl import algorithms, architectures, configs, envs, sharding
from distrl.errors import ConfigError, require, require_divisible, require_positive
from distrl.rl.state import TrainState
from distrl.runtime import agents, sweep
from distrl.runtime.checkpoint import Checkpoints, damage as checkpoint_damage
from distrl.runtime.workdir import load_json


def check_run_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """The fields every algorithm's config has: intervals, backend, and what must split over devices."""
  require_positive(config, "num_seeds", "num_envs", "log_every", "checkpoint_every", "keep_checkpoints", "eval_every",
                   "eval_episodes")
  require(config.backend in sharding.BACKENDS, f"backend={config.backend!r} must be one of {sharding.BACKENDS}")
  policy = config.get("eval_policy", "greedy")
  require(policy in architectures.EVAL_POLICIES,
          f"eval_policy={policy!r} must be one of {architectures.EVAL_POLICIES}: how evaluations act")
  if "hidden_sizes" in config:
    widths = config.hidden_sizes
    widths = (widths,) if isinstance(widths, (int, float)) else widths
    require(all(isinstance(w, int) and w >= 1 for w in widths),
            f"hidden_sizes={config.hidden_sizes!r} must list positive layer widths, e.g. "
            f"--config.hidden_sizes='(64, 64)' ('()' for none)")
  suggestion = num_devices * max(1, -(-config.num_envs // num_devices))  # the next multiple up
  require_divisible("num_envs", config.num_envs, "the number of devices", num_devices,
                    f"use a multiple of {num_devices}, e.g. --config.num_envs={suggestion}")
  require_divisible("eval_episodes", config.eval_episodes, "the number of devices", num_devices,
                    f"use a multiple of {num_devices}")


@dataclasses.dataclass
class Program:
  """What a run executes."""

  config: ml_collections.ConfigDict
  algorithm: algorithms.Algorithm
  architecture: architectures.Architecture
  env: envs.Env | envs.host.Spec  # of the architecture's `ENV_KIND`
  mesh: jax.sharding.Mesh  # the devices the update runs on (`architecture.mesh`)
  sizes: algorithms.Sizes
  state: TrainState  # the initial state of every agent (sweep members x seeds), global layout, on `mesh`
  runner: architectures.Runner  # N updates of every agent a call (not compiled until `runner.compile`)

  @property
  def total_steps(self) -> int:
    return self.sizes.num_updates * self.sizes.steps_per_update

  def evaluator(self, episodes: int) -> architectures.Evaluator:
    """evaluate(learner, keys) -> {"return", "length"}: greedy episodes of every agent, the architecture's way."""
    return self.architecture.evaluator(config=self.config, algorithm=self.algorithm, env=self.env, mesh=self.mesh,
                                       episodes=episodes)

  def close(self) -> None:
    """Stops what runs beside the program (the host architecture's actor thread and environments, say)."""
    self.runner.close()


def mesh_for(config: ml_collections.ConfigDict, devices=None) -> jax.sharding.Mesh:
  """The mesh of a run over `devices` (default: all): `config.member_groups` groups of devices, each training its
  share of the agents (a sweep's members, seeds) on its own environments."""
  devices = jax.devices() if devices is None else list(devices)
  groups = int(config.get("member_groups", 1))
  count = agents.count(config)
  require(groups >= 1, f"member_groups={groups} must be at least 1 (1: every device trains every agent)")
  require(len(devices) % groups == 0,
          f"member_groups={groups} must divide the {len(devices)} devices into groups of equal size "
          f"(member_groups=1: every device trains every agent)")
  require(groups == 1 or count % groups == 0,
          f"member_groups={groups} must divide the run's {count} agents (sweep members x num_seeds) evenly")
  require(groups == 1 or config.backend == "shard_map",
          f"member_groups={groups} needs backend='shard_map' (pmap runs one group)")
  return sharding.make_mesh(devices, groups)


def build(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> Program:
  """Resolves the algorithm, environment and architecture of `config`, validates it for the devices of `mesh` the
  architecture runs on, and builds the initial state (placed there) and the architecture's runner. Raises ConfigError
  for anything a user can fix."""
  lack = configs.lacking(config)
  require(lack is None, lack)
  algorithm = algorithms.get(config.algo)
  env = envs.make(config.env_name, config.env_kwargs)
  architecture = architectures.resolve(config, algorithm, env)
  mesh = architecture.mesh(config, mesh)
  devices = sharding.data_size(mesh)  # those that split each agent's environments
  check_run_config(config, devices)
  sizes = algorithm.sizes(config, devices)
  sweep.check(config, algorithm, lambda member: algorithm.sizes(member, devices))
  require(all(hasattr(sizes, field) for field in ("num_updates", "steps_per_update")),
          f"algo={config.algo!r}: sizes() returned {type(sizes).__name__}, not sizes with num_updates and "
          f"steps_per_update (see distrl/algorithms.py)")
  require(sizes.num_updates < 2**31, f"total_timesteps={config.total_timesteps} makes {sizes.num_updates:,} updates; "
                                     f"the update counter is int32 on the devices (at most 2**31 - 1)")
  init = functools.partial(algorithm.init, env=env, sizes=sizes)
  split = sharding.splits_agents(mesh, agents.count(config))
  state = sharding.init_sharded(agents.init(init, config), agents.keys(config), mesh, split)
  runner = architecture.runner(config=config, algorithm=algorithm, env=env, sizes=sizes, mesh=mesh, state=state)
  return Program(config=config, algorithm=algorithm, architecture=architecture, env=env, mesh=mesh, sizes=sizes,
                 state=state, runner=runner)


def load(workdir: str, checkpoint: int | None = None, best: bool = False) -> tuple[Program, TrainState, int]:
  """-> (program, state, update): a saved run's program (`build` of WORKDIR/config.json) and the state saved at
  `checkpoint` (default: the latest readable one), for `distrl.evaluate`, `distrl.load_policy` and `distrl.export`.

  With `best`, the state kept in WORKDIR/best: the one of the highest evaluation return in training.
  """
  path = os.path.join(workdir, "config.json")
  recorded = load_json(path)
  if recorded is None:
    raise ConfigError(f"no run in --workdir={workdir}: {path} is missing")
  config = ml_collections.ConfigDict(recorded)
  configs.with_new_fields(config)  # a run recorded before its algorithm gained a field trained without it
  directory = os.path.join(workdir, "best" if best else "checkpoints")
  if not os.path.isdir(directory):
    raise ConfigError(f"no checkpoint in {directory}")
  # The most devices the run's sizes split over (num_envs, eval_episodes, a replay's batch_size): results do not depend
  # on the device count. Whatever is still refused on one device is a fault of the config, said as it is.
  for count in range(math.gcd(config.num_envs, jax.device_count()), 0, -1):
    try:
      program = build(config, sharding.make_mesh(jax.devices()[:count]))
      break
    except ConfigError:
      if count == 1:
        raise
  checkpoints = Checkpoints(directory, keep=1 if best else config.keep_checkpoints,
                            best_of="eval/return" if best else None, create=False)
  try:
    saved = checkpoints.saved()
    if not saved:
      raise ConfigError(f"no checkpoint in {checkpoints.directory}")
    if checkpoint is None:  # the latest readable one, as a resuming run would take it (but nothing is moved)
      update, state = checkpoints.restore_latest(program.state, set_aside=False,
                                                 warn=lambda text: print(text, file=sys.stderr))
      if update is None:
        raise ConfigError(f"every checkpoint in {checkpoints.directory} is damaged")
    else:
      update = checkpoint
      if update not in saved:
        raise ConfigError(f"no checkpoint {update} in {checkpoints.directory}; saved: {', '.join(map(str, saved))}")
      try:
        state = checkpoints.restore(update, like=program.state)
      except Exception as error:  # noqa: BLE001 - a damaged checkpoint, said in one line
        raise ConfigError(f"checkpoint {checkpoints.directory}/{update} is damaged ({checkpoint_damage(error)}); "
                          f"saved: {', '.join(map(str, saved))}") from None
  finally:
    checkpoints.close()
  return program, state, update
