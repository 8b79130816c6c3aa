"""An actor-critic trained on each fresh rollout, its advantages and loss an `Objective`: `init`, the per-device
`update` (and its halves, `behaviour` and `learn`), `act`. PPO (`distrl.ppo`) and IMPALA (`distrl.impala`) are
this iteration with their own objectives, bound with `functools.partial(update, objective=...)`.

Discrete actions come from a categorical policy, restricted to the allowed actions where the
environment has an action mask (`Env.action_mask`); continuous ones (a Box action space) from a
Gaussian with a state-independent log-std, sampled unclipped (the log-probabilities are those of
the sampled action) and clipped to the action space's bounds only where they enter the environment.

`update` is written for one device's shard of the environments; `sharding.pmean` over the
devices is the only place devices show through. Minibatches are stratified by environment:
each minibatch holds `num_steps / num_minibatches` shuffled time steps of *every*
environment, with each environment shuffling its own time steps from its own key. The union
of the devices' local minibatches is then exactly the global minibatch, so a sharded update
equals the unsharded one on the same global batch, whatever the device count.

With a recurrent core (`config.recurrent`, `distrl.rl.recurrent`), the torso feeds a GRU or LSTM
whose output feeds both heads; acting records each step's log-probability and value, and the loss
replays whole environments' sequences from the memory they had at the rollout's start.
"""

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from distrl import sharding
from distrl.envs import Env
from distrl.rl import acting, networks, normalization, recurrent, rollout_learner
from distrl.rl.actor_critic_loss import Losses
from distrl.rl.networks import ActorCritic
from distrl.rl.rollout_learner import Learner
from distrl.rl.state import TrainState, apply_gradients


@struct.dataclass
class Batch:
  """What the loss needs of each sample; leaves shaped (T, E, ...) or (B, ...)."""

  obs: jax.Array  # as the networks see it (normalised if config.normalize_obs)
  action: jax.Array
  log_prob: jax.Array
  value: jax.Array
  advantage: jax.Array
  target: jax.Array
  action_mask: jax.Array | None  # the allowed actions (..., num_actions), or None if the environment has no mask
  episode_end: jax.Array | None = None  # (T, E): where acting reset the memory, if config.recurrent
  start: Any = None  # (E, ...): each environment's memory at the rollout's start, if config.recurrent


@struct.dataclass
class Minibatch:
  """One gradient step's local samples (B, ...), and its advantages' mean and std over the global minibatch."""

  batch: Batch
  adv_mean: jax.Array
  adv_std: jax.Array


Sizes = rollout_learner.Sizes


@dataclasses.dataclass(frozen=True)
class Objective:
  """What an actor-critic learning from rollouts this way chooses: its advantages and value targets, and its loss."""

  name: str  # the prefix of its own metrics (approx_kl, clip_fraction)
  # (reward, value, value_tp1, steps, log_rho, config) -> (advantage, target), each (T, E); `log_rho()` gives the
  # log-ratio (T, E) of the current policy over the one that acted, computed only if called.
  targets: Callable[..., tuple[jax.Array, jax.Array]]
  # (distribution, value, batch: Batch, advantage (normalised if norm_adv), config) -> Losses
  loss: Callable[..., Losses]


def network(config: ml_collections.ConfigDict, env: Env) -> ActorCritic | recurrent.Recurrent:
  """Separate policy and value networks, or one torso feeding both heads (`config.shared_torso`); with
  `config.recurrent`, one torso and core feeding both heads."""
  num_actions = env.num_actions if env.discrete else env.action_dim
  if config.recurrent:
    features = networks.torso(config.torso, tuple(config.hidden_sizes), None, 1.0, config.activation,
                              len(env.observation_shape))
    return recurrent.Recurrent(torso=features, cell=config.recurrent, size=config.recurrent_size,
                               head=networks.PolicyValueHead(num_actions, continuous=not env.discrete))
  return ActorCritic(num_actions=num_actions, hidden_sizes=tuple(config.hidden_sizes), activation=config.activation,
                     obs_ndim=len(env.observation_shape), torso=config.torso, continuous=not env.discrete,
                     shared_torso=config.shared_torso)


