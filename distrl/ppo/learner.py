"""PPO (Schulman et al. 2017), discrete or continuous actions: `sizes`, `init`, the per-device `update`, `act`.

Discrete actions come from a categorical policy; continuous ones (a Box action space) from a
Gaussian with a state-independent log-std, sampled unclipped (the log-probabilities are those of
the sampled action) and clipped to the action space's bounds only where they enter the environment.

`update` is written for one device's shard of the environments; `sharding.pmean` over the
devices is the only place devices show through. Minibatches are stratified by environment:
each minibatch holds `num_steps / num_minibatches` shuffled time steps of *every*
environment, with each environment shuffling its own time steps from its own key. The union
of the devices' local minibatches is then exactly the global minibatch, so a sharded update
equals the unsharded one on the same global batch, whatever the device count.
"""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from distrl import envs, sharding
from distrl.envs import Env
from distrl.errors import require, require_divisible, require_positive
from distrl.networks import ActorCritic
from distrl.ppo import losses
from distrl.state import TrainState


@struct.dataclass
class Learner:
  params: Any
  opt_state: Any


@struct.dataclass
class Actors:
  """One row per environment."""

  env_state: Any
  obs: jax.Array  # (E, *obs_shape): the observation each environment will act on next
  key: jax.Array  # (E, 2) uint32: each environment's own random stream, from its global index


@struct.dataclass
class Transition:
  """One rollout step of every local environment; leaves shaped (E, ...), stacked to (T, E, ...)."""

  obs: jax.Array
  action: jax.Array
  log_prob: jax.Array
  reward: jax.Array
  terminated: jax.Array  # the step reached a terminal state: no bootstrap
  episode_end: jax.Array  # terminated or truncated: the environment reset after this step
  final_obs: jax.Array  # the observation the step reached, before any reset
  episode_return: jax.Array  # return of the episode that ended here (valid where episode_end)
  episode_length: jax.Array


@struct.dataclass
class Batch:
  """What the loss needs of each sample; leaves shaped (T, E, ...) or (B, ...)."""

  obs: jax.Array
  action: jax.Array
  log_prob: jax.Array
  value: jax.Array
  advantage: jax.Array
  target: jax.Array


@dataclasses.dataclass(frozen=True)
class Sizes:
  """Sizes derived from a config and the device count."""

  num_updates: int  # training iterations in the whole run
  steps_per_update: int  # global environment steps per iteration
  envs_per_device: int
  minibatch_size: int  # global samples per gradient step


