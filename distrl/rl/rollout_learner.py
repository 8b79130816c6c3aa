"""What the algorithms that learn from each fresh rollout share (PPO, PQN): their state, its initialisation,
the annealed learning rate, the values to bootstrap from, and environment-stratified minibatches.

Minibatches are stratified by environment: each epoch, every environment shuffles its own T time
steps with its own key, and minibatch m takes the steps at positions [m T/M, (m+1) T/M) of every
environment's order. Every minibatch so holds T/M steps of *every* environment, and the union of
the devices' local minibatches is exactly the global minibatch of a run on one device. An agent with
memory (`config.recurrent`) takes whole environments' sequences instead (`distrl.rl.recurrent`).
"""

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from distrl import envs
from distrl.rl import acting, masked_map, normalization, recurrent
from distrl.envs import Env
from distrl.errors import require, require_divisible, require_positive
from distrl.rl.state import TrainState


@struct.dataclass
class Learner:
  params: Any
  opt_state: Any
  normalizer: normalization.Normalizer  # observation / return statistics (fields None when off)


@struct.dataclass
class Actors:
  """One row per environment."""

  env_state: Any
  obs: jax.Array  # (E, *obs_shape): the observation each environment will act on next (raw)
  key: jax.Array  # (E, 2) uint32: each environment's own random stream, from its global index
  discounted_return: jax.Array | None  # (E,): the running return that scales rewards, if config.scale_rewards
  memory: Any = None  # (E, ...): each environment's recurrent state, if config.recurrent (reset at episode ends)


@dataclasses.dataclass(frozen=True)
class Sizes:
  """Sizes derived from a config and the device count."""

  num_updates: int  # training iterations in the whole run
  steps_per_update: int  # global environment steps per iteration
  gradient_steps: int  # in the whole run: the learning rate anneals over them


def sizes(config: ml_collections.ConfigDict, num_devices: int) -> Sizes:
  """Validates the fields every such algorithm has (rollout, epochs, minibatches, optimiser, normalisation, memory)
  and derives the sizes."""
  require_positive(config, "total_timesteps", "num_envs", "num_steps", "update_epochs", "num_minibatches",
                   "lr", "max_grad_norm", "obs_clip", "reward_clip")
  require(0 < config.gamma <= 1, f"gamma={config.gamma} must be in (0, 1]")
  require(isinstance(config.anneal_lr, bool), f"anneal_lr={config.anneal_lr!r} must be True or False")
  recurrent.check(config, num_devices)
  if not config.recurrent:
    require_divisible("num_steps", config.num_steps, "num_minibatches", config.num_minibatches,
                      "each minibatch takes num_steps/num_minibatches steps of every environment; "
                      "pick num_minibatches that divides num_steps")
  steps_per_update = config.num_envs * config.num_steps
  require(config.total_timesteps >= steps_per_update,
          f"total_timesteps={config.total_timesteps} is less than one iteration "
          f"(num_envs * num_steps = {steps_per_update})")
  num_updates = config.total_timesteps // steps_per_update
  gradient_steps = num_updates * config.update_epochs * config.num_minibatches
  require(gradient_steps < 2**31, f"total_timesteps={config.total_timesteps} makes {gradient_steps:,} gradient steps; "
                                  f"they are counted in int32 on the devices, so the most is 2**31 - 1 (lower "
                                  f"total_timesteps, or raise num_envs * num_steps)")
  return Sizes(num_updates=num_updates, steps_per_update=steps_per_update, gradient_steps=gradient_steps)


def init(key: jax.Array, *, config: ml_collections.ConfigDict, env: Env, network: nn.Module,
         optimizer: optax.GradientTransformation) -> TrainState:
  """Parameters of `network` from `key`; environment i reset from fold_in(key, i) whatever device runs it."""
  param_key, env_key = jax.random.split(key)
  if config.recurrent:  # one environment's observation and memory
    params = network.init(param_key, jnp.zeros((1, *env.observation_shape)), recurrent.initial(config, 1))
  else:
    params = network.init(param_key, jnp.zeros(env.observation_shape))
  normalizer = normalization.init(env.observation_shape, normalize_obs=config.normalize_obs,
                                  scale_rewards=config.scale_rewards)
  obs, env_state, keys = envs.reset_batch(env, env_key, jnp.arange(config.num_envs))
  return TrainState(update=jnp.zeros((), jnp.int32),
                    learner=Learner(params=params, opt_state=optimizer.init(params), normalizer=normalizer),
                    actors=Actors(env_state=env_state, obs=obs, key=keys,
                                  discounted_return=normalization.initial_returns(normalizer, config.num_envs),
                                  memory=recurrent.initial(config, config.num_envs)))


@struct.dataclass
class Collected:
  """An iteration's rollout (`collect`)."""

  steps: acting.Step  # (T, E, ...)
  actors: Actors  # advanced past the rollout: environment states, the observations it ends on, keys, running returns
  normalizer: normalization.Normalizer  # the learner's, its return statistics updated with the rollout's rewards
  shuffle_key: jax.Array  # (E, 2): each environment's key for this iteration's minibatch orders


