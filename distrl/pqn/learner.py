"""PQN (Gallici et al. 2024, "Simplifying Deep Temporal Difference Learning"): `sizes`, `init`, `update`, `act`.

Q-learning without a replay buffer or a target network: many environments act epsilon-greedily
for `num_steps` steps with the current Q-network (LayerNorm before every hidden activation keeps
the online bootstrap stable), the rollout's Q(lambda) returns are computed once with that same
network, and `update_epochs` passes of `num_minibatches` minibatches regress Q(s, a) on them.

Device-count invariance as PPO's: minibatches are stratified by environment (`distrl.rl.rollout_learner`:
each takes num_steps / num_minibatches shuffled steps of every environment, each environment
shuffling with its own key), so the union of the devices' minibatches is the global minibatch;
gradients and statistics are averaged over devices.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from distrl import sharding
from distrl.rl import acting, distributions, normalization, qlearning, rollout_learner
from distrl.dqn.losses import q_loss
from distrl.envs import Env
from distrl.errors import require, require_positive
from distrl.pqn import losses
from distrl.rl.state import TrainState, apply_gradients


@struct.dataclass
class Batch:
  """What the loss needs of each sample; leaves (T, E, ...) or (B, ...)."""

  obs: jax.Array  # as the network sees it (normalised if config.normalize_obs)
  action: jax.Array
  target: jax.Array  # the Q(lambda) return


Sizes = rollout_learner.Sizes


def sizes(config: ml_collections.ConfigDict, num_devices: int) -> Sizes:
  """Validates the config's sizes against the device count and derives the rest."""
  require_positive(config, "reward_scale")
  qlearning.check(config)
  require(0 <= config.q_lambda <= 1, f"q_lambda={config.q_lambda} must be in [0, 1] (0: one-step targets; "
                                     f"0.65-0.95 are the published settings)")
  return rollout_learner.sizes(config)


def optimizer(config: ml_collections.ConfigDict, sizes: Sizes) -> optax.GradientTransformation:
  """RAdam, as the paper's implementation uses, after clipping to `max_grad_norm`."""
  return optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                     optax.radam(rollout_learner.learning_rate(config, sizes.gradient_steps)))


def init(key: jax.Array, *, config: ml_collections.ConfigDict, env: Env, sizes: Sizes) -> TrainState:
  """Parameters from `key`; environment i reset from fold_in(key, i) whatever device runs it."""
  return rollout_learner.init(key, config=config, env=env, network=qlearning.network(config, env),
                       optimizer=optimizer(config, sizes))


act = qlearning.act


def update(state: TrainState, *, config: ml_collections.ConfigDict, env: Env, sizes: Sizes):
  """One PQN iteration on this device's environments: rollout, Q(lambda) returns, epochs of minibatch steps.

  Returns the new state and metrics as {name: (sum, count)}, identical on every device.
  """
  net, tx = qlearning.network(config, env), optimizer(config, sizes)
  learner = state.learner
  params = learner.params
  observe = functools.partial(normalization.observations, learner.normalizer, clip=config.obs_clip)
  eps = qlearning.epsilon(config, state.update * sizes.steps_per_update)

  collected = rollout_learner.collect(state, qlearning.epsilon_greedy(net, params, observe, eps, env), config=config, env=env)
  traj, actors, normalizer = collected.steps, collected.actors, collected.normalizer
  reward = config.reward_scale * normalization.rewards(normalizer, traj.reward, clip=config.reward_clip)

  # Targets once per rollout, from the network that acted: max_a Q (over the allowed a) at every pre-reset next state,
  # as acting computed it but where an episode was truncated.
  with jax.named_scope("advantages"):  # here Q(lambda) returns: the same part of an update as PPO's GAE
    max_q = lambda obs: distributions.masked_max(net.apply(params, observe(obs)), env.action_mask(obs))
    q_tp1 = rollout_learner.next_values(traj.extras, max_q(actors.obs), traj, max_q)
    target = losses.q_lambda_returns(reward, q_tp1, traj.terminated, traj.episode_end, gamma=config.gamma,
                                     q_lambda=config.q_lambda)
  batch = Batch(obs=observe(traj.obs), action=traj.action, target=target)

  def minibatch_step(learner: rollout_learner.Learner, minibatch: Batch):
    def loss_fn(params):
      loss, q_mean, _ = q_loss(net.apply(params, minibatch.obs), minibatch.action, minibatch.target, loss="mse")
      return loss, q_mean

    with jax.named_scope("gradient"):
      (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(sharding.per_device(learner.params))
      grads, loss, q_mean = sharding.pmean((grads, loss, q_mean))
    learner = apply_gradients(tx, learner, grads)
    return learner, (loss, q_mean, optax.tree.norm(grads))

  def epoch(learner: rollout_learner.Learner, order: jax.Array):
    with jax.named_scope("minibatches"):
      batches = jax.tree.map(lambda x: rollout_learner.minibatches(x, order, config.num_minibatches), batch)
    return jax.lax.scan(minibatch_step, learner, batches)

  learner, (loss, q_mean, grad_norm) = jax.lax.scan(
      epoch, learner, rollout_learner.orders(collected.shuffle_key, config.num_steps, config.update_epochs))
  # The observations this iteration acted on join the statistics for the next one (the loss used the old ones).
  learner = learner.replace(normalizer=normalization.update_observations(normalizer, traj.obs))

  gradient_steps = state.update * config.update_epochs * config.num_minibatches
  mean = lambda x: (jnp.mean(x), jnp.float32(1))  # pmean-ed already: the same on every device
  metrics = {
      **acting.episode_metrics(traj),
      "loss/total": mean(loss),
      "pqn/q_mean": mean(q_mean),
      "pqn/epsilon": mean(eps),
      "opt/grad_norm": mean(grad_norm),
      "opt/lr": mean(rollout_learner.learning_rate(config, sizes.gradient_steps)(gradient_steps)),
  }
  return state.replace(learner=learner, actors=actors), metrics
