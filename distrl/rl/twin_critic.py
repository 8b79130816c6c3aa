"""What SAC and TD3 share: a continuous actor and a twin critic learning off-policy from the shared replay.

Both keep a twin critic Q_1, Q_2 with Polyak-averaged targets and bootstrap from the smaller target value
(clipped double Q, Fujimoto et al. 2018; `distrl.rl.returns.clipped_double_q_target`):
    y = G + discount * (min_i Q_i'(s', a') - alpha log pi(a' | s'))
with a' the next action each draws (SAC: sampled from its policy, with its entropy bonus; TD3: its target actor's
action plus clipped noise, alpha = 0), G and discount the n-step return and bootstrap discount of
`distrl.rl.replay_learner`, which they share with DQN (sizes, replay rows, batches the same on any device count).

Actions: the networks work in [-1, 1]^d; `Bounds` scales them to the environment's box for stepping and back for
the replay's. Before `learning_starts` environment steps, the actors act uniformly at random over the box.

An algorithm here is an `Agent`: its actor network, how it explores, and its gradient step (`update` runs the rest).
"""

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct

from distrl import sharding
from distrl.envs import Env
from distrl.errors import ConfigError, require, require_positive
from distrl.rl import acting, networks, normalization, replay_learner, returns
from distrl.rl.state import TrainState, apply_gradients


@struct.dataclass
class Trained:
  """Parameters and the state of their optimizer (`apply_gradients` steps them)."""

  params: Any
  opt_state: Any


@struct.dataclass
class Learner:
  actor: Trained
  critic: Trained  # the twin critic
  target_critic: Any
  target_actor: Any  # TD3's (its targets bootstrap with it); None for SAC
  temperature: Trained | None  # SAC's log alpha, learned toward the target entropy; None for TD3
  normalizer: normalization.Normalizer  # observation / return statistics (fields None when off)
  key: jax.Array  # (2,) uint32, the same on every device: which transitions each batch takes, and its noise


@dataclasses.dataclass(frozen=True)
class Bounds:
  """The environment's action box: `scale` maps [-1, 1]^d onto it, `unscale` back."""

  low: np.ndarray
  high: np.ndarray

  @classmethod
  def of(cls, env: Env, algo: str) -> "Bounds":
    if env.discrete:
      raise ConfigError(f"{algo} needs continuous actions; {env.name} has {env.action_space.n} discrete actions "
                        f"(train it with ppo, dqn or pqn)")
    space = env.action_space
    low, high = (np.broadcast_to(np.asarray(x, np.float32), (env.action_dim,)) for x in (space.low, space.high))
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
      raise ConfigError(f"{algo} squashes actions into the action space's bounds; {env.name}'s are "
                        f"[{low.tolist()}, {high.tolist()}], not a finite box")
    return cls(low=low, high=high)

  def scale(self, action: jax.Array) -> jax.Array:
    return self.low + 0.5 * (action + 1.0) * (self.high - self.low)

  def unscale(self, action: jax.Array) -> jax.Array:
    return 2.0 * (action - self.low) / (self.high - self.low) - 1.0


@dataclasses.dataclass(frozen=True)
class Agent:
  """What SAC and TD3 do differently.

  explore(actor_output, noise (E, d), *, config) -> actions in [-1, 1] for the rollout.
  greedy(actor_output) -> the deterministic action in [-1, 1].
  gradient_step(nets, learner, batch, noise (B, d), index, *, config) -> (learner, {name: (sum, count)}): one step on
    this device's slice of a batch (observations normalised, actions in [-1, 1]); `noise` is this slice of standard
    normal noise drawn for the global batch, `index` the gradient step's number in the run.
  """

  name: str
  stochastic: bool  # the actor returns a TanhNormal (else a deterministic action)
  explore: Callable
  greedy: Callable
  gradient_step: Callable
  temperature: bool = False  # learns a log alpha (SAC)
  target_actor: bool = False  # keeps a target actor (TD3)
  noise_draws: int = 1  # standard normal draws (B, d) per gradient step


@dataclasses.dataclass(frozen=True)
class Nets:
  actor: nn.Module
  critic: nn.Module
  actor_tx: optax.GradientTransformation
  critic_tx: optax.GradientTransformation
  temperature_tx: optax.GradientTransformation  # SAC's log alpha's, at the actor's step size


