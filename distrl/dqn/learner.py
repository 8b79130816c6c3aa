"""DQN (Mnih et al. 2015) for discrete actions: `sizes`, `init`, the per-device `update`, `act`.

Options: n-step returns (`n_step`), double DQN (`double_dqn`), a dueling head (`dueling`),
prioritised replay (`prioritized`, Schaul et al. 2016), LayerNorm in the Q-network (`layer_norm`).

One iteration: every environment takes `num_steps` epsilon-greedy steps into its replay row,
then (after `learning_starts` environment steps) `gradient_steps` gradient steps, each on a
global batch of `batch_size` transitions. The target network moves towards the online network
by `tau` every `target_update_interval` environment steps (tau = 1: a hard copy).

Device-count invariance: a batch is drawn as global (environment, slot) positions from a key
that every device holds (`Learner.key`), uniformly (`replay.uniform`) or in proportion to
priority over the whole buffer (`priorities.choose`). Each device reads the positions in its own
rows, one psum gives every device the whole batch (`replay.share`), and each device takes the
gradient of its slice of it (`batch_size / D` samples, the slice at its global offset);
gradients are averaged over devices. The batch, the loss and the new priorities are thus those of
one device holding every row, whatever the split: 1, 2 or 8 devices train the same agent up to
float rounding in the all-reduces.
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
from distrl.rl import acting, normalization, qlearning
from distrl.dqn import losses, priorities, replay
from distrl.envs import Env
from distrl.errors import require, require_divisible, require_positive
from distrl.rl.state import TrainState, apply_gradients


@struct.dataclass
class Learner:
  params: Any
  target_params: Any
  opt_state: Any
  normalizer: normalization.Normalizer  # observation / return statistics (fields None when off)
  key: jax.Array  # (2,) uint32, the same on every device: which transitions each batch takes
  max_priority: jax.Array | None  # the largest priority given so far (new transitions get it), if prioritized


@struct.dataclass
class Actors:
  """One row per environment."""

  env_state: Any
  obs: jax.Array  # (E, *obs_shape), raw
  key: jax.Array  # (E, 2) uint32: each environment's own random stream, from its global index
  replay: replay.Transition  # (E, capacity_per_env, ...), raw observations and rewards
  priority: jax.Array | None  # (E, capacity_per_env): p^alpha of every slot, if prioritized
  discounted_return: jax.Array | None  # (E,): the running return that scales rewards, if config.scale_rewards


@struct.dataclass
class Batch:
  """What the loss needs of each sample, as the network and the targets take them; leaves (B, ...)."""

  obs: jax.Array
  action: jax.Array
  n_step_return: jax.Array  # G: the discounted rewards of up to n steps
  discount: jax.Array  # of the bootstrap: gamma^(steps taken), 0 after a terminal state
  next_obs: jax.Array  # the observation to bootstrap from (reached before any reset)
  priority: jax.Array | None  # p of the sample, if prioritized
  next_action_mask: jax.Array | None = None  # the actions allowed at next_obs (B, A), if the environment masks


@dataclasses.dataclass(frozen=True)
class Sizes:
  """Sizes derived from a config and the device count."""

  num_updates: int  # iterations in the whole run
  steps_per_update: int  # global environment steps per iteration
  num_steps: int  # steps each environment takes per iteration
  gradient_steps: int  # gradient steps per iteration
  capacity: int  # replay slots per environment
  batch_per_device: int  # each device's slice of a global batch
  first_learning_update: int  # the first iteration that takes gradient steps (past learning_starts)


def sizes(config: ml_collections.ConfigDict, num_devices: int) -> Sizes:
  """Validates the config's sizes against the device count and derives the rest."""
  require_positive(config, "total_timesteps", "num_envs", "buffer_size", "batch_size", "lr", "train_frequency",
                   "target_update_interval", "max_grad_norm", "obs_clip", "reward_clip")
  qlearning.check(config)
  require(0 < config.gamma <= 1, f"gamma={config.gamma} must be in (0, 1]")
  require(0 < config.tau <= 1, f"tau={config.tau} must be in (0, 1]")
  require(config.learning_starts >= 0, f"learning_starts={config.learning_starts} must be >= 0")
  require(config.loss in ("mse", "huber"), f"loss={config.loss!r} must be 'mse' or 'huber'")
  for field in ("double_dqn", "prioritized", "anneal_lr"):
    require(isinstance(config[field], bool), f"{field}={config[field]!r} must be True or False")
  require(isinstance(config.n_step, int) and config.n_step >= 1,
          f"n_step={config.n_step!r} must be a whole number >= 1 (1: one-step targets; 3 is common)")
  require(0 <= config.priority_alpha <= 1,
          f"priority_alpha={config.priority_alpha} must be in [0, 1] (0: uniform; 0.6 is common)")
  require(0 <= config.priority_beta <= 1,
          f"priority_beta={config.priority_beta} must be in [0, 1] (it anneals to 1; 0.4 is common)")
  require(config.priority_eps > 0, f"priority_eps={config.priority_eps} must be > 0 (e.g. 1e-6): a zero priority "
                                   f"would never be sampled again")
  for field in ("learning_starts", "target_update_interval"):
    require(config[field] < 2**31, f"{field}={config[field]} must be below 2**31 (environment steps are int32 "
                                   f"on the devices)")
  require_divisible("batch_size", config.batch_size, "the number of devices", num_devices,
                    "each device takes the gradient of an equal slice of every batch")
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
  require(config.n_step <= capacity, f"n_step={config.n_step} is longer than an environment's replay row "
                                     f"(buffer_size / num_envs = {capacity} slots)")
  require(config.batch_size <= config.buffer_size,
          f"batch_size={config.batch_size} is larger than buffer_size={config.buffer_size}")
  steps_per_update = config.num_envs * num_steps
  require(config.total_timesteps >= steps_per_update,
          f"total_timesteps={config.total_timesteps} is less than one iteration ({steps_per_update} steps)")
  num_updates = config.total_timesteps // steps_per_update
  require(num_updates * steps_per_update > config.learning_starts,
          f"learning_starts={config.learning_starts} leaves no gradient step in a run of "
          f"{num_updates * steps_per_update} steps (total_timesteps={config.total_timesteps}): lower learning_starts "
          f"or raise total_timesteps")
  return Sizes(num_updates=num_updates, steps_per_update=steps_per_update,
               num_steps=num_steps, gradient_steps=gradient_steps, capacity=capacity,
               batch_per_device=config.batch_size // num_devices,
               first_learning_update=config.learning_starts // steps_per_update)


def learning_rate(config: ml_collections.ConfigDict, sizes: Sizes) -> optax.Schedule:
  """Constant, or linear from `lr` to 0 over every gradient step of the run if `anneal_lr`."""
  if not config.anneal_lr:
    return optax.constant_schedule(config.lr)
  learning_updates = max(1, sizes.num_updates - sizes.first_learning_update)
  return optax.linear_schedule(config.lr, 0.0, learning_updates * sizes.gradient_steps)


def optimizer(config: ml_collections.ConfigDict, sizes: Sizes) -> optax.GradientTransformation:
  return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(learning_rate(config, sizes)))