def sizes(config: ml_collections.ConfigDict, num_devices: int) -> Sizes:
  """Validates the config's sizes against the device count and derives the rest."""
  require_positive(config, "total_timesteps", "num_envs", "num_steps", "update_epochs", "num_minibatches",
                   "lr", "max_grad_norm")
  require(0 < config.gamma <= 1, f"gamma={config.gamma} must be in (0, 1]")
  require(0 <= config.gae_lambda <= 1, f"gae_lambda={config.gae_lambda} must be in [0, 1]")
  require(config.clip_eps > 0, f"clip_eps={config.clip_eps} must be positive")
  require_divisible("num_steps", config.num_steps, "num_minibatches", config.num_minibatches,
                    "each minibatch takes num_steps/num_minibatches steps of every environment; "
                    "pick num_minibatches that divides num_steps")
  steps_per_update = config.num_envs * config.num_steps
  require(config.total_timesteps >= steps_per_update,
          f"total_timesteps={config.total_timesteps} is less than one iteration "
          f"(num_envs * num_steps = {steps_per_update})")
  return Sizes(num_updates=config.total_timesteps // steps_per_update, steps_per_update=steps_per_update,
               envs_per_device=config.num_envs // num_devices,
               minibatch_size=steps_per_update // config.num_minibatches)


def network(config: ml_collections.ConfigDict, env: Env) -> ActorCritic:
  return ActorCritic(num_actions=env.num_actions if env.discrete else env.action_dim,
                     hidden_sizes=tuple(config.hidden_sizes), activation=config.activation,
                     obs_ndim=len(env.observation_shape), torso=config.torso, continuous=not env.discrete)


def learning_rate(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Constant, or linear from `lr` to 0 over every gradient step of the run if `anneal_lr`."""
  if not config.anneal_lr:
    return optax.constant_schedule(config.lr)
  num_updates = config.total_timesteps // (config.num_envs * config.num_steps)
  return optax.linear_schedule(config.lr, 0.0, num_updates * config.update_epochs * config.num_minibatches)


def optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                     optax.adam(learning_rate(config), eps=1e-5))


def init(config: ml_collections.ConfigDict, env: Env, key: jax.Array) -> TrainState:
  """Parameters from `key`; environment i reset from fold_in(key, i) whatever device runs it."""
  param_key, env_key = jax.random.split(key)
  params = network(config, env).init(param_key, jnp.zeros(env.observation_shape))
  obs, env_state, keys = envs.reset_batch(env, env_key, jnp.arange(config.num_envs))
  return TrainState(update=jnp.zeros((), jnp.int32),
                    learner=Learner(params=params, opt_state=optimizer(config).init(params)),
                    actors=Actors(env_state=env_state, obs=obs, key=keys))


def act(params, obs: jax.Array, key: jax.Array, *, config, env: Env, greedy: bool) -> jax.Array:
  """Actions for a batch of observations (B, *obs_shape), ready for the environment: sampled, or
  the policy's mode (argmax, or the Gaussian's mean) if `greedy`."""
  policy = network(config, env).apply(params, obs, method=ActorCritic.policy)
  return env.clip(policy.mode() if greedy else policy.sample(key))


def _rollout(net: ActorCritic, env: Env, params, actors: Actors, act_keys, step_keys):
  """`num_steps` steps of every local environment; keys shaped (T, E, 2). -> (actors, (T, E) Transition)."""

  def step(carry: Actors, keys):
    act_key, step_key = keys
    policy = net.apply(params, carry.obs, method=ActorCritic.policy)
    action = jax.vmap(lambda key, policy: policy.sample(key))(act_key, policy)  # each env from its own key
    log_prob = policy.log_prob(action)
    obs, env_state, reward, terminated, _, info = jax.vmap(env.step)(step_key, carry.env_state, env.clip(action))
    transition = Transition(obs=carry.obs, action=action, log_prob=log_prob, reward=reward,
                            terminated=terminated, episode_end=info["returned_episode"],
                            final_obs=info["final_observation"],
                            episode_return=info["returned_episode_returns"],
                            episode_length=info["returned_episode_lengths"])
    return carry.replace(env_state=env_state, obs=obs), transition

  return jax.lax.scan(step, actors, (act_keys, step_keys))


def _minibatch_step(net: ActorCritic, tx: optax.GradientTransformation, config, learner: Learner, inputs):
  """One gradient step on a local minibatch (B, ...); gradients are averaged over devices.

  `inputs` is (batch, advantage_mean, advantage_std), the statistics being those of the global minibatch.
  """
  batch, advantage_mean, advantage_std = inputs
  advantage = batch.advantage
  if config.norm_adv:
    advantage = (advantage - advantage_mean) / (advantage_std + 1e-8)

  def loss_fn(params):
    policy, value = net.apply(params, batch.obs)
    terms = losses.ppo_loss(policy.log_prob(batch.action), batch.log_prob, advantage, value, batch.value, batch.target, policy.entropy(),
                            clip_eps=config.clip_eps, vf_coef=config.vf_coef, ent_coef=config.ent_coef,
                            clip_value_loss=config.clip_value_loss)
    return terms.total, terms

  grads, terms = jax.grad(loss_fn, has_aux=True)(sharding.per_device(learner.params))
  grads, terms = sharding.pmean((grads, terms))
  updates, opt_state = tx.update(grads, learner.opt_state, learner.params)
  learner = Learner(params=optax.apply_updates(learner.params, updates), opt_state=opt_state)
  return learner, (terms, optax.tree.norm(grads))


def update(state: TrainState, *, config: ml_collections.ConfigDict, env: Env):
  """One PPO iteration on this device's environments: rollout, GAE, epochs of minibatch steps.

  Returns the new state and metrics as {name: (sum, count)}, identical on every device.
  """
  net, tx = network(config, env), optimizer(config)
  params, actors = state.learner.params, state.actors
  num_steps, epochs, num_minibatches = config.num_steps, config.update_epochs, config.num_minibatches
  num_envs = actors.obs.shape[0]  # this device's share

  keys = jax.vmap(functools.partial(jax.random.split, num=1 + 2 * num_steps + epochs))(actors.key)
  keys = jnp.swapaxes(keys, 0, 1)  # (1 + 2T + epochs, E, 2)
  next_key, act_keys = keys[0], keys[1:1 + num_steps]
  step_keys, shuffle_keys = keys[1 + num_steps:1 + 2 * num_steps], keys[1 + 2 * num_steps:]

  actors, traj = _rollout(net, env, params, actors, act_keys, step_keys)
  actors = actors.replace(key=next_key)

  # The critic once over the whole rollout: V(s_t), and V(s_{t+1}) from the pre-reset observations.
  value_fn = functools.partial(net.apply, params, method=ActorCritic.value)
  value, value_tp1 = value_fn(traj.obs), value_fn(traj.final_obs)
  advantage = losses.gae(traj.reward, value, value_tp1, traj.terminated, traj.episode_end,
                         gamma=config.gamma, gae_lambda=config.gae_lambda)
  batch = Batch(obs=traj.obs, action=traj.action, log_prob=traj.log_prob, value=value,
                advantage=advantage, target=advantage + value)

  # Each environment shuffles its own time steps each epoch: (epochs, E, T).
  order = jax.vmap(jax.vmap(jax.random.permutation, in_axes=(0, None)), in_axes=(0, None))(shuffle_keys, num_steps)

  def minibatches(x, order):  # (T, E, ...) -> (M, T/M * E, ...) in one environment-stratified order
    x = x[order.T, jnp.arange(num_envs)]
    return x.reshape((num_minibatches, -1) + x.shape[2:])

  # Advantage statistics of every global minibatch of every epoch, in one all-reduce.
  minibatch_advantage = jax.vmap(minibatches, in_axes=(None, 0))(advantage, order)  # (epochs, M, B)
  adv_mean, adv_square = sharding.pmean((jnp.mean(minibatch_advantage, -1),
                                         jnp.mean(jnp.square(minibatch_advantage), -1)))
  adv_std = jnp.sqrt(jnp.maximum(adv_square - jnp.square(adv_mean), 0.0))

  def epoch(learner: Learner, inputs):
    order, adv_mean, adv_std = inputs
    step = functools.partial(_minibatch_step, net, tx, config)
    return jax.lax.scan(step, learner, (jax.tree.map(lambda x: minibatches(x, order), batch), adv_mean, adv_std))

  learner, (terms, grad_norm) = jax.lax.scan(epoch, state.learner, (order, adv_mean, adv_std))

  ends = traj.episode_end.astype(jnp.float32)
  episodes, return_sum, length_sum = sharding.psum(
      (jnp.sum(ends), jnp.sum(traj.episode_return * ends), jnp.sum(traj.episode_length * ends)))
  gradient_steps = state.update * epochs * num_minibatches
  mean = lambda x: (jnp.mean(x), jnp.float32(1))  # terms are pmean-ed already: same on every device
  metrics = {
      "train/episode_return": (return_sum, episodes),
      "train/episode_length": (length_sum, episodes),
      "loss/total": mean(terms.total),
      "loss/policy": mean(terms.policy),
      "loss/value": mean(terms.value),
      "loss/entropy": mean(terms.entropy),
      "ppo/approx_kl": mean(terms.approx_kl),
      "ppo/clip_fraction": mean(terms.clip_fraction),
      "opt/grad_norm": mean(grad_norm),
      "opt/lr": mean(learning_rate(config)(gradient_steps)),
  }
  return state.replace(learner=learner, actors=actors), metrics
