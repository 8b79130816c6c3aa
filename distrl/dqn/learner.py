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

from distrl import envs, sharding
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


@struct.dataclass
class Actors:
  """One row per environment."""

  env_state: Any
  obs: jax.Array  # (E, *obs_shape)
  key: jax.Array  # (E, 2) uint32: each environment's own random stream, from its global index
  replay: replay.Transition  # (E, capacity_per_env, ...)


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
                   "target_update_interval", "exploration_steps", "max_grad_norm")
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


def init(config: ml_collections.ConfigDict, env: Env, key: jax.Array) -> TrainState:
  """Parameters from `key`; environment i reset from fold_in(key, i) whatever device runs it."""
  param_key, env_key = jax.random.split(key)
  params = network(config, env).init(param_key, jnp.zeros(env.observation_shape))
  obs, env_state, keys = envs.reset_batch(env, env_key, jnp.arange(config.num_envs))
  example = replay.Transition(obs=obs[0], action=jnp.int32(0), reward=jnp.float32(0), next_obs=obs[0],
                              terminated=jnp.bool_(False))
  capacity = config.buffer_size // config.num_envs
  return TrainState(update=jnp.zeros((), jnp.int32),
                    learner=Learner(params=params, target_params=params, opt_state=optimizer(config).init(params)),
                    actors=Actors(env_state=env_state, obs=obs, key=keys,
                                  replay=replay.init(example, config.num_envs, capacity)))


def act(params, obs: jax.Array, key: jax.Array, *, config, env: Env, greedy: bool) -> jax.Array:
  """Actions for a batch of observations (B, *obs_shape): argmax Q if `greedy`, else uniformly random."""
  q = network(config, env).apply(params, obs)
  return jnp.argmax(q, -1) if greedy else jax.random.randint(key, q.shape[:-1], 0, q.shape[-1])


def gradient_step(net: nn.Module, tx: optax.GradientTransformation, config, learner: Learner,
                  batch: replay.Transition):
  """One gradient step on this device's share of a batch (B, ...); gradients averaged over devices."""

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


def _rollout(net: nn.Module, env: Env, params, actors: Actors, eps: jax.Array, act_keys, step_keys):
  """`num_steps` epsilon-greedy steps of every local environment; keys (T, E, 2) -> (actors, (T, E) steps, ends)."""

  def step(carry: Actors, keys):
    act_key, step_key = keys
    greedy = jnp.argmax(net.apply(params, carry.obs), -1)
    explore_key, random_key = jnp.unstack(jax.vmap(jax.random.split)(act_key), axis=1)
    explore = jax.vmap(jax.random.uniform)(explore_key) < eps
    random_action = jax.vmap(lambda k: jax.random.randint(k, (), 0, env.num_actions))(random_key)
    action = jnp.where(explore, random_action, greedy)
    obs, env_state, reward, terminated, _, info = jax.vmap(env.step)(step_key, carry.env_state, action)
    transition = replay.Transition(obs=carry.obs, action=action, reward=reward,
                                   next_obs=info["final_observation"], terminated=terminated)
    episode = (info["returned_episode"], info["returned_episode_returns"], info["returned_episode_lengths"])
    return carry.replace(env_state=env_state, obs=obs), (transition, episode)

  return jax.lax.scan(step, actors, (act_keys, step_keys))


def update(state: TrainState, *, config: ml_collections.ConfigDict, env: Env):
  """One DQN iteration on this device's environments. Returns (state, {name: (sum, count)})."""
  num_devices = config.num_envs // state.actors.obs.shape[0]
  size = sizes(config, num_devices)
  net, tx = network(config, env), optimizer(config)
  learner, actors = state.learner, state.actors
  steps_before = state.update * size.steps_per_update  # global environment steps so far
  steps_after = steps_before + size.steps_per_update
  eps = epsilon(config, steps_before)

  keys = jax.vmap(functools.partial(jax.random.split, num=2 + 2 * size.num_steps))(actors.key)
  keys = jnp.swapaxes(keys, 0, 1)  # (2 + 2T, E, 2)
  next_key, sample_key = keys[0], keys[1][0]  # sampling follows this device's first environment
  act_keys, step_keys = keys[2:2 + size.num_steps], keys[2 + size.num_steps:]

  actors, (steps, (ends, returns, lengths)) = _rollout(net, env, learner.params, actors, eps, act_keys, step_keys)
  added = state.update * size.num_steps  # steps per environment before this iteration
  buffer = replay.add(actors.replay, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), steps), added)
  actors = actors.replace(key=next_key, replay=buffer)
  filled = jnp.minimum(added + size.num_steps, size.capacity)

  def train(learner: Learner):
    def one(learner, key):
      batch = replay.sample(buffer, key, size.batch_per_device, filled)
      return gradient_step(net, tx, config, learner, batch)

    learner, stats = jax.lax.scan(one, learner, jax.random.split(sample_key, size.gradient_steps))
    return learner, (*jax.tree.map(jnp.mean, stats), jnp.float32(1))

  def skip(learner: Learner):
    return learner, (jnp.float32(0), jnp.float32(0), jnp.float32(0), jnp.float32(0))

  learning = steps_after > config.learning_starts
  learner, (loss, q_mean, grad_norm, trained) = jax.lax.cond(learning, train, skip, learner)

  # The target network moves when this iteration crosses a multiple of target_update_interval.
  crossed = steps_after // config.target_update_interval > steps_before // config.target_update_interval
  tau = jnp.where(crossed & learning, config.tau, 0.0)
  target = optax.incremental_update(learner.params, learner.target_params, tau)
  learner = learner.replace(target_params=target)

  ends = ends.astype(jnp.float32)
  episodes, return_sum, length_sum = sharding.psum((jnp.sum(ends), jnp.sum(returns * ends), jnp.sum(lengths * ends)))
  metrics = {
      "train/episode_return": (return_sum, episodes),
      "train/episode_length": (length_sum, episodes),
      "loss/total": (loss * trained, trained),
      "dqn/q_mean": (q_mean * trained, trained),
      "opt/grad_norm": (grad_norm * trained, trained),
      "dqn/epsilon": (eps, jnp.float32(1)),
      "opt/lr": (jnp.float32(config.lr), jnp.float32(1)),
  }
  return state.replace(learner=learner, actors=actors), metrics