def nets(config: ml_collections.ConfigDict, env: Env, agent: Agent) -> Nets:
  obs_ndim = len(env.observation_shape)
  return Nets(actor=networks.ContinuousActor(env.action_dim, tuple(config.hidden_sizes), agent.stochastic,
                                             config.activation, obs_ndim),
              critic=networks.TwinCritic(tuple(config.hidden_sizes), config.activation, obs_ndim,
                                         config.critic_layer_norm),
              actor_tx=optax.adam(config.actor_lr), critic_tx=optax.adam(config.critic_lr),
              temperature_tx=optax.adam(config.actor_lr))


def sizes(config: ml_collections.ConfigDict, num_devices: int) -> replay_learner.Sizes:
  require_positive(config, "actor_lr", "critic_lr")
  require(isinstance(config.critic_layer_norm, bool),
          f"critic_layer_norm={config.critic_layer_norm!r} must be True or False")
  require(config.total_timesteps < 2**31, f"total_timesteps={config.total_timesteps} must be below 2**31 "
                                          f"(environment steps are int32 on the devices)")
  return replay_learner.sizes(config, num_devices)


def init(key: jax.Array, *, config: ml_collections.ConfigDict, env: Env, sizes: replay_learner.Sizes,
         agent: Agent) -> TrainState:
  """Parameters from `key`; environment i reset from fold_in(key, i) whatever device runs it."""
  bounds = Bounds.of(env, agent.name)
  n = nets(config, env, agent)
  actor_key, critic_key, env_key, sample_key = jax.random.split(key, 4)
  obs, action = jnp.zeros(env.observation_shape), jnp.zeros(bounds.low.shape)
  actor, critic = n.actor.init(actor_key, obs), n.critic.init(critic_key, obs, action)
  temperature = None
  if agent.temperature:
    log_alpha = jnp.log(jnp.float32(config.initial_alpha))
    temperature = Trained(log_alpha, n.temperature_tx.init(log_alpha))
  normalizer = normalization.init(env.observation_shape, normalize_obs=config.normalize_obs,
                                  scale_rewards=config.scale_rewards)
  learner = Learner(actor=Trained(actor, n.actor_tx.init(actor)), critic=Trained(critic, n.critic_tx.init(critic)),
                    target_critic=critic, target_actor=actor if agent.target_actor else None,
                    temperature=temperature, normalizer=normalizer, key=sample_key)
  actors = replay_learner.init_actors(env, env_key, action, config=config, sizes=sizes, normalizer=normalizer)
  return TrainState(update=jnp.zeros((), jnp.int32), learner=learner, actors=actors)


def act(learner: Learner, obs: jax.Array, key: jax.Array | None, *, config, env: Env, greedy: bool,
        agent: Agent) -> jax.Array:
  """Actions in the environment's box for observations (B, *obs_shape): the deterministic action if `greedy`
  (SAC: tanh of the mean; TD3: the actor's), else as the rollout explores."""
  out = nets(config, env, agent).actor.apply(learner.actor.params, normalization.observations(
      learner.normalizer, obs, clip=config.obs_clip))
  bounds = Bounds.of(env, agent.name)
  if greedy:
    return bounds.scale(agent.greedy(out))
  return bounds.scale(agent.explore(out, jax.random.normal(key, obs.shape[:1] + bounds.low.shape), config=config))


def critic_loss(q, y):
  """0.5 * sum_i mean_b (Q_i(s_b, a_b) - y_b)^2 of the twin values q (B, 2) against targets y (B,)."""
  return 0.5 * jnp.sum(jnp.mean(jnp.square(q - y[:, None]), axis=0))


