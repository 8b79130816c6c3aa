"""DQN (Mnih et al. 2015) for discrete actions: `sizes`, `init`, the per-device `update`, `act`.

Options: n-step returns (`n_step`), double DQN (`double_dqn`), a dueling head (`dueling`),
prioritised replay (`prioritized`, Schaul et al. 2016), LayerNorm in the Q-network (`layer_norm`), distributions
of returns instead of values (`distributional`: "c51", Bellemare et al. 2017, `num_atoms` from `v_min` to `v_max`
and the KL loss; "qr", QR-DQN, Dabney et al. 2018, `num_atoms` quantiles and the quantile Huber loss; "iqn", implicit
quantile networks, Dabney et al. 2018, the quantile Huber loss over `num_tau_samples` sampled fractions of the online
network against `num_tau_prime_samples` of the target's, a* by the mean over `num_quantile_samples`; each loss
ranks priorities; acting and evaluation greedy by the distributions' means), noisy head layers in place of
epsilon-greedy (`noisy`, Fortunato et al. 2018: epsilon is 0, `start_e` and `end_e` unused; each environment acts on
its own noise sample at every step, the online and the target network take independent samples at every gradient
step, all from keys in the state; evaluation acts on the mean weights). All six together are Rainbow
(configs/rainbow.py).

One iteration (`distrl.rl.replay_learner`, which DQN shares with SAC and TD3): every environment takes
`num_steps` epsilon-greedy steps into its replay row, then (after `learning_starts` environment steps)
`gradient_steps` gradient steps, each on a global batch of `batch_size` transitions drawn the same whatever the
device count. The target network moves towards the online network by `tau` every `target_update_interval`
environment steps (tau = 1: a hard copy).

With prioritized replay, positions are drawn in proportion to priority over the whole buffer
(`priorities.choose`) from the same replicated key, and the new priorities are written back to the rows of
whichever device holds them.
"""

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from distrl import sharding
from distrl.rl import acting, normalization, qlearning, replay, replay_learner, returns, td_loss
from distrl.dqn import losses, priorities
from distrl.envs import Env
from distrl.errors import require, require_positive
from distrl.rl.networks import QNetwork
from distrl.rl.noisy import NOISE
from distrl.rl.state import TrainState, apply_gradients


@struct.dataclass
class Learner:
  params: Any
  target_params: Any
  opt_state: Any
  normalizer: normalization.Normalizer  # observation / return statistics (fields None when off)
  key: jax.Array  # (2,) uint32, the same on every device: which transitions each batch takes
  max_priority: jax.Array | None  # the largest priority given so far (new transitions get it), if prioritized


Actors, Batch, Sizes = replay_learner.Actors, replay_learner.Batch, replay_learner.Sizes