def masked(distribution, action_mask: jax.Array | None):
  """`distribution` restricted to `action_mask`'s actions if there is one."""
  return distribution if action_mask is None else distribution.masked(action_mask)


def policy(net: ActorCritic, params, obs: jax.Array, action_mask: jax.Array | None):
  """The policy's distribution on (normalised) observations, restricted to `action_mask`'s actions if there is one."""
  return masked(net.apply(params, obs, method=ActorCritic.policy), action_mask)


def initial_memory(num: int, *, config: ml_collections.ConfigDict, env: Env):
  """The memory `act` starts `num` actors from (zeros), or None without a recurrent core."""
  return recurrent.initial(config, num)


def learning_rate(config: ml_collections.ConfigDict, sizes: Sizes) -> optax.Schedule:
  return rollout_learner.learning_rate(config, sizes.gradient_steps)


def optimizer(config: ml_collections.ConfigDict, sizes: Sizes) -> optax.GradientTransformation:
  return optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                     optax.adam(learning_rate(config, sizes), eps=1e-5))


def init(key: jax.Array, *, config: ml_collections.ConfigDict, env: Env, sizes: Sizes) -> TrainState:
  """Parameters from `key`; environment i reset from fold_in(key, i) whatever device runs it."""
  return rollout_learner.init(key, config=config, env=env, network=network(config, env),
                              optimizer=optimizer(config, sizes))


def act(learner: Learner, obs: jax.Array, key: jax.Array, *, config, env: Env, greedy: bool, memory=None):
  """Actions for a batch of observations (B, *obs_shape), ready for the environment: sampled, or
  the policy's mode (argmax, or the Gaussian's mean) if `greedy`. With a recurrent core and `memory`
  (`initial_memory`), -> (actions, the memory after this step); without `memory`, it acts from fresh memory."""
  net, x = network(config, env), normalization.observations(learner.normalizer, obs, clip=config.obs_clip)
  if config.recurrent:
    (distribution, _), after = recurrent.step(net, learner.params, x, memory, config)
  else:
    distribution = net.apply(learner.params, x, method=ActorCritic.policy)
  distribution = masked(distribution, env.action_mask(obs))
  action = env.clip(distribution.mode() if greedy else distribution.sample(key))
  return action if memory is None else (action, after)


def _minibatch_step(net: ActorCritic, tx: optax.GradientTransformation, objective: Objective, config,
                    learner: Learner, minibatch: Minibatch):
  """One gradient step on a local minibatch; gradients are averaged over devices."""
  batch, advantage = minibatch.batch, minibatch.batch.advantage
  if config.norm_adv:
    advantage = (advantage - minibatch.adv_mean) / (minibatch.adv_std + 1e-8)

  def loss_fn(params):
    distribution, value = _outputs(net, params, batch, config=config)
    terms = objective.loss(distribution, value, batch, advantage, config)
    return terms.total, terms

  with jax.named_scope("gradient"):
    grads, terms = jax.grad(loss_fn, has_aux=True)(sharding.per_device(learner.params))
    grads, terms = sharding.pmean((grads, terms))
  learner = apply_gradients(tx, learner, grads)
  return learner, (terms, optax.tree.norm(grads))


def update(state: TrainState, *, config: ml_collections.ConfigDict, env: Env, sizes: Sizes, objective: Objective):
  """One iteration on this device's environments: rollout, the objective's advantages, epochs of minibatch steps.

  Returns the new state and metrics as {name: (sum, count)}, identical on every device.
  """
  if config.recurrent:
    net = network(config, env)
    sampler = _recurrent_sampler(net, state.learner.params, _observe(state.learner, config), env)
  else:
    sampler = functools.partial(behaviour, state.learner, config=config, env=env)
  collected = rollout_learner.collect(state, sampler, config=config, env=env)
  return learn(state, collected, config=config, env=env, sizes=sizes, objective=objective)


