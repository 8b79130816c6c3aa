"""An algorithm of your own: synchronous advantage actor-critic (A2C, Mnih et al. 2016) on distrl's contract.

  python -m distrl.launch --config=examples/a2c_config.py --workdir=runs/a2c

`config.algo = "examples.a2c"` names this module, which defines the four functions of the
contract (`distrl/algorithms.py`): `sizes`, `init`, `update`, `act`. distrl shards it over every
device, checkpoints and resumes it, logs and evaluates it, as it does its own algorithms.
`update` is written for one device's environments; `sharding.pmean` averages the gradients over
the devices, so the result does not depend on how many there are.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from distrl import envs, sharding
from distrl.rl import acting
from distrl.errors import require, require_positive
from distrl.rl.networks import ActorCritic
from distrl.rl.returns import gae
from distrl.rl.state import TrainState


@struct.dataclass
class Learner:
  params: Any
  opt_state: Any


@struct.dataclass
class Actors:  # one row per environment: distrl splits these over the devices
  env_state: Any
  obs: jax.Array
  key: jax.Array


@dataclasses.dataclass(frozen=True)
class Sizes:
  num_updates: int
  steps_per_update: int


def sizes(config, num_devices: int) -> Sizes:
  require_positive(config, "total_timesteps", "num_steps", "lr", "max_grad_norm")
  require(0 < config.gamma <= 1, f"gamma={config.gamma} must be in (0, 1]")
  steps_per_update = config.num_envs * config.num_steps
  require(config.total_timesteps >= steps_per_update, f"total_timesteps must be at least {steps_per_update}")
  return Sizes(num_updates=config.total_timesteps // steps_per_update, steps_per_update=steps_per_update)


def network(config, env) -> ActorCritic:
  return ActorCritic(num_actions=env.num_actions if env.discrete else env.action_dim,
                     hidden_sizes=tuple(config.hidden_sizes), activation=config.activation,
                     obs_ndim=len(env.observation_shape), continuous=not env.discrete)


def optimizer(config) -> optax.GradientTransformation:
  return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.rmsprop(config.lr, eps=1e-5))


def init(key, *, config, env, sizes) -> TrainState:
  param_key, env_key = jax.random.split(key)
  params = network(config, env).init(param_key, jnp.zeros(env.observation_shape))
  obs, env_state, keys = envs.reset_batch(env, env_key, jnp.arange(config.num_envs))  # env i from fold_in(key, i)
  return TrainState(update=jnp.zeros((), jnp.int32),
                    learner=Learner(params=params, opt_state=optimizer(config).init(params)),
                    actors=Actors(env_state=env_state, obs=obs, key=keys))


def act(learner, obs, key, *, config, env, greedy):
  policy = network(config, env).apply(learner.params, obs, method=ActorCritic.policy)
  return env.clip(policy.mode() if greedy else policy.sample(key))


def update(state, *, config, env, sizes):
  net, tx = network(config, env), optimizer(config)
  learner, actors = state.learner, state.actors
  next_key, rollout_key = jnp.unstack(jax.vmap(jax.random.split)(actors.key), axis=1)

  def policy(obs, keys):  # each environment samples from its own key
    distribution = net.apply(learner.params, obs, method=ActorCritic.policy)
    return jax.vmap(lambda key, d: d.sample(key))(keys, distribution), None

  env_state, obs, traj = acting.rollout(env, policy, actors.env_state, actors.obs, rollout_key, config.num_steps)

  def loss_fn(params):
    distribution, value = net.apply(params, traj.obs)
    value_tp1 = net.apply(params, traj.final_obs, method=ActorCritic.value)  # bootstrap truncated episodes
    advantage = gae(traj.reward, jax.lax.stop_gradient(value), jax.lax.stop_gradient(value_tp1), traj.terminated,
                    traj.episode_end, gamma=config.gamma, gae_lambda=config.gae_lambda)
    policy_loss = -jnp.mean(distribution.log_prob(traj.action) * advantage)
    value_loss = 0.5 * jnp.mean(jnp.square(advantage + jax.lax.stop_gradient(value) - value))
    entropy = jnp.mean(distribution.entropy())
    return policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy, (policy_loss, value_loss, entropy)

  grads, terms = jax.grad(loss_fn, has_aux=True)(sharding.per_device(learner.params))
  grads, terms = sharding.pmean((grads, terms))  # every device holds an equal share: the mean is the global one
  updates, opt_state = tx.update(grads, learner.opt_state, learner.params)
  learner = Learner(params=optax.apply_updates(learner.params, updates), opt_state=opt_state)

  policy_loss, value_loss, entropy = terms
  one = lambda x: (x, jnp.float32(1))  # metrics are (sum, count); these are the same on every device already
  metrics = {**acting.episode_metrics(traj), "loss/policy": one(policy_loss), "loss/value": one(value_loss),
             "loss/entropy": one(entropy), "opt/grad_norm": one(optax.tree.norm(grads))}
  return state.replace(learner=learner, actors=actors.replace(env_state=env_state, obs=obs, key=next_key)), metrics