def sizes(config: ml_collections.ConfigDict, num_devices: int) -> Sizes:
  """Validates the config's sizes against the device count and derives the rest."""
  require_positive(config, "lr", "target_update_interval", "max_grad_norm")
  require(config.adam_eps >= 0, f"adam_eps={config.adam_eps} must be >= 0")
  qlearning.check(config)
  require(config.loss in ("mse", "huber"), f"loss={config.loss!r} must be 'mse' or 'huber'")
  for field in ("double_dqn", "prioritized", "anneal_lr", "noisy"):
    require(isinstance(config[field], bool), f"{field}={config[field]!r} must be True or False")
  require(0 <= config.priority_alpha <= 1,
          f"priority_alpha={config.priority_alpha} must be in [0, 1] (0: uniform; 0.6 is common)")
  require(0 <= config.priority_beta <= 1,
          f"priority_beta={config.priority_beta} must be in [0, 1] (it anneals to 1; 0.4 is common)")
  require(config.priority_eps > 0, f"priority_eps={config.priority_eps} must be > 0 (e.g. 1e-6): a zero priority "
                                   f"would never be sampled again")
  require(config.distributional in ("none", "c51", "qr", "iqn"),
          f"distributional={config.distributional!r} must be 'none' (values), 'c51' (categorical distributions), "
          f"'qr' (quantiles) or 'iqn' (implicit quantiles)")
  if config.distributional == "iqn":
    for field in ("num_tau_samples", "num_tau_prime_samples", "num_quantile_samples", "quantile_embedding_dim"):
      require(isinstance(config[field], int) and not isinstance(config[field], bool) and config[field] >= 1,
              f"{field}={config[field]!r} must be a whole number >= 1 (IQN's published value: 64, 64, 32, 64)")
  if config.distributional in ("c51", "qr"):
    require(isinstance(config.num_atoms, int) and config.num_atoms >= 2,
            f"num_atoms={config.num_atoms!r} must be a whole number >= 2 (C51's is 51, QR-DQN's 200)")
  if config.distributional == "c51":
    require(config.v_min < config.v_max, f"v_min={config.v_min} must be below v_max={config.v_max}: the support "
                                         f"runs from v_min to v_max")
  if config.noisy:
    require(config.noisy_sigma0 > 0, f"noisy_sigma0={config.noisy_sigma0} must be > 0: it scales the noisy layers' "
                                     f"initial noise (the paper's 0.5)")
  require(config.target_update_interval < 2**31, f"target_update_interval={config.target_update_interval} must be "
                                                 f"below 2**31 (environment steps are int32 on the devices)")
  return replay_learner.sizes(config, num_devices)


def learning_rate(config: ml_collections.ConfigDict, sizes: Sizes) -> optax.Schedule:
  """Constant, or linear from `lr` to 0 over every gradient step of the run if `anneal_lr`."""
  if not config.anneal_lr:
    return optax.constant_schedule(config.lr)
  learning_updates = max(1, sizes.num_updates - sizes.first_learning_update)
  return optax.linear_schedule(config.lr, 0.0, learning_updates * sizes.gradient_steps)


def optimizer(config: ml_collections.ConfigDict, sizes: Sizes) -> optax.GradientTransformation:
  adam = optax.adam(learning_rate(config, sizes), eps=config.adam_eps)
  return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam)


def init(key: jax.Array, *, config: ml_collections.ConfigDict, env: Env, sizes: Sizes) -> TrainState:
  """Parameters from `key`; environment i reset from fold_in(key, i) whatever device runs it."""
  param_key, env_key, sample_key = jax.random.split(key, 3)
  params = qlearning.network(config, env).init(param_key, jnp.zeros(env.observation_shape))
  normalizer = normalization.init(env.observation_shape, normalize_obs=config.normalize_obs,
                                  scale_rewards=config.scale_rewards)
  prioritized = config.prioritized
  priority = priorities.init(config.num_envs, sizes.capacity) if prioritized else None
  actors = replay_learner.init_actors(env, env_key, jnp.int32(0), config=config, sizes=sizes, normalizer=normalizer,
                                      priority=priority)
  return TrainState(update=jnp.zeros((), jnp.int32),
                    learner=Learner(params=params, target_params=params, opt_state=optimizer(config, sizes).init(params),
                                    normalizer=normalizer, key=sample_key,
                                    max_priority=jnp.float32(1.0) if prioritized else None),
                    actors=actors)


act = qlearning.act


class Noise(NamedTuple):
  """A gradient step's keys of the noisy layers' samples (`noisy`): one for the online network's passes, another for
  the target network's; replicated, so every device's slice of the batch sees the same sample."""

  online: jax.Array
  target: jax.Array


class Fractions(NamedTuple):
  """A gradient step's IQN quantile fractions, each sample's own (`returns.quantile.sampled`): drawn for the global
  batch from the replicated key, independently for each pass, and sliced to this device's samples."""

  online: jax.Array  # (B, num_tau_samples): the online network's quantiles at s_tm1, which the loss fits
  target: jax.Array  # (B, num_tau_prime_samples): the target network's at s_t, the target samples
  selection: jax.Array  # (B, num_quantile_samples): the quantiles at s_t whose mean chooses a*