def init(key: jax.Array, *, config: ml_collections.ConfigDict, env: Env, sizes: Sizes) -> TrainState:
  """Parameters from `key`; environment i reset from fold_in(key, i) whatever device runs it."""
  param_key, env_key, sample_key = jax.random.split(key, 3)
  params = qlearning.network(config, env).init(param_key, jnp.zeros(env.observation_shape))
  normalizer = normalization.init(env.observation_shape, normalize_obs=config.normalize_obs,
                                  scale_rewards=config.scale_rewards)
  obs, env_state, keys = envs.reset_batch(env, env_key, jnp.arange(config.num_envs))
  example = replay.Transition(obs=obs[0], action=jnp.int32(0), reward=jnp.float32(0), next_obs=obs[0],
                              terminated=jnp.bool_(False), episode_end=jnp.bool_(False))
  prioritized = config.prioritized
  opt_state = optimizer(config, sizes).init(params)
  return TrainState(update=jnp.zeros((), jnp.int32),
                    learner=Learner(params=params, target_params=params, opt_state=opt_state, normalizer=normalizer,
                                    key=sample_key, max_priority=jnp.float32(1.0) if prioritized else None),
                    actors=Actors(env_state=env_state, obs=obs, key=keys,
                                  replay=replay.init(example, config.num_envs, sizes.capacity),
                                  priority=priorities.init(config.num_envs, sizes.capacity) if prioritized else None,
                                  discounted_return=normalization.initial_returns(normalizer, config.num_envs)))


act = qlearning.act