def iteration_keys(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Each environment's keys (E, 2) for an iteration: (its key after it, its rollout's, its minibatch orders')."""
  return tuple(jnp.unstack(jax.vmap(functools.partial(jax.random.split, num=3))(key), axis=1))


def collect(state: TrainState, policy: acting.Policy | acting.RecurrentPolicy, *, config: ml_collections.ConfigDict,
            env: Env) -> Collected:
  """`config.num_steps` steps of every local environment with `policy`, from each environment's own key; a
  `RecurrentPolicy` with memory (`config.recurrent`), from the actors' memory."""
  actors = state.actors
  next_key, rollout_key, shuffle_key = iteration_keys(actors.key)
  if config.recurrent:
    env_state, obs, memory, steps = acting.recurrent_rollout(env, policy, actors.env_state, actors.obs, actors.memory,
                                                             rollout_key, config.num_steps)
  else:
    env_state, obs, steps = acting.rollout(env, policy, actors.env_state, actors.obs, rollout_key, config.num_steps)
    memory = None
  return received(state, steps, config=config, actors=actors.replace(env_state=env_state, obs=obs, key=next_key,
                                                                     memory=memory), shuffle_key=shuffle_key)


def received(state: TrainState, steps: acting.Step, *, config: ml_collections.ConfigDict, actors: Actors,
             shuffle_key: jax.Array) -> Collected:
  """A rollout `steps` (T, E, ...) that left the environments as `actors` (their running returns still to update)
  as the learner takes it: from the compiled rollout (`collect`) or from the host architecture's actor."""
  normalizer, discounted_return = normalization.update_returns(state.learner.normalizer, steps.reward,
                                                               steps.episode_end, state.actors.discounted_return,
                                                               gamma=config.gamma)
  return Collected(steps=steps, normalizer=normalizer, shuffle_key=shuffle_key,
                   actors=actors.replace(discounted_return=discounted_return))


def learning_rate(config: ml_collections.ConfigDict, gradient_steps: int) -> optax.Schedule:
  """Constant, or linear from `lr` to 0 over the run's `gradient_steps` if `anneal_lr`."""
  if not config.anneal_lr:
    return optax.constant_schedule(config.lr)
  return optax.linear_schedule(config.lr, 0.0, gradient_steps)


def orders(keys: jax.Array, num_steps: int, epochs: int) -> jax.Array:
  """Each environment's shuffled time steps for each epoch, (epochs, E, T), from its key in `keys` (E, 2)."""
  epoch_keys = jax.vmap(functools.partial(jax.random.split, num=epochs))(keys)  # (E, epochs, 2)
  return jax.vmap(jax.vmap(jax.random.permutation, in_axes=(0, None)), in_axes=(1, None))(epoch_keys, num_steps)


def minibatches(x: jax.Array, order: jax.Array, num_minibatches: int) -> jax.Array:
  """A rollout's leaf (T, E, ...) in one epoch's `order` (E, T), as (M, T/M * E, ...) minibatches."""
  x = x[order.T, jnp.arange(x.shape[1])]
  return x.reshape((num_minibatches, -1) + x.shape[2:])


def epoch_orders(keys: jax.Array, config: ml_collections.ConfigDict) -> jax.Array:
  """Every epoch's minibatch order from the environments' shuffle keys (E, 2): each environment's shuffled time steps
  (epochs, E, T), or, with memory, the environments each minibatch takes (epochs, M, E / M; `recurrent.orders`)."""
  if config.recurrent:
    return recurrent.orders(keys, config.update_epochs, config.num_minibatches)
  return orders(keys, config.num_steps, config.update_epochs)


def split(batch, order: jax.Array, config: ml_collections.ConfigDict):
  """A batch (a dataclass of rollout leaves (T, E, ...)) as one epoch's minibatches, a leading axis M on every leaf:
  (M, T/M * E, ...) stratified over time, or, with memory, (M, T, E / M, ...) of whole environments and its `start`
  memory (E, ...) as (M, E / M, ...)."""
  if not config.recurrent:
    return jax.tree.map(lambda x: minibatches(x, order, config.num_minibatches), batch)
  sequences = jax.tree.map(lambda x: recurrent.minibatches(x, order), batch.replace(start=None))
  return sequences.replace(start=jax.tree.map(lambda x: recurrent.minibatches(x, order, time_axis=False), batch.start))


def next_values(value_t: jax.Array, last_value: jax.Array, steps: acting.Step,
                value_fn: Callable[[Any, Any], jax.Array]) -> jax.Array:
  """V(s_{t+1}) (T, E) for every step of a rollout, the state each step reached before any reset, from the values of
  the observations the steps acted on: no second pass of the network over the whole rollout.

  value_t: V(s_t) (T, E), of the observations the steps acted on; last_value: V(s_T) (E,), of the observations the
  rollout ends on; value_fn: (observations (K, *obs_shape), memory (K, ...) or None) -> values (K,), the memory
  a recurrent policy's after the step (`Step.memory`), that the observation was reached with. Where the episode goes on, s_{t+1} is
  the next step's observation (value_t[t + 1], or last_value); where it was truncated, the pre-reset final
  observation, valued by `value_fn` on those rows only (`masked_map.where`); where it terminated, 0: there is nothing
  to bootstrap from (the targets multiply it by 0).
  """
  next_value = jnp.concatenate([value_t[1:], last_value[None]])
  terminated = steps.terminated.astype(bool)
  truncated = steps.episode_end.astype(bool) & ~terminated
  flat = lambda x: x.reshape((-1,) + x.shape[2:])
  value_tp1 = masked_map.where(flat(truncated), lambda rows: value_fn(*rows),
                               jax.tree.map(flat, (steps.final_obs, steps.memory)), flat(next_value))
  return jnp.where(terminated, 0.0, value_tp1.reshape(next_value.shape))
