"""TD3 (Fujimoto et al. 2018) for continuous actions: a deterministic actor explored with Gaussian noise, a twin
critic bootstrapping from the smaller target value (clipped double Q), target policy smoothing, and an actor
delayed behind the critic.

One gradient step, on this device's slice of a global batch (`distrl.rl.twin_critic` runs the iteration):
  1. critic: toward y = G + discount * min_i Q_i'(s', a'), a' = the target actor's action plus clipped noise
     (`losses.smoothed_target_action`);
  2. every `policy_frequency`-th step of the run: the actor up Q_1(s, mu(s)), then both targets move by tau toward
     the online networks.
The smoothing noise is drawn for the global batch from the replicated key, so the step is the same on any device
count.
"""

import jax
import jax.numpy as jnp

from distrl.errors import require, require_positive
from distrl.rl import replay_learner, twin_critic
from distrl.td3 import losses


def _explore(action, noise, *, config):
  return losses.explore(action, noise, exploration_noise=config.exploration_noise)


def _greedy(action):
  return action


def _gradient_step(nets: twin_critic.Nets, learner: twin_critic.Learner, batch: replay_learner.Batch, noise, index, *,
                   config):
  next_action = losses.smoothed_target_action(nets.actor.apply(learner.target_actor, batch.next_obs), noise[0],
                                              policy_noise=config.policy_noise, noise_clip=config.noise_clip)
  learner, stats = twin_critic.critic_step(nets, learner, batch, next_action)

  def delayed(learner):
    def loss_fn(params):
      return losses.actor_loss(nets.critic.apply(learner.critic.params, batch.obs, nets.actor.apply(params, batch.obs))), ()

    learner, loss, _, grad_norm = twin_critic.actor_step(nets, learner, loss_fn)
    learner = learner.replace(
        target_actor=twin_critic.polyak(learner.actor.params, learner.target_actor, config.tau),
        target_critic=twin_critic.polyak(learner.critic.params, learner.target_critic, config.tau))
    return learner, (loss, grad_norm, jnp.float32(1))

  def wait(learner):
    return learner, (jnp.float32(0), jnp.float32(0), jnp.float32(0))

  learner, (loss, grad_norm, updated) = jax.lax.cond((index + 1) % config.policy_frequency == 0, delayed, wait,
                                                     learner)
  return learner, {**stats, "loss/actor": (loss, updated), "opt/actor_grad_norm": (grad_norm, updated)}


AGENT = twin_critic.Agent(name="td3", stochastic=False, explore=_explore, greedy=_greedy, gradient_step=_gradient_step,
                         target_actor=True)


def sizes(config, num_devices: int) -> replay_learner.Sizes:
  require(isinstance(config.policy_frequency, int) and config.policy_frequency >= 1,
          f"policy_frequency={config.policy_frequency!r} must be a whole number >= 1 (gradient steps per actor step)")
  require_positive(config, "noise_clip")
  for field in ("policy_noise", "exploration_noise"):
    require(config[field] >= 0, f"{field}={config[field]} must be >= 0")
  return twin_critic.sizes(config, num_devices)


def init(key, *, config, env, sizes):
  return twin_critic.init(key, config=config, env=env, sizes=sizes, agent=AGENT)


def update(state, *, config, env, sizes):
  return twin_critic.update(state, config=config, env=env, sizes=sizes, agent=AGENT)


def act(learner, obs, key, *, config, env, greedy: bool):
  return twin_critic.act(learner, obs, key, config=config, env=env, greedy=greedy, agent=AGENT)