def gradient_step(net: nn.Module, tx: optax.GradientTransformation, config, learner: Learner, batch: Batch,
                  weights: jax.Array | None):
  """One gradient step on this device's slice of a batch (B, ...); gradients averaged over devices.

  Returns (learner, td errors (B,), (loss, mean Q, gradient norm)).
  """

  def loss_fn(params):
    q_t_target = net.apply(learner.target_params, batch.next_obs)
    if config.double_dqn:  # one online pass over obs and next_obs: on a CPU a step costs per operation, not per row
      q_both = net.apply(params, jnp.concatenate([batch.obs, batch.next_obs]))
      q_tm1, q_t_online = q_both[:len(batch.obs)], jax.lax.stop_gradient(q_both[len(batch.obs):])
    else:
      q_tm1, q_t_online = net.apply(params, batch.obs), None
    y = losses.td_target(batch.n_step_return, batch.discount, q_t_target, q_t_online, batch.next_action_mask)
    loss, q_mean, td = losses.q_loss(q_tm1, batch.action, y, weights, loss=config.loss)
    return loss, (q_mean, td)

  with jax.named_scope("gradient"):
    (loss, (q_mean, td)), grads = jax.value_and_grad(loss_fn, has_aux=True)(sharding.per_device(learner.params))
    grads, loss, q_mean = sharding.pmean((grads, loss, q_mean))
  learner = apply_gradients(tx, learner, grads)
  return learner, td, (loss, q_mean, optax.tree.norm(grads))


def draw(buffer: replay.Transition, priority: jax.Array | None, key: jax.Array, where: replay.Starts, *, config,
         sizes: Sizes, normalizer: normalization.Normalizer):
  """The global batch (the same on every device) and where its samples are in this device's rows.

  Positions come from `key` (replicated): uniform over every start slot, or by priority. The device
  holding a sample's row reads its n steps, computes the n-step return there (rewards scaled first),
  and one psum shares the batch. Returns (Batch (B, ...), priorities.Draw or None).
  """
  num_local = buffer.reward.shape[0]
  if priority is None:
    env, slot = replay.uniform(key, config.batch_size, config.num_envs, sizes.capacity, where)
    row, owned = replay.local_rows(env, num_local)
    drawn, sample_priority = None, None
  else:
    drawn = priorities.choose(key, priority, replay.valid(where, sizes.capacity), config.batch_size)
    row, owned, slot, sample_priority = drawn.row, drawn.owned, drawn.slot, drawn.priority
  steps = replay.gather(buffer, row[:, None], slot[:, None] + jnp.arange(config.n_step))  # leaves (B, n)
  reward = normalization.rewards(normalizer, steps.reward, clip=config.reward_clip)
  n_step_return, discount, last = losses.n_step_return(reward, steps.terminated, steps.episode_end,
                                                       gamma=config.gamma)
  first = replay.gather(buffer, row, slot)
  batch = Batch(obs=first.obs, action=first.action, n_step_return=n_step_return, discount=discount,
                next_obs=replay.gather(buffer, row, slot + last).next_obs, priority=sample_priority)
  return replay.share(batch, owned), drawn


@struct.dataclass
class Collected:
  """An iteration's rollout, written into the replay rows (`_collect`)."""

  steps: acting.Step  # (T, E, ...)
  actors: Actors  # advanced past the rollout: environment states, observations, keys, replay rows, running returns
  normalizer: normalization.Normalizer  # the learner's, its return statistics updated with the rollout's rewards


def update(state: TrainState, *, config: ml_collections.ConfigDict, env: Env, sizes: Sizes):
  """One DQN iteration on this device's environments. Returns (state, {name: (sum, count)})."""
  net, tx = qlearning.network(config, env), optimizer(config, sizes)
  learner = state.learner
  observe = functools.partial(normalization.observations, learner.normalizer, clip=config.obs_clip)
  steps_before = state.update * sizes.steps_per_update  # global environment steps so far
  steps_after = steps_before + sizes.steps_per_update
  eps = qlearning.epsilon(config, steps_before)

  added = state.update * sizes.num_steps  # steps per environment before this iteration
  policy = qlearning.epsilon_greedy(net, learner.params, observe, eps, env)
  collected = _collect(state, policy, added, config=config, sizes=sizes, env=env)
  where = replay.starts(sizes.capacity, added + sizes.num_steps, config.n_step)
  learner_key, sample_key = jax.random.split(learner.key)
  learning = (steps_after > config.learning_starts) & (where.count >= 1)
  (learner, priority), stats = _learn(learning, learner, collected, where, sample_key, net=net, tx=tx, observe=observe,
                                      steps_before=steps_before, config=config, sizes=sizes, env=env)
  actors = collected.actors.replace(priority=priority)

  target = _moved_target(learner, learning, steps_before, steps_after, config=config)
  # The observations of this iteration join the statistics for the next one.
  learner = learner.replace(target_params=target, key=learner_key,
                            normalizer=normalization.update_observations(collected.normalizer, collected.steps.obs))
  metrics = _metrics(collected.steps, stats, eps, state.update, config=config, sizes=sizes)
  return state.replace(learner=learner, actors=actors), metrics


