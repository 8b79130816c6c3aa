"""DQN (Mnih et al. 2015) for discrete actions: `sizes`, `init`, the per-device `update`, `act`.

One iteration: every environment takes `num_steps` epsilon-greedy steps into its replay row,
then (after `learning_starts` environment steps) `gradient_steps` gradient steps on batches
that each device samples from its own environments' rows (`batch_size / num_devices` each);
gradients are averaged over devices. The target network moves towards the online network
by `tau` every `target_update_interval` environment steps (tau = 1: a hard copy).
"""

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from distrl import acting, envs, normalization, sharding
from distrl.dqn import losses, replay
from distrl.envs import Env
from distrl.errors import require, require_divisible, require_positive
from distrl.networks import torso
from distrl.state import TrainState


@struct.dataclass
class Learner:
  params: Any
  target_params: Any
  opt_state: Any
  normalizer: normalization.Normalizer  # observation / return statistics (fields None when off)


@struct.dataclass
class Actors:
  """One row per environment."""

  env_state: Any
  obs: jax.Array  # (E, *obs_shape), raw
  key: jax.Array  # (E, 2) uint32: each environment's own random stream, from its global index
  replay: replay.Transition  # (E, capacity_per_env, ...), raw observations and rewards
  discounted_return: jax.Array | None  # (E,): the running return that scales rewards, if config.scale_rewards


@dataclasses.dataclass(frozen=True)
class Sizes:
  """Sizes derived from a config and the device count."""

  num_updates: int  # iterations in the whole run
  steps_per_update: int  # global environment steps per iteration
  num_steps: int  # steps each environment takes per iteration
  gradient_steps: int  # gradient steps per iteration
  capacity: int  # replay slots per environment
  batch_per_device: int


def sizes(config: ml_collections.ConfigDict, num_devices: int) -> Sizes:
  """Validates the config's sizes against the device count and derives the rest."""
  require_positive(config, "total_timesteps", "num_envs", "buffer_size", "batch_size", "lr", "train_frequency",
                   "target_update_interval", "exploration_steps", "max_grad_norm", "obs_clip", "reward_clip")
  require(0 < config.gamma <= 1, f"gamma={config.gamma} must be in (0, 1]")
  require(0 < config.tau <= 1, f"tau={config.tau} must be in (0, 1]")
  require(0 <= config.end_e <= config.start_e <= 1,
          f"epsilon must decay within [0, 1]: got start_e={config.start_e}, end_e={config.end_e}")
  require(config.learning_starts >= 0, f"learning_starts={config.learning_starts} must be >= 0")
  require(config.loss in ("mse", "huber"), f"loss={config.loss!r} must be 'mse' or 'huber'")
  for field in ("total_timesteps", "learning_starts", "target_update_interval", "exploration_steps"):
    require(config[field] < 2**31, f"{field}={config[field]} must be below 2**31 (environment steps are int32 "
                                   f"on the devices)")
  require_divisible("batch_size", config.batch_size, "the number of devices", num_devices,
                    "each device samples an equal share of every batch")
  if config.train_frequency >= config.num_envs:
    require_divisible("train_frequency", config.train_frequency, "num_envs", config.num_envs,
                      "an iteration is train_frequency / num_envs steps of every environment")
    num_steps, gradient_steps = config.train_frequency // config.num_envs, 1
  else:
    require_divisible("num_envs", config.num_envs, "train_frequency", config.train_frequency,
                      "an iteration is one step of every environment and num_envs / train_frequency gradient steps")
    num_steps, gradient_steps = 1, config.num_envs // config.train_frequency
  require_divisible("buffer_size", config.buffer_size, "num_envs", config.num_envs,
                    "each environment keeps buffer_size / num_envs slots")
  capacity = config.buffer_size // config.num_envs
  require_divisible("buffer_size / num_envs", capacity, "steps per environment per iteration", num_steps,
                    "pick a buffer_size that keeps whole iterations")
  require(config.batch_size <= config.buffer_size,
          f"batch_size={config.batch_size} is larger than buffer_size={config.buffer_size}")
  steps_per_update = config.num_envs * num_steps
  require(config.total_timesteps >= steps_per_update,
          f"total_timesteps={config.total_timesteps} is less than one iteration ({steps_per_update} steps)")
  return Sizes(num_updates=config.total_timesteps // steps_per_update, steps_per_update=steps_per_update,
               num_steps=num_steps, gradient_steps=gradient_steps, capacity=capacity,
               batch_per_device=config.batch_size // num_devices)


def network(config: ml_collections.ConfigDict, env: Env) -> nn.Module:
  """Q-values (..., num_actions) from observations (..., *obs_shape)."""
  return torso(config.torso, tuple(config.hidden_sizes), env.num_actions, head_scale=1.0,
               activation=config.activation, obs_ndim=len(env.observation_shape))


def optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr))