def critic_step(nets: Nets, learner: Learner, batch: replay_learner.Batch, next_action: jax.Array,
                next_log_prob=None, alpha=0.0):
  """One step of the twin critic toward `returns.clipped_double_q_target` at `next_action` (this device's slice;
  gradients averaged over devices). -> (learner, {name: (sum, count)})."""
  next_q = nets.critic.apply(learner.target_critic, batch.next_obs, next_action)
  y = returns.clipped_double_q_target(batch.n_step_return, batch.discount, next_q, next_log_prob, alpha)

  def loss_fn(params):
    q = nets.critic.apply(params, batch.obs, batch.action)
    return critic_loss(q, y), jnp.mean(q)

  with jax.named_scope("critic"):
    (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(sharding.per_device(learner.critic.params))
    grads, loss, q_mean = sharding.pmean((grads, loss, q_mean))
  critic = apply_gradients(nets.critic_tx, learner.critic, grads)
  return learner.replace(critic=critic), {"loss/critic": once(loss), "q/mean": once(q_mean),
                                          "opt/critic_grad_norm": once(optax.tree.norm(grads))}


def actor_step(nets: Nets, learner: Learner, loss_fn: Callable):
  """One step of the actor on `loss_fn(params) -> (loss, aux)` (gradients averaged over devices).
  -> (learner, loss averaged over devices, this device's aux, gradient norm)."""
  with jax.named_scope("actor"):
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(sharding.per_device(learner.actor.params))
    grads, loss = sharding.pmean((grads, loss))
  return learner.replace(actor=apply_gradients(nets.actor_tx, learner.actor, grads)), loss, aux, optax.tree.norm(grads)


def once(value: jax.Array):
  """A gradient step's statistic as (sum, count) of one."""
  return value, jnp.float32(1)


def update(state: TrainState, *, config: ml_collections.ConfigDict, env: Env, sizes: replay_learner.Sizes,
           agent: Agent):
  """One iteration on this device's environments: explore into the replay rows, then `gradient_steps` steps of
  `agent.gradient_step`. Returns (state, {name: (sum, count)})."""
  n, bounds, learner = nets(config, env, agent), Bounds.of(env, agent.name), state.learner
  observe = functools.partial(normalization.observations, learner.normalizer, clip=config.obs_clip)
  at = replay_learner.progress(state.update, config=config, sizes=sizes)
  warming_up = at.steps_before < config.learning_starts
  dim = bounds.low.shape

  def draws(key):  # one environment's: exploration noise, and a uniformly random action
    noise_key, random_key = jax.random.split(key)
    return jax.random.normal(noise_key, dim), jax.random.uniform(random_key, dim, minval=-1.0, maxval=1.0)

  def policy(obs, keys):
    noise, random_action = jax.vmap(draws)(keys)
    action = agent.explore(n.actor.apply(learner.actor.params, observe(obs)), noise, config=config)
    return bounds.scale(jnp.where(warming_up, random_action, action)), ()

  collected = replay_learner.collect(state.actors, learner.normalizer, policy, at.added, config=config, sizes=sizes,
                                     env=env)
  buffer, normalizer = collected.actors.replay, collected.normalizer
  first_index = replay_learner.gradient_steps_so_far(state.update, sizes)

  def one(learner, step):
    index, key = step
    draw_key, noise_key = jax.random.split(key)
    with jax.named_scope("sampling"):
      row, owned, slot = replay_learner.uniform_positions(draw_key, buffer, at.where, config=config, sizes=sizes)
      batch = replay_learner.read(buffer, row, owned, slot, config=config, normalizer=normalizer)
      batch = replay_learner.mine(batch, sizes)
      batch = batch.replace(obs=observe(batch.obs), next_obs=observe(batch.next_obs),
                            action=bounds.unscale(batch.action))
      noise = jax.random.normal(noise_key, (agent.noise_draws, config.batch_size) + dim)
      noise = replay_learner.mine(jnp.swapaxes(noise, 0, 1), sizes)  # (b, draws, d): this device's samples
    return agent.gradient_step(n, learner, batch, jnp.swapaxes(noise, 0, 1), first_index + index, config=config)

  learner_key, sample_key = jax.random.split(learner.key)
  learner, stats, trained = replay_learner.gated_steps(at.learning, one, learner, sample_key, sizes=sizes)
  learner = learner.replace(key=learner_key,
                            normalizer=normalization.update_observations(normalizer, collected.steps.obs))
  metrics = {**acting.episode_metrics(collected.steps),
             **{name: (total * trained, count * trained) for name, (total, count) in stats.items()}}
  return state.replace(learner=learner, actors=collected.actors), metrics


def polyak(online, target, tau: float):
  """target <- tau * online + (1 - tau) * target."""
  with jax.named_scope("target"):
    return optax.incremental_update(online, target, tau)
