"""What the algorithms that learn from a replay buffer share (DQN, SAC, TD3): their sizes, the actors' rows, the
step that writes a rollout into the replay, the draw of a global batch with its n-step returns, and the gradient
steps that wait for `learning_starts` (`gated_steps`).

One iteration: every environment takes `num_steps` steps into its replay row, then (once `learning_starts`
environment steps are done) `gradient_steps` gradient steps, each on a global batch of `batch_size` transitions.
The config says how often and how much: `config.gradient_steps` gradient steps every `train_frequency` global
environment steps (the update-to-data ratio is gradient_steps / train_frequency gradient steps per environment
step). An iteration is the smallest whole number of steps of every environment that holds them: with
train_frequency >= num_envs, train_frequency / num_envs steps of each; below, one step of each and num_envs /
train_frequency times as many gradient steps.

Device-count invariance: a batch is drawn as global (environment, slot) positions from a key that every device
holds (the learner's), uniformly (`uniform_positions`) or by priority (DQN's `priorities.choose`). Each device reads
the positions in its own rows, one psum gives every device the whole batch (`read`), and each device takes the
gradient of its slice of it (`batch_per_device` samples at its global offset, `mine`); gradients are averaged over
devices. The batch and the loss are thus those of one device holding every row, whatever the split: 1, 2 or 8
devices train the same agent up to float rounding in the all-reduces.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
from flax import struct

from distrl import envs, sharding
from distrl.envs import Env
from distrl.errors import require, require_divisible, require_positive
from distrl.rl import acting, normalization, replay, returns


@struct.dataclass
class Actors:
  """One row per environment."""

  env_state: Any
  obs: jax.Array  # (E, *obs_shape), raw
  key: jax.Array  # (E, 2) uint32: each environment's own random stream, from its global index
  replay: replay.Transition  # (E, capacity_per_env, ...), raw observations and rewards
  priority: jax.Array | None  # (E, capacity_per_env): p^alpha of every slot, if prioritized (DQN)
  discounted_return: jax.Array | None  # (E,): the running return that scales rewards, if config.scale_rewards


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
  """Validates the replay fields of `config` against the device count and derives the sizes."""
  require_positive(config, "total_timesteps", "num_envs", "buffer_size", "batch_size", "train_frequency",
                   "gradient_steps", "obs_clip", "reward_clip")
  require(0 < config.gamma <= 1, f"gamma={config.gamma} must be in (0, 1]")
  require(0 < config.tau <= 1, f"tau={config.tau} must be in (0, 1]")
  require(config.learning_starts >= 0, f"learning_starts={config.learning_starts} must be >= 0")
  require(isinstance(config.n_step, int) and config.n_step >= 1,
          f"n_step={config.n_step!r} must be a whole number >= 1 (1: one-step targets; 3 is common)")
  require(isinstance(config.gradient_steps, int),
          f"gradient_steps={config.gradient_steps!r} must be a whole number of gradient steps")
  require(config.learning_starts < 2**31, f"learning_starts={config.learning_starts} must be below 2**31 "
                                          f"(environment steps are int32 on the devices)")
  require_divisible("batch_size", config.batch_size, "the number of devices", num_devices,
                    "each device takes the gradient of an equal slice of every batch")
  if config.train_frequency >= config.num_envs:
    require_divisible("train_frequency", config.train_frequency, "num_envs", config.num_envs,
                      "an iteration is train_frequency / num_envs steps of every environment")
    num_steps, per_step = config.train_frequency // config.num_envs, 1
  else:
    require_divisible("num_envs", config.num_envs, "train_frequency", config.train_frequency,
                      "an iteration is one step of every environment and num_envs / train_frequency gradient steps")
    num_steps, per_step = 1, config.num_envs // config.train_frequency
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
  return Sizes(num_updates=num_updates, steps_per_update=steps_per_update, num_steps=num_steps,
               gradient_steps=per_step * config.gradient_steps, capacity=capacity,
               batch_per_device=config.batch_size // num_devices,
               first_learning_update=config.learning_starts // steps_per_update)


def init_actors(env: Env, key: jax.Array, action: jax.Array, *, config, sizes: Sizes,
                normalizer: normalization.Normalizer, priority: jax.Array | None = None) -> Actors:
  """Every environment reset (environment i from fold_in(key, i)) beside its empty replay row, whose actions are
  shaped and typed as `action` (one action)."""
  obs, env_state, keys = envs.reset_batch(env, key, jnp.arange(config.num_envs))
  example = replay.Transition(obs=obs[0], action=action, reward=jnp.float32(0), next_obs=obs[0],
                              terminated=jnp.bool_(False), episode_end=jnp.bool_(False))
  return Actors(env_state=env_state, obs=obs, key=keys, replay=replay.init(example, config.num_envs, sizes.capacity),
                priority=priority, discounted_return=normalization.initial_returns(normalizer, config.num_envs))


@struct.dataclass
class Progress:
  """Where an iteration stands in the run."""

  steps_before: jax.Array  # global environment steps before this iteration
  steps_after: jax.Array  # and after it
  added: jax.Array  # steps each environment wrote into its row before this iteration
  where: replay.Starts  # the slots that start an n-step window once this iteration's steps are written
  learning: jax.Array  # bool: this iteration takes its gradient steps (past learning_starts, a window written)


def progress(update: jax.Array, *, config, sizes: Sizes) -> Progress:
  steps_before = update * sizes.steps_per_update
  steps_after = steps_before + sizes.steps_per_update
  added = update * sizes.num_steps
  where = replay.starts(sizes.capacity, added + sizes.num_steps, config.n_step)
  return Progress(steps_before=steps_before, steps_after=steps_after, added=added, where=where,
                  learning=(steps_after > config.learning_starts) & (where.count >= 1))


@struct.dataclass
class Collected:
  """An iteration's rollout, written into the replay rows (`collect`)."""

  steps: acting.Step  # (T, E, ...)
  actors: Actors  # advanced past the rollout: environment states, observations, keys, replay rows, running returns
  normalizer: normalization.Normalizer  # the learner's, its return statistics updated with the rollout's rewards


