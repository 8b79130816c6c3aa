"""PPO (Schulman et al. 2017), discrete or continuous actions, with or without memory: `sizes`, `init`, the
per-device `update`, `act`; `behaviour` and `learn`, the halves of `update`, for host environments.

It is the actor-critic iteration of `distrl.rl.actor_critic` (networks, acting, rollouts, epochs of
environment-stratified minibatch steps, `pmean` over devices) with PPO's `Objective`: GAE's advantages and value
targets (`distrl.rl.returns.gae`) and the clipped surrogate (`distrl.ppo.losses`).
"""

import functools

import ml_collections

from distrl.errors import require
from distrl.ppo import losses
from distrl.rl import acting, actor_critic, returns, rollout_learner


def _gae_targets(reward, value, value_tp1, steps: acting.Step, log_rho, config):
  advantage = returns.gae(reward, value, value_tp1, steps.terminated, steps.episode_end, gamma=config.gamma,
                          gae_lambda=config.gae_lambda)
  return advantage, advantage + value


def _clipped_loss(distribution, value, batch: actor_critic.Batch, advantage, config) -> losses.Losses:
  return losses.ppo_loss(log_prob=distribution.log_prob(batch.action), old_log_prob=batch.log_prob,
                         advantage=advantage, value=value, old_value=batch.value, target=batch.target,
                         entropy=distribution.entropy(), clip_eps=config.clip_eps, vf_coef=config.vf_coef,
                         ent_coef=config.ent_coef, clip_value_loss=config.clip_value_loss)


PPO = actor_critic.Objective(name="ppo", targets=_gae_targets, loss=_clipped_loss)


def sizes(config: ml_collections.ConfigDict, num_devices: int) -> rollout_learner.Sizes:
  """Validates the config's sizes and PPO's fields against the device count and derives the rest."""
  require(0 <= config.gae_lambda <= 1, f"gae_lambda={config.gae_lambda} must be in [0, 1]")
  require(config.clip_eps > 0, f"clip_eps={config.clip_eps} must be positive")
  return rollout_learner.sizes(config, num_devices)


init, act, behaviour = actor_critic.init, actor_critic.act, actor_critic.behaviour
initial_memory = actor_critic.initial_memory
update = functools.partial(actor_critic.update, objective=PPO)
learn = functools.partial(actor_critic.learn, objective=PPO)