def draw_fractions(key: jax.Array, *, config) -> Fractions:
  """The global batch's fractions (`Fractions`) from `key`, one key per pass."""
  online, target, selection = jax.random.split(key, 3)
  batch = config.batch_size
  return Fractions(online=returns.quantile.sampled(online, (batch, config.num_tau_samples)),
                   target=returns.quantile.sampled(target, (batch, config.num_tau_prime_samples)),
                   selection=returns.quantile.sampled(selection, (batch, config.num_quantile_samples)))


def gradient_step(net: nn.Module, tx: optax.GradientTransformation, config, learner: Learner, batch: Batch,
                  weights: jax.Array | None, noise: Noise | None = None, fractions: Fractions | None = None):
  """One gradient step on this device's slice of a batch (B, ...); gradients averaged over devices. Noisy layers
  take their samples from `noise`'s keys (none: their mean weights); IQN's quantiles are at `fractions`.

  Returns (learner, td errors (B,), (loss, mean Q, gradient norm)).
  """

  distributional = qlearning.distributional(config) != "none"
  online_rngs, target_rngs = ({}, {}) if noise is None else ({NOISE: noise.online}, {NOISE: noise.target})

  def loss_fn(params):
    online = functools.partial(net.apply, params, rngs=online_rngs)
    if fractions is not None:
      target = functools.partial(net.apply, learner.target_params, rngs=target_rngs)
      return implicit_quantile_loss(online, target, batch, weights, fractions, double_dqn=config.double_dqn)
    out_t_target = net.apply(learner.target_params, batch.next_obs, distributional, rngs=target_rngs)
    if config.double_dqn:  # one online pass over obs and next_obs: on a CPU a step costs per operation, not per row
      out_both = online(jnp.concatenate([batch.obs, batch.next_obs]), distributional)
      out_tm1, out_t_online = out_both[:len(batch.obs)], jax.lax.stop_gradient(out_both[len(batch.obs):])
    else:
      out_tm1, out_t_online = online(batch.obs, distributional), None
    if distributional:
      return distributional_loss(net, out_tm1, out_t_target, out_t_online, batch, weights)
    y = returns.double_q_target(batch.n_step_return, batch.discount, out_t_target, out_t_online,
                                batch.next_action_mask)
    loss, q_mean, td = td_loss.q_loss(out_tm1, batch.action, y, weights, loss=config.loss)
    return loss, (q_mean, td)

  with jax.named_scope("gradient"):
    (loss, (q_mean, td)), grads = jax.value_and_grad(loss_fn, has_aux=True)(sharding.per_device(learner.params))
    grads, loss, q_mean = sharding.pmean((grads, loss, q_mean))
  learner = apply_gradients(tx, learner, grads)
  return learner, td, (loss, q_mean, optax.tree.norm(grads))


def distributional_loss(net: QNetwork, out_tm1, out_t_target, out_t_online, batch: Batch,
                        weights: jax.Array | None):
  """C51's KL or QR-DQN's quantile loss on the networks' distributions (B, A, N), the greedy action by their means.
  -> (loss, (mean Q of the actions taken, the per-sample loss, which ranks priorities as |td| does for DQN))."""
  if net.distributional == "c51":
    target_of, loss_of = functools.partial(returns.categorical_target, atoms=net.atoms()), td_loss.categorical_loss
  else:
    target_of, loss_of = returns.quantile_target, td_loss.quantile_loss
  q_t_online = None if out_t_online is None else net.mean(out_t_online)
  target = target_of(batch.n_step_return, batch.discount, out_t_target, q_t_online=q_t_online,
                     mask_t=batch.next_action_mask)
  loss, per_sample = loss_of(out_tm1, batch.action, target, weights)
  q_taken = jnp.take_along_axis(net.mean(out_tm1), batch.action[:, None], axis=1)[:, 0]
  return loss, (jnp.mean(q_taken), per_sample)