def epsilon(config: ml_collections.ConfigDict, env_steps: jax.Array) -> jax.Array:
  """Linear from start_e to end_e over the first `exploration_steps` environment steps, then flat."""
  return optax.linear_schedule(config.start_e, config.end_e, config.exploration_steps)(env_steps)


def init(key: jax.Array, *, config: ml_collections.ConfigDict, env: Env, sizes: Sizes) -> TrainState:
  """Parameters from `key`; environment i reset from fold_in(key, i) whatever device runs it."""
  param_key, env_key = jax.random.split(key)
  params = network(config, env).init(param_key, jnp.zeros(env.observation_shape))
  normalizer = normalization.init(env.observation_shape, normalize_obs=config.normalize_obs,
                                  scale_rewards=config.scale_rewards)
  obs, env_state, keys = envs.reset_batch(env, env_key, jnp.arange(config.num_envs))
  example = replay.Transition(obs=obs[0], action=jnp.int32(0), reward=jnp.float32(0), next_obs=obs[0],
                              terminated=jnp.bool_(False))
  return TrainState(update=jnp.zeros((), jnp.int32),
                    learner=Learner(params=params, target_params=params, opt_state=optimizer(config).init(params),
                                    normalizer=normalizer),
                    actors=Actors(env_state=env_state, obs=obs, key=keys,
                                  replay=replay.init(example, config.num_envs, sizes.capacity),
                                  discounted_return=normalization.initial_returns(normalizer, config.num_envs)))


def act(learner: Learner, obs: jax.Array, key: jax.Array, *, config, env: Env, greedy: bool) -> jax.Array:
  """Actions for a batch of observations (B, *obs_shape): argmax Q if `greedy`, else uniformly random."""
  q = network(config, env).apply(learner.params, normalization.observations(learner.normalizer, obs,
                                                                            clip=config.obs_clip))
  return jnp.argmax(q, -1) if greedy else jax.random.randint(key, q.shape[:-1], 0, q.shape[-1])


