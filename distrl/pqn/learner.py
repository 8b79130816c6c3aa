"""PQN (Gallici et al. 2024, "Simplifying Deep Temporal Difference Learning"): `sizes`, `init`, `update`, `act`.

Q-learning without a replay buffer or a target network: many environments act epsilon-greedily
for `num_steps` steps with the current Q-network (LayerNorm before every hidden activation keeps
the online bootstrap stable), the rollout's Q(lambda) returns are computed once with that same
network, and `update_epochs` passes of `num_minibatches` minibatches regress Q(s, a) on them.

Device-count invariance as PPO's: minibatches are stratified by environment (`distrl.rl.rollout_learner`:
each takes num_steps / num_minibatches shuffled steps of every environment, each environment
shuffling with its own key), so the union of the devices' minibatches is the global minibatch;
gradients and statistics are averaged over devices.

With a recurrent core (`config.recurrent`, `distrl.rl.recurrent`), the torso feeds a GRU or LSTM whose
output feeds the Q head; the loss replays whole environments' sequences from the memory they had at the
rollout's start.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from distrl import sharding
from distrl.rl import acting, distributions, networks, normalization, qlearning, recurrent, returns, rollout_learner
from distrl.envs import Env
from distrl.errors import require, require_positive
from distrl.rl.state import TrainState, apply_gradients
from distrl.rl.td_loss import q_loss


@struct.dataclass
class Batch:
  """What the loss needs of each sample; leaves (T, E, ...) or (B, ...)."""

  obs: jax.Array  # as the network sees it (normalised if config.normalize_obs)
  action: jax.Array
  target: jax.Array  # the Q(lambda) return
  episode_end: jax.Array | None = None  # (T, E): where acting reset the memory, if config.recurrent
  start: Any = None  # (E, ...): each environment's memory at the rollout's start, if config.recurrent


Sizes = rollout_learner.Sizes


def sizes(config: ml_collections.ConfigDict, num_devices: int) -> Sizes:
  """Validates the config's sizes against the device count and derives the rest."""
  require_positive(config, "reward_scale")
  qlearning.check(config)
  require(0 <= config.q_lambda <= 1, f"q_lambda={config.q_lambda} must be in [0, 1] (0: one-step targets; "
                                     f"0.65-0.95 are the published settings)")
  return rollout_learner.sizes(config, num_devices)


def network(config: ml_collections.ConfigDict, env: Env) -> nn.Module:
  """The Q-network; with `config.recurrent`, its torso feeds a recurrent core that feeds its head."""
  if not config.recurrent:
    return qlearning.network(config, env)
  features = networks.torso(config.torso, tuple(config.hidden_sizes), None, 1.0, config.activation,
                            len(env.observation_shape), config.layer_norm)
  return recurrent.Recurrent(torso=features, cell=config.recurrent, size=config.recurrent_size,
                             head=networks.QHead(env.num_actions, config.dueling))


def initial_memory(num: int, *, config: ml_collections.ConfigDict, env: Env):
  """The memory `act` starts `num` actors from (zeros), or None without a recurrent core."""
  return recurrent.initial(config, num)


def optimizer(config: ml_collections.ConfigDict, sizes: Sizes) -> optax.GradientTransformation:
  """RAdam, as the paper's implementation uses, after clipping to `max_grad_norm`."""
  return optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                     optax.radam(rollout_learner.learning_rate(config, sizes.gradient_steps)))


def init(key: jax.Array, *, config: ml_collections.ConfigDict, env: Env, sizes: Sizes) -> TrainState:
  """Parameters from `key`; environment i reset from fold_in(key, i) whatever device runs it."""
  return rollout_learner.init(key, config=config, env=env, network=network(config, env),
                              optimizer=optimizer(config, sizes))


def act(learner, obs: jax.Array, key: jax.Array, *, config, env: Env, greedy: bool, memory=None):
  """`qlearning.act`; with a recurrent core and `memory` (`initial_memory`), -> (actions, the memory after this
  step), and without `memory` from fresh memory."""
  if not config.recurrent:
    return qlearning.act(learner, obs, key, config=config, env=env, greedy=greedy)
  x = normalization.observations(learner.normalizer, obs, clip=config.obs_clip)
  q, after = recurrent.step(network(config, env), learner.params, x, memory, config)
  action = qlearning.choose(q, env.action_mask(obs), key, greedy=greedy, num_actions=env.num_actions)
  return action if memory is None else (action, after)