def implicit_quantile_loss(online, target, batch: Batch, weights: jax.Array | None, fractions: Fractions, *,
                           double_dqn: bool):
  """IQN's loss (Dabney et al. 2018): the quantile Huber loss (kappa 1) of the online network's quantiles
  Z_tau_i(s_tm1, a_tm1) against the targets G + discount Z'_tau'_j(s_t, a*) over every pair (i, j), with

      a* = argmax_a (1 / K) sum_k Z_tau_k(s_t, a)    (the target network's; the online network's with double Q)

  `online` and `target` apply the networks (obs, distribution, tau=...). -> (loss, (mean Q of the actions taken,
  the per-sample loss, which ranks priorities))."""
  quantiles_tm1 = online(batch.obs, True, tau=fractions.online)  # (B, A, N)
  quantiles_t = target(batch.next_obs, True, tau=fractions.target)  # (B, A, N')
  q_t_selector = jax.lax.stop_gradient((online if double_dqn else target)(batch.next_obs, tau=fractions.selection))
  samples = returns.quantile_target(batch.n_step_return, batch.discount, quantiles_t, q_t_online=q_t_selector,
                                    mask_t=batch.next_action_mask)
  loss, per_sample = td_loss.quantile_loss(quantiles_tm1, batch.action, samples, weights, tau=fractions.online)
  q_taken = jnp.take_along_axis(jnp.mean(quantiles_tm1, axis=-1), batch.action[:, None], axis=1)[:, 0]
  return loss, (jnp.mean(q_taken), per_sample)


def draw(buffer: replay.Transition, priority: jax.Array | None, key: jax.Array, where: replay.Starts, *, config,
         sizes: Sizes, normalizer: normalization.Normalizer):
  """The global batch (the same on every device) and where its samples are in this device's rows: positions drawn
  from `key` (replicated) uniformly over every start slot, or by priority. -> (Batch (B, ...), priorities.Draw or
  None)."""
  if priority is None:
    row, owned, slot = replay_learner.uniform_positions(key, buffer, where, config=config, sizes=sizes)
    return replay_learner.read(buffer, row, owned, slot, config=config, normalizer=normalizer), None
  drawn = priorities.choose(key, priority, replay.valid(where, sizes.capacity), config.batch_size)
  batch = replay_learner.read(buffer, drawn.row, drawn.owned, drawn.slot, config=config, normalizer=normalizer,
                              priority=drawn.priority)
  return batch, drawn


def update(state: TrainState, *, config: ml_collections.ConfigDict, env: Env, sizes: Sizes):
  """One DQN iteration on this device's environments. Returns (state, {name: (sum, count)})."""
  net, tx = qlearning.network(config, env), optimizer(config, sizes)
  learner = state.learner
  observe = functools.partial(normalization.observations, learner.normalizer, clip=config.obs_clip)
  at = replay_learner.progress(state.update, config=config, sizes=sizes)
  if config.noisy:  # noisy layers explore: no epsilon
    eps, policy = jnp.float32(0), qlearning.noisy_greedy(net, learner.params, observe, env)
  else:
    eps = qlearning.epsilon(config, at.steps_before)
    policy = qlearning.epsilon_greedy(net, learner.params, observe, eps, env)
  collected = replay_learner.collect(state.actors, learner.normalizer, policy, at.added, config=config, sizes=sizes,
                                     env=env)
  if config.prioritized:  # new transitions get the largest priority so far
    collected = collected.replace(actors=collected.actors.replace(
        priority=priorities.write(collected.actors.priority, learner.max_priority, at.added, sizes.num_steps)))
  learner_key, sample_key = jax.random.split(learner.key)
  (learner, priority), stats, trained = _learn(at, learner, collected, sample_key, net=net, tx=tx, observe=observe,
                                               config=config, sizes=sizes, env=env)
  actors = collected.actors.replace(priority=priority)

  target = _moved_target(learner, at, config=config)
  # The observations of this iteration join the statistics for the next one.
  learner = learner.replace(target_params=target, key=learner_key,
                            normalizer=normalization.update_observations(collected.normalizer, collected.steps.obs))
  metrics = _metrics(collected.steps, stats, trained, eps, state.update, config=config, sizes=sizes)
  return state.replace(learner=learner, actors=actors), metrics