def collect(actors: Actors, normalizer: normalization.Normalizer, policy: acting.Policy, added: jax.Array, *,
            config, sizes: Sizes, env: Env) -> Collected:
  """`num_steps` steps of every local environment with `policy`, written into its replay row after the `added`
  steps it holds."""
  next_key, rollout_key = jnp.unstack(jax.vmap(jax.random.split)(actors.key), axis=1)
  env_state, obs, traj = acting.rollout(env, policy, actors.env_state, actors.obs, rollout_key, sizes.num_steps)
  normalizer, discounted_return = normalization.update_returns(normalizer, traj.reward, traj.episode_end,
                                                               actors.discounted_return, gamma=config.gamma)
  steps = replay.Transition(obs=traj.obs, action=traj.action, reward=traj.reward, next_obs=traj.final_obs,
                            terminated=traj.terminated, episode_end=traj.episode_end)
  with jax.named_scope("replay_write"):
    buffer = replay.add(actors.replay, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), steps), added)
  actors = actors.replace(env_state=env_state, obs=obs, key=next_key, replay=buffer,
                          discounted_return=discounted_return)
  return Collected(steps=traj, actors=actors, normalizer=normalizer)


@struct.dataclass
class Batch:
  """What the loss needs of each sample, as the network and the targets take them; leaves (B, ...)."""

  obs: jax.Array
  action: jax.Array
  n_step_return: jax.Array  # G: the discounted rewards of up to n steps
  discount: jax.Array  # of the bootstrap: gamma^(steps taken), 0 after a terminal state
  next_obs: jax.Array  # the observation to bootstrap from (reached before any reset)
  priority: jax.Array | None = None  # p of the sample, if prioritized
  next_action_mask: jax.Array | None = None  # the actions allowed at next_obs (B, A), if the environment masks


def uniform_positions(key: jax.Array, buffer: replay.Transition, where: replay.Starts, *, config, sizes: Sizes):
  """`batch_size` global positions drawn uniformly over every start slot, as this device sees them:
  -> (its row of each, whether it holds that row, the slot)."""
  env, slot = replay.uniform(key, config.batch_size, config.num_envs, sizes.capacity, where)
  row, owned = replay.owned_rows(env, buffer.reward.shape[0])
  return row, owned, slot


def read(buffer: replay.Transition, row: jax.Array, owned: jax.Array, slot: jax.Array, *, config,
         normalizer: normalization.Normalizer, priority: jax.Array | None = None) -> Batch:
  """The global batch at the drawn positions, the same on every device (observations raw).

  The device holding a sample's row reads its n steps and computes the n-step return there (rewards scaled
  first); one psum shares the batch.
  """
  steps = replay.gather(buffer, row[:, None], slot[:, None] + jnp.arange(config.n_step))  # leaves (B, n)
  reward = normalization.rewards(normalizer, steps.reward, clip=config.reward_clip)
  n_step_return, discount, last = returns.n_step_return(reward, steps.terminated, steps.episode_end,
                                                        gamma=config.gamma)
  first = replay.gather(buffer, row, slot)
  batch = Batch(obs=first.obs, action=first.action, n_step_return=n_step_return, discount=discount,
                next_obs=replay.gather(buffer, row, slot + last).next_obs, priority=priority)
  return replay.share(batch, owned)


def mine(tree, sizes: Sizes):
  """This device's slice of a global batch (leaves (B, ...)): the `batch_per_device` samples at its offset."""
  index = sharding.global_index(sizes.batch_per_device)
  return jax.tree.map(lambda x: x[index], tree)


def gated_steps(learning: jax.Array, one: Callable, carry, key: jax.Array, *, sizes: Sizes):
  """`gradient_steps` steps `one(carry, (index, key)) -> (carry, stats)` if `learning` (index counts the steps of
  this iteration, keys come from `key`), else `carry` as it is.

  -> (carry, stats averaged over the steps (zeros if not learning), 1.0 if it learned else 0.0).
  """
  xs = (jnp.arange(sizes.gradient_steps), jax.random.split(key, sizes.gradient_steps))

  def train(carry):
    carry, stats = jax.lax.scan(one, carry, xs)
    return carry, jax.tree.map(jnp.mean, stats), jnp.float32(1)

  def skip(carry):
    stats = jax.eval_shape(lambda: train(carry)[1])
    return carry, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), stats), jnp.float32(0)

  return jax.lax.cond(learning, train, skip, carry)


def where_trained(stats: dict, trained: jax.Array) -> dict:
  """Metrics {name: (sum, count)} of the gradient steps' mean `stats`, counted only in iterations that trained."""
  return {name: (value * trained, trained) for name, value in stats.items()}


def gradient_steps_so_far(update: jax.Array, sizes: Sizes) -> jax.Array:
  """Gradient steps taken before iteration `update` (the schedules of the learning rate and delays read it)."""
  return jnp.maximum(update - sizes.first_learning_update, 0) * sizes.gradient_steps