def _observe(learner: Learner, config):
  return functools.partial(normalization.observations, learner.normalizer, clip=config.obs_clip)


def behaviour(learner: Learner, obs: jax.Array, keys: jax.Array, *, config: ml_collections.ConfigDict, env: Env):
  """The rollout's policy (without memory): actions sampled from the learner's policy, each environment's from its
  key in `keys` (E, 2), and their log-probabilities. The host architecture's actors act with it too."""
  return _sampler(network(config, env), learner.params, _observe(learner, config), env)(obs, keys)


def learn(state: TrainState, collected: rollout_learner.Collected, *, config: ml_collections.ConfigDict, env: Env,
          sizes: Sizes, objective: Objective):
  """The learning half of an iteration on a rollout (`collected`, recorded by `behaviour`): the objective's
  advantages, epochs of minibatch steps. -> (state, metrics)."""
  net, tx = network(config, env), optimizer(config, sizes)
  learner = state.learner
  traj = collected.steps
  batch = _batch(net, learner.params, _observe(learner, config), collected, state.actors.memory, objective,
                 config=config, env=env)

  # Each epoch's order: every environment shuffles its own time steps, or (recurrent) whole environments are dealt.
  order = rollout_learner.epoch_orders(collected.shuffle_key, config)
  minibatch_advantage = jax.vmap(lambda o: rollout_learner.split(batch, o, config).advantage)(order)
  adv_mean, adv_std = advantage_statistics(minibatch_advantage.reshape(minibatch_advantage.shape[:2] + (-1,)))

  learner, (terms, grad_norm) = _epochs(net, tx, objective, learner, batch, order, adv_mean, adv_std, config=config)
  # The observations this iteration acted on join the statistics for the next one (the loss used the old ones).
  learner = learner.replace(normalizer=normalization.update_observations(collected.normalizer, traj.obs))
  metrics = _metrics(traj, terms, grad_norm, state.update, objective.name, config=config, sizes=sizes)
  return state.replace(learner=learner, actors=collected.actors), metrics


