"""The host architecture's runner, its learner side: an actor thread fills rollouts from host environments, the
learner runs the algorithm's `learn` on each, sharded over the mesh as the compiled architecture's update is.

`HostRunner` is an `architectures.Runner` (`put`, `get`, `compile`, `zeros`, `close`, a call of N updates returning a
`sharding.Chunk`), so the trainer's loop, checkpoints, logs, evaluation and stop agreement are the ones the compiled
architecture uses. Each process steps its own environments (rows `num_envs / processes` of the global batch);
its rollouts become its rows of global arrays (`jax.make_array_from_process_local_data`), and the learner's
`pmean` reduces over every device of every process.

A checkpoint holds the parameters, optimizer state, counters and each environment's random stream; the host
environments' own state cannot be saved, so a resume starts fresh episodes (seeded from the seed and the update).
"""

import functools
import zlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from distrl import sharding
from distrl.architectures.host import actor as actors
from distrl.envs.host import Spec
from distrl.errors import ConfigError, EnvironmentFailed, RunFailed
from distrl.rl import acting, rollout_learner
from distrl.rl.state import TrainState

def env_seed(seed: int, update: int, first_env: int) -> int:
  """The seed of this process's host environments (environment i gets it + i) for a start at `update`."""
  return (zlib.crc32(f"{seed}/{update}".encode()) + first_env) % 2**31


def process_rows(x: jax.Array) -> np.ndarray:
  """This process's rows of an array split over the mesh on its leading axis, in global order."""
  shards = sorted({s.index[0].start or 0: s for s in x.addressable_shards}.items())
  return np.concatenate([np.asarray(s.data) for _, s in shards])


class HostRunner:
  """N updates per call: each takes the actor's next rollout and runs the algorithm's `learn` on it."""

  def __init__(self, config: ml_collections.ConfigDict, algorithm, sizes, env: Spec, mesh,
               abstract_state: TrainState):
    self.config, self.algorithm, self.sizes, self.env, self.mesh = config, algorithm, sizes, env, mesh
    self._abstract_state = abstract_state
    self._shardings = sharding.shardings(mesh, abstract_state)
    self.actor: actors.Actor | None = None
    config, algorithm = self.config, self.algorithm
    behaviour = functools.partial(algorithm.behaviour, config=config, env=env)

    def policy(learner, obs, keys):
      action, extras = behaviour(learner, obs, keys)
      return action, env.clip(action), extras

    self._policy = policy
    learn = functools.partial(algorithm.learn, config=config, env=env, sizes=self.sizes)

    def learn_from(state: TrainState, steps: acting.Step, last_obs):
      """The algorithm's `learn` on this device's environments of a rollout."""
      next_key, _, shuffle_key = rollout_learner.iteration_keys(state.actors.key)
      collected = rollout_learner.received(state, steps, config=config, shuffle_key=shuffle_key,
                                           actors=state.actors.replace(obs=last_obs, key=next_key))
      return learn(state, collected)

    def one_update(state: TrainState, totals, steps: acting.Step, last_obs):
      state, metrics = learn_from(state, steps, last_obs)
      state = state.replace(update=state.update + 1)
      return state, jax.tree.map(jnp.add, totals, metrics), sharding.finite(state.learner)

    state_specs = sharding.specs(abstract_state)
    self._step_specs = P(None, sharding.DATA_AXIS)
    rollout_specs = (self._step_specs, P(sharding.DATA_AXIS))
    self._update = jax.jit(sharding.shard_map(one_update, mesh, in_specs=(state_specs, P(), *rollout_specs),
                                              out_specs=(state_specs, P(), P())), donate_argnums=0)
    self._metrics_of = sharding.shard_map(lambda *args: learn_from(*args)[1], mesh,
                                          in_specs=(state_specs, *rollout_specs), out_specs=P())

  def _abstract_rollout(self, state):
    """The shapes of a global rollout, from one policy step's outputs."""
    config, env = self.config, self.env
    obs = jax.ShapeDtypeStruct((config.num_envs, *env.observation_shape), state.actors.obs.dtype)
    keys = jax.ShapeDtypeStruct((config.num_envs, 2), jnp.uint32)
    action, _, extras = jax.eval_shape(self._policy, state.learner, obs, keys)
    over_time = lambda x: jax.ShapeDtypeStruct((config.num_steps, *x.shape), x.dtype)
    per_env = lambda dtype: jax.ShapeDtypeStruct((config.num_steps, config.num_envs), dtype)
    steps = acting.Step(obs=over_time(obs), action=over_time(action), extras=jax.tree.map(over_time, extras),
                        reward=per_env(jnp.float32), terminated=per_env(bool), episode_end=per_env(bool),
                        final_obs=over_time(obs), episode_return=per_env(jnp.float32),
                        episode_length=per_env(jnp.int32), episode_metrics={}, counted=per_env(bool))
    return steps, obs

  @functools.cached_property
  def zeros(self) -> dict:
    state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), self._abstract_state)
    steps, obs = self._abstract_rollout(state)
    metrics = jax.eval_shape(self._metrics_of, state, steps, obs)
    return jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), metrics)

  def compile(self, state) -> None:
    """Compiles the learner's update for the rollouts' shapes (the actor's policy compiles on its first step)."""
    self._abstract_state = state
    steps, obs = self._abstract_rollout(state)
    self._update = self._update.lower(state, self.zeros, steps, obs).compile()

  def memory_analysis(self):
    """XLA's memory analysis of the learner's compiled update (after `compile`)."""
    return sharding.memory_analysis(self._update)

  def put(self, state: TrainState):
    self._abstract_state = state
    return jax.device_put(state, self._shardings)

  def get(self, state) -> TrainState:
    return state

  def _global(self, local, spec):
    """A process's rows (E_local on axis 1 for spec (None, data), axis 0 for (data,)) as a global array."""
    axis = 1 if spec == self._step_specs else 0
    processes = jax.process_count()

    def one(x):
      shape = list(x.shape)
      shape[axis] *= processes
      return jax.make_array_from_process_local_data(NamedSharding(self.mesh, spec), x, tuple(shape))

    return jax.tree.map(one, local)

  def _start(self, state) -> None:
    config = self.config
    update = int(sharding.to_host(state.update))
    local = config.num_envs // jax.process_count()
    seed = env_seed(config.seed, update, jax.process_index() * local)
    envs = self.env.open(local, seed)
    device = jax.local_devices()[config.actor_device % jax.local_device_count()]
    self.actor = actors.Actor(envs, self._policy, num_steps=config.num_steps, lag=config.actor_lag, device=device)
    self.actor.start(state.learner, update, process_rows(state.actors.key))

  def __call__(self, state, num_updates: int, totals=None) -> sharding.Chunk:
    if self.actor is None:
      self._start(state)
    totals = self.zeros if totals is None else totals
    finite = True
    for _ in range(num_updates):
      try:
        rollout = self.actor.next()
      except actors.Closed:
        raise RunFailed("the actor was closed") from None
      except ConfigError:
        raise
      except Exception as error:  # the user's environment raised in reset or step: the update loop says it
        raise EnvironmentFailed(int(sharding.to_host(state.update)) + 1, error) from None
      steps = self._global(rollout.steps, self._step_specs)
      last_obs = self._global(rollout.last_obs, P(sharding.DATA_AXIS))
      state, totals, ok = self._update(state, totals, steps, last_obs)
      self.actor.publish(rollout.update + 1, state.learner)
      finite = finite & ok
    return sharding.Chunk(state, totals, finite)

  def close(self) -> None:
    if self.actor is not None:
      self.actor.close()
      self.actor = None