def gradient_step(net: nn.Module, tx: optax.GradientTransformation, config, learner: Learner,
                  batch: replay.Transition):
  """One gradient step on this device's share of a batch (B, ...); gradients averaged over devices.

  `batch` holds observations and rewards as the network and the targets take them (normalised, scaled).
  """

  def loss_fn(params):
    q_tm1 = net.apply(params, batch.obs)
    q_t_target = net.apply(learner.target_params, batch.next_obs)
    q_t_online = net.apply(params, batch.next_obs) if config.double_dqn else None
    y = losses.td_target(batch.reward, batch.terminated, q_t_target, q_t_online, gamma=config.gamma)
    return losses.q_loss(q_tm1, batch.action, y, loss=config.loss)

  (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(sharding.per_device(learner.params))
  grads, loss, q_mean = sharding.pmean((grads, loss, q_mean))
  updates, opt_state = tx.update(grads, learner.opt_state, learner.params)
  learner = learner.replace(params=optax.apply_updates(learner.params, updates), opt_state=opt_state)
  return learner, (loss, q_mean, optax.tree.norm(grads))


def epsilon_greedy(net: nn.Module, params, observe, eps: jax.Array, num_actions: int) -> acting.Policy:
  """The rollout policy: with probability `eps` a uniformly random action, else argmax Q."""

  def policy(obs, keys):
    greedy = jnp.argmax(net.apply(params, observe(obs)), -1)
    explore_key, random_key = jnp.unstack(jax.vmap(jax.random.split)(keys), axis=1)
    explore = jax.vmap(jax.random.uniform)(explore_key) < eps
    random_action = jax.vmap(lambda k: jax.random.randint(k, (), 0, num_actions))(random_key)
    return jnp.where(explore, random_action, greedy), None

  return policy


def update(state: TrainState, *, config: ml_collections.ConfigDict, env: Env, sizes: Sizes):
  """One DQN iteration on this device's environments. Returns (state, {name: (sum, count)})."""
  net, tx = network(config, env), optimizer(config)
  learner, actors = state.learner, state.actors
  normalizer = learner.normalizer
  observe = functools.partial(normalization.observations, normalizer, clip=config.obs_clip)
  steps_before = state.update * sizes.steps_per_update  # global environment steps so far
  steps_after = steps_before + sizes.steps_per_update
  eps = epsilon(config, steps_before)

  next_key, rollout_key, sample_key = jnp.unstack(jax.vmap(functools.partial(jax.random.split, num=3))(actors.key),
                                                  axis=1)
  policy = epsilon_greedy(net, learner.params, observe, eps, env.num_actions)
  env_state, obs, traj = acting.rollout(env, policy, actors.env_state, actors.obs, rollout_key, sizes.num_steps)
  normalizer, discounted_return = normalization.update_returns(normalizer, traj.reward, traj.episode_end,
                                                               actors.discounted_return, gamma=config.gamma)
  steps = replay.Transition(obs=traj.obs, action=traj.action, reward=traj.reward, next_obs=traj.final_obs,
                            terminated=traj.terminated)
  added = state.update * sizes.num_steps  # steps per environment before this iteration
  buffer = replay.add(actors.replay, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), steps), added)
  actors = actors.replace(env_state=env_state, obs=obs, key=next_key, replay=buffer,
                          discounted_return=discounted_return)
  filled = jnp.minimum(added + sizes.num_steps, sizes.capacity)

  def prepared(batch: replay.Transition) -> replay.Transition:  # as the network and the targets take them
    return batch.replace(obs=observe(batch.obs), next_obs=observe(batch.next_obs),
                         reward=normalization.rewards(normalizer, batch.reward, clip=config.reward_clip))

  def train(learner: Learner):
    def one(learner, key):
      batch = replay.sample(buffer, key, sizes.batch_per_device, filled)
      return gradient_step(net, tx, config, learner, prepared(batch))

    learner, stats = jax.lax.scan(one, learner, jax.random.split(sample_key[0], sizes.gradient_steps))
    return learner, (*jax.tree.map(jnp.mean, stats), jnp.float32(1))  # sampling follows the first local env

  def skip(learner: Learner):
    return learner, (jnp.float32(0), jnp.float32(0), jnp.float32(0), jnp.float32(0))

  learning = steps_after > config.learning_starts
  learner, (loss, q_mean, grad_norm, trained) = jax.lax.cond(learning, train, skip, learner)

  # The target network moves when this iteration crosses a multiple of target_update_interval.
  crossed = steps_after // config.target_update_interval > steps_before // config.target_update_interval
  tau = jnp.where(crossed & learning, config.tau, 0.0)
  target = optax.incremental_update(learner.params, learner.target_params, tau)
  # The observations of this iteration join the statistics for the next one.
  learner = learner.replace(target_params=target, normalizer=normalization.update_observations(normalizer, traj.obs))

  metrics = {
      **acting.episode_metrics(traj),
      "loss/total": (loss * trained, trained),
      "dqn/q_mean": (q_mean * trained, trained),
      "opt/grad_norm": (grad_norm * trained, trained),
      "dqn/epsilon": (eps, jnp.float32(1)),
      "opt/lr": (jnp.float32(config.lr), jnp.float32(1)),
  }
  return state.replace(learner=learner, actors=actors), metrics
