"""SAC (Haarnoja et al. 2018) for continuous actions: a tanh-squashed Gaussian policy, a twin critic with
Polyak-averaged targets, and a temperature alpha learned toward a target entropy (-|A| by default).

One gradient step, on this device's slice of a global batch (`distrl.rl.twin_critic` runs the iteration):
  1. critic: toward y = G + discount * (min_i Q_i'(s', a') - alpha log pi(a' | s')), a' ~ pi(. | s');
  2. actor: down mean(alpha log pi(a | s) - min_i Q_i(s, a)), a ~ pi(. | s) reparameterised, on the new critic;
  3. temperature: down mean(alpha (-log pi(a | s) - target entropy)) (if `learn_alpha`);
  4. target critic <- tau * critic + (1 - tau) * target critic.
The noise of both draws is drawn for the global batch from the replicated key, so the step is the same on any
device count.
"""

import jax
import jax.numpy as jnp

from distrl import sharding
from distrl.errors import require, require_positive
from distrl.rl import replay_learner, twin_critic
from distrl.rl.state import apply_gradients
from distrl.sac import losses


def _explore(dist, noise, *, config):
  return dist.squash(noise)[0]


def _greedy(dist):
  return dist.mode()


def target_entropy(config, action_dim: int) -> float:
  return config.target_entropy_per_dim * action_dim


def _gradient_step(nets: twin_critic.Nets, learner: twin_critic.Learner, batch: replay_learner.Batch, noise, index, *,
                   config):
  del index
  next_noise, actor_noise = noise
  alpha = jnp.exp(learner.temperature.params)
  next_action, next_log_prob = nets.actor.apply(learner.actor.params, batch.next_obs).squash(next_noise)
  learner, stats = twin_critic.critic_step(nets, learner, batch, next_action, next_log_prob, alpha)

  def loss_fn(params):
    action, log_prob = nets.actor.apply(params, batch.obs).squash(actor_noise)
    return losses.actor_loss(nets.critic.apply(learner.critic.params, batch.obs, action), log_prob, alpha), log_prob

  learner, loss, log_prob, grad_norm = twin_critic.actor_step(nets, learner, loss_fn)
  goal = target_entropy(config, next_action.shape[-1])
  with jax.named_scope("temperature"):
    temperature_loss, grad = jax.value_and_grad(losses.temperature_loss)(
        sharding.per_device(learner.temperature.params), log_prob, goal)
    grad, temperature_loss, entropy = sharding.pmean((grad, temperature_loss, -jnp.mean(log_prob)))
  if config.learn_alpha:
    learner = learner.replace(temperature=apply_gradients(nets.temperature_tx, learner.temperature, grad))
  learner = learner.replace(target_critic=twin_critic.polyak(learner.critic.params, learner.target_critic, config.tau))
  once = twin_critic.once
  return learner, {**stats, "loss/actor": once(loss), "opt/actor_grad_norm": once(grad_norm),
                   "loss/temperature": once(temperature_loss), "sac/alpha": once(alpha), "sac/entropy": once(entropy)}


AGENT = twin_critic.Agent(name="sac", stochastic=True, explore=_explore, greedy=_greedy, gradient_step=_gradient_step,
                         temperature=True, noise_draws=2)


def sizes(config, num_devices: int) -> replay_learner.Sizes:
  require_positive(config, "initial_alpha")
  require(isinstance(config.learn_alpha, bool), f"learn_alpha={config.learn_alpha!r} must be True or False")
  return twin_critic.sizes(config, num_devices)


def init(key, *, config, env, sizes):
  return twin_critic.init(key, config=config, env=env, sizes=sizes, agent=AGENT)


def update(state, *, config, env, sizes):
  return twin_critic.update(state, config=config, env=env, sizes=sizes, agent=AGENT)


def act(learner, obs, key, *, config, env, greedy: bool):
  return twin_critic.act(learner, obs, key, config=config, env=env, greedy=greedy, agent=AGENT)