def advantage_statistics(minibatch_advantage: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The mean and (population) standard deviation of every global minibatch of every epoch.

  `minibatch_advantage`: (epochs, M, B), this device's B samples of each minibatch (every device holds as many).
  Two passes, so that a mean far larger than the spread survives float32: the spread is taken around the global
  mean, not as E[A^2] - E[A]^2 (which gives advantages of 5000 +- 1 a std of 0, normalising them to +-1e8).
  Returns (epochs, M) arrays, the same on every device, in two all-reduces.
  """
  mean = sharding.pmean(jnp.mean(minibatch_advantage, -1))
  variance = sharding.pmean(jnp.mean(jnp.square(minibatch_advantage - mean[..., None]), -1))
  return mean, jnp.sqrt(variance)


def _sample(distribution, keys: jax.Array):
  """An action of each environment's distribution from its own key, and its log-probability."""
  action = jax.vmap(lambda key, d: d.sample(key))(keys, distribution)
  return action, distribution.log_prob(action)


def _sampler(net: ActorCritic, params, observe, env: Env) -> acting.Policy:
  """The rollout's policy: actions sampled from `params`' policy, and their log-probabilities."""
  return lambda obs, keys: _sample(policy(net, params, observe(obs), env.action_mask(obs)), keys)


def _recurrent_sampler(net: recurrent.Recurrent, params, observe, env: Env) -> acting.RecurrentPolicy:
  """The rollout's policy with memory: actions sampled, and (their log-probabilities, the values) as extras."""

  def act_fn(obs, keys, memory):
    (distribution, value), memory = net.apply(params, observe(obs), memory)
    action, log_prob = _sample(masked(distribution, env.action_mask(obs)), keys)
    return action, (log_prob, value), memory

  return act_fn


def _outputs(net, params, batch: Batch, *, config):
  """The policy (masked) and the values on a batch's observations; with memory, replaying its sequences."""
  if config.recurrent:
    distribution, value = recurrent.replay(net, params, batch.obs, batch.start, batch.episode_end)
  else:
    distribution, value = net.apply(params, batch.obs)  # one pass of a shared torso
  return masked(distribution, batch.action_mask), value


def _batch(net, params, observe, collected: rollout_learner.Collected, start, objective: Objective, *, config,
           env: Env) -> Batch:
  """The rollout as the loss takes it (T, E, ...): observations as the networks see them, values, the objective's
  advantages and targets; with memory, the resets and the memory at the rollout's start (`start`)."""
  traj = collected.steps
  reward = normalization.rewards(collected.normalizer, traj.reward, clip=config.reward_clip)

  # V(s_t) once over the whole rollout (the critic after it; with memory, as acting computed it); V(s_{t+1}) is the
  # next row of it, except after the rollout's last step and where an episode was truncated (its pre-reset
  # observation, with the memory it was reached with).
  with jax.named_scope("advantages"):
    traj_obs = observe(traj.obs)
    if config.recurrent:
      log_prob, value = traj.extras
      step_value = lambda raw, memory: net.apply(params, observe(raw), memory)[0][1]
    else:
      critic = functools.partial(net.apply, params, method=ActorCritic.value)
      log_prob, value = traj.extras, critic(traj_obs)
      step_value = lambda raw, memory: critic(observe(raw))
    value_tp1 = rollout_learner.next_values(value, step_value(collected.actors.obs, collected.actors.memory), traj,
                                            step_value)
    action_mask = env.action_mask(traj.obs)
    log_rho = lambda: policy(net, params, traj_obs, action_mask).log_prob(traj.action) - log_prob
    advantage, target = objective.targets(reward, value, value_tp1, traj, log_rho, config)
  memory = dict(episode_end=traj.episode_end, start=start) if config.recurrent else {}
  return Batch(obs=traj_obs, action=traj.action, log_prob=log_prob, value=value, advantage=advantage,
               target=target, action_mask=action_mask, **memory)


def _epochs(net, tx: optax.GradientTransformation, objective: Objective, learner: Learner, batch: Batch,
            order: jax.Array, adv_mean: jax.Array, adv_std: jax.Array, *, config):
  """`update_epochs` passes over the batch in each epoch's `order` (`rollout_learner.epoch_orders`), a gradient step
  per minibatch; `adv_mean`, `adv_std` (epochs, M): each global minibatch's advantage statistics.

  Returns (learner, (loss terms, gradient norms)), the latter (epochs, M).
  """

  def epoch(learner: Learner, inputs):
    order, adv_mean, adv_std = inputs
    step = functools.partial(_minibatch_step, net, tx, objective, config)
    with jax.named_scope("minibatches"):
      batches = rollout_learner.split(batch, order, config)
    return jax.lax.scan(step, learner, Minibatch(batch=batches, adv_mean=adv_mean, adv_std=adv_std))

  return jax.lax.scan(epoch, learner, (order, adv_mean, adv_std))


def _metrics(traj: acting.Step, terms: Losses, grad_norm: jax.Array, update: jax.Array, name: str, *, config,
             sizes: Sizes) -> dict:
  """The iteration's metrics as {name: (sum, count)}: its episodes, and the means of its gradient steps."""
  gradient_steps = update * config.update_epochs * config.num_minibatches
  mean = lambda x: (jnp.mean(x), jnp.float32(1))  # terms are pmean-ed already: same on every device
  return {
      **acting.episode_metrics(traj),
      "loss/total": mean(terms.total),
      "loss/policy": mean(terms.policy),
      "loss/value": mean(terms.value),
      "loss/entropy": mean(terms.entropy),
      f"{name}/approx_kl": mean(terms.approx_kl),
      f"{name}/clip_fraction": mean(terms.clip_fraction),
      "opt/grad_norm": mean(grad_norm),
      "opt/lr": mean(learning_rate(config, sizes)(gradient_steps)),
  }