def _learn(at: replay_learner.Progress, learner: Learner, collected: replay_learner.Collected, key: jax.Array, *,
           net: nn.Module, tx: optax.GradientTransformation, observe, config, sizes: Sizes, env: Env):
  """`gradient_steps` gradient steps, each on a batch drawn from the replay rows with its own key from `key`, if
  this iteration learns. -> ((learner, priority), (loss, mean Q, gradient norm), trained)."""
  buffer, normalizer = collected.actors.replay, collected.normalizer
  beta = optax.linear_schedule(config.priority_beta, 1.0, config.total_timesteps)(at.steps_before)

  def one(carry, step):
    learner, priority = carry
    key, noise, fractions = step[1], None, None
    if config.noisy:  # the online and the target network's samples, independent of each other and of the draw
      key, online, target = jax.random.split(key, 3)
      noise = Noise(online=online, target=target)
    if net.distributional == "iqn":  # IQN's fractions, as independent
      key, fraction_key = jax.random.split(key)
      fractions = replay_learner.mine(draw_fractions(fraction_key, config=config), sizes)
    with jax.named_scope("sampling"):
      batch, drawn = draw(buffer, priority, key, at.where, config=config, sizes=sizes, normalizer=normalizer)
      batch = batch.replace(obs=observe(batch.obs), next_obs=observe(batch.next_obs),
                            next_action_mask=env.action_mask(batch.next_obs))  # read before normalising
    weights = None
    if config.prioritized:
      weights = losses.importance_weights(batch.priority / drawn.total, drawn.minimum / drawn.total, beta=beta)
      weights = replay_learner.mine(weights, sizes)
    learner, td, stats = gradient_step(net, tx, config, learner, replay_learner.mine(batch, sizes), weights, noise,
                                       fractions)
    if config.prioritized:
      new = (jnp.abs(sharding.gather(td)) + config.priority_eps) ** config.priority_alpha  # (B,), global order
      priority = priorities.assign(priority, drawn, new)
      learner = learner.replace(max_priority=jnp.maximum(learner.max_priority, jnp.max(new)))
    return (learner, priority), stats

  return replay_learner.gated_steps(at.learning, one, (learner, collected.actors.priority), key, sizes=sizes)


def _moved_target(learner: Learner, at: replay_learner.Progress, *, config):
  """The target network, moved by `tau` towards the online one when this iteration learned and crossed a multiple of
  target_update_interval environment steps."""
  interval = config.target_update_interval
  crossed = at.steps_after // interval > at.steps_before // interval
  tau = jnp.where(crossed & at.learning, config.tau, 0.0)
  with jax.named_scope("target"):
    return optax.incremental_update(learner.params, learner.target_params, tau)


def _metrics(traj: acting.Step, stats, trained: jax.Array, eps: jax.Array, update: jax.Array, *, config,
             sizes: Sizes) -> dict:
  """The iteration's metrics as {name: (sum, count)}; the gradient steps' (loss, mean Q, gradient norm) count only
  where it trained."""
  loss, q_mean, grad_norm = stats
  return {
      **acting.episode_metrics(traj),
      **replay_learner.where_trained({"loss/total": loss, "dqn/q_mean": q_mean, "opt/grad_norm": grad_norm}, trained),
      "dqn/epsilon": (eps, jnp.float32(1)),
      "opt/lr": (learning_rate(config, sizes)(replay_learner.gradient_steps_so_far(update, sizes)), jnp.float32(1)),
  }