def _collect(state: TrainState, policy: acting.Policy, added: jax.Array, *, config, sizes: Sizes,
             env: Env) -> Collected:
  """`num_steps` steps of every local environment with `policy`, written into its replay row after the `added`
  steps it holds (new transitions get the largest priority so far, if prioritized)."""
  learner, actors = state.learner, state.actors
  next_key, rollout_key = jnp.unstack(jax.vmap(jax.random.split)(actors.key), axis=1)
  env_state, obs, traj = acting.rollout(env, policy, actors.env_state, actors.obs, rollout_key, sizes.num_steps)
  normalizer, discounted_return = normalization.update_returns(learner.normalizer, traj.reward, traj.episode_end,
                                                               actors.discounted_return, gamma=config.gamma)
  steps = replay.Transition(obs=traj.obs, action=traj.action, reward=traj.reward, next_obs=traj.final_obs,
                            terminated=traj.terminated, episode_end=traj.episode_end)
  with jax.named_scope("replay_write"):
    buffer = replay.add(actors.replay, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), steps), added)
    priority = actors.priority
    if config.prioritized:
      priority = priorities.write(priority, learner.max_priority, added, sizes.num_steps)
  actors = actors.replace(env_state=env_state, obs=obs, key=next_key, replay=buffer, priority=priority,
                          discounted_return=discounted_return)
  return Collected(steps=traj, actors=actors, normalizer=normalizer)


def _learn(learning: jax.Array, learner: Learner, collected: Collected, where: replay.Starts, key: jax.Array, *,
           net: nn.Module, tx: optax.GradientTransformation, observe, steps_before: jax.Array, config, sizes: Sizes,
           env: Env):
  """`gradient_steps` gradient steps, each on a batch drawn from the replay rows with its own key from `key`, if
  `learning`. Returns ((learner, priority), (loss, mean Q, gradient norm, 1)), or the learner and priorities as
  they are and zeros if not."""
  buffer, normalizer = collected.actors.replay, collected.normalizer
  beta = optax.linear_schedule(config.priority_beta, 1.0, config.total_timesteps)(steps_before)
  mine = sharding.global_index(sizes.batch_per_device)  # this device's slice of every global batch

  def one(carry, key):
    learner, priority = carry
    with jax.named_scope("sampling"):
      batch, drawn = draw(buffer, priority, key, where, config=config, sizes=sizes, normalizer=normalizer)
      batch = batch.replace(obs=observe(batch.obs), next_obs=observe(batch.next_obs),
                            next_action_mask=env.action_mask(batch.next_obs))  # read before normalising
    weights = None
    if config.prioritized:
      weights = losses.importance_weights(batch.priority / drawn.total, drawn.minimum / drawn.total, beta=beta)[mine]
    learner, td, stats = gradient_step(net, tx, config, learner, jax.tree.map(lambda x: x[mine], batch), weights)
    if config.prioritized:
      new = (jnp.abs(sharding.gather(td)) + config.priority_eps) ** config.priority_alpha  # (B,), global order
      priority = priorities.assign(priority, drawn, new)
      learner = learner.replace(max_priority=jnp.maximum(learner.max_priority, jnp.max(new)))
    return (learner, priority), stats

  def train(carry):
    carry, stats = jax.lax.scan(one, carry, jax.random.split(key, sizes.gradient_steps))
    return carry, (*jax.tree.map(jnp.mean, stats), jnp.float32(1))

  def skip(carry):
    return carry, (jnp.float32(0), jnp.float32(0), jnp.float32(0), jnp.float32(0))

  return jax.lax.cond(learning, train, skip, (learner, collected.actors.priority))


def _moved_target(learner: Learner, learning: jax.Array, steps_before: jax.Array, steps_after: jax.Array, *, config):
  """The target network, moved by `tau` towards the online one when this iteration learned and crossed a multiple of
  target_update_interval environment steps."""
  crossed = steps_after // config.target_update_interval > steps_before // config.target_update_interval
  tau = jnp.where(crossed & learning, config.tau, 0.0)
  with jax.named_scope("target"):
    return optax.incremental_update(learner.params, learner.target_params, tau)


def _metrics(traj: acting.Step, stats, eps: jax.Array, update: jax.Array, *, config, sizes: Sizes) -> dict:
  """The iteration's metrics as {name: (sum, count)}; the gradient steps' (loss, mean Q, gradient norm, trained) count
  only where it trained."""
  loss, q_mean, grad_norm, trained = stats
  gradient_steps = jnp.maximum(update - sizes.first_learning_update, 0) * sizes.gradient_steps  # so far
  return {
      **acting.episode_metrics(traj),
      "loss/total": (loss * trained, trained),
      "dqn/q_mean": (q_mean * trained, trained),
      "opt/grad_norm": (grad_norm * trained, trained),
      "dqn/epsilon": (eps, jnp.float32(1)),
      "opt/lr": (learning_rate(config, sizes)(gradient_steps), jnp.float32(1)),
  }