def _explorer(net, params, observe, eps: jax.Array, env: Env, *, config):
  """The rollout's epsilon-greedy policy (`qlearning.explore`), with memory if `config.recurrent`."""
  if not config.recurrent:
    return qlearning.epsilon_greedy(net, params, observe, eps, env)

  def policy(obs, keys, memory):
    q, memory = net.apply(params, observe(obs), memory)
    return (*qlearning.explore(q, env.action_mask(obs), keys, eps, env.num_actions), memory)

  return policy


def _q_values(net, params, batch: Batch, *, config) -> jax.Array:
  """Q-values (..., A) on a batch's observations; with memory, replaying its sequences."""
  if config.recurrent:
    return recurrent.replay(net, params, batch.obs, batch.start, batch.episode_end)
  return net.apply(params, batch.obs)


def update(state: TrainState, *, config: ml_collections.ConfigDict, env: Env, sizes: Sizes):
  """One PQN iteration on this device's environments: rollout, Q(lambda) returns, epochs of minibatch steps.

  Returns the new state and metrics as {name: (sum, count)}, identical on every device.
  """
  net, tx = network(config, env), optimizer(config, sizes)
  learner = state.learner
  params = learner.params
  observe = functools.partial(normalization.observations, learner.normalizer, clip=config.obs_clip)
  eps = qlearning.epsilon(config, state.update * sizes.steps_per_update)

  collected = rollout_learner.collect(state, _explorer(net, params, observe, eps, env, config=config), config=config,
                                      env=env)
  traj, actors, normalizer = collected.steps, collected.actors, collected.normalizer
  reward = config.reward_scale * normalization.rewards(normalizer, traj.reward, clip=config.reward_clip)

  # Targets once per rollout, from the network that acted: max_a Q (over the allowed a) at every pre-reset next state,
  # as acting computed it but where an episode was truncated.
  with jax.named_scope("advantages"):  # here Q(lambda) returns: the same part of an update as PPO's GAE
    if config.recurrent:
      max_q = lambda obs, memory: distributions.masked_max(net.apply(params, observe(obs), memory)[0],
                                                           env.action_mask(obs))
    else:
      max_q = lambda obs, memory: distributions.masked_max(net.apply(params, observe(obs)), env.action_mask(obs))
    q_tp1 = rollout_learner.next_values(traj.extras, max_q(actors.obs, actors.memory), traj, max_q)
    target = returns.lambda_returns(reward, q_tp1, traj.terminated, traj.episode_end, gamma=config.gamma,
                                    lambda_=config.q_lambda)
  memory = dict(episode_end=traj.episode_end, start=state.actors.memory) if config.recurrent else {}
  batch = Batch(obs=observe(traj.obs), action=traj.action, target=target, **memory)

  def minibatch_step(learner: rollout_learner.Learner, minibatch: Batch):
    def loss_fn(params):
      q = _q_values(net, params, minibatch, config=config)
      flat = lambda x: x.reshape((-1,) + x.shape[minibatch.action.ndim:])  # (T, B) samples with memory: one axis
      loss, q_mean, _ = q_loss(flat(q), flat(minibatch.action), flat(minibatch.target), loss="mse")
      return loss, q_mean

    with jax.named_scope("gradient"):
      (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(sharding.per_device(learner.params))
      grads, loss, q_mean = sharding.pmean((grads, loss, q_mean))
    learner = apply_gradients(tx, learner, grads)
    return learner, (loss, q_mean, optax.tree.norm(grads))

  def epoch(learner: rollout_learner.Learner, order: jax.Array):
    with jax.named_scope("minibatches"):
      batches = rollout_learner.split(batch, order, config)
    return jax.lax.scan(minibatch_step, learner, batches)

  learner, (loss, q_mean, grad_norm) = jax.lax.scan(epoch, learner,
                                                    rollout_learner.epoch_orders(collected.shuffle_key, config))
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
