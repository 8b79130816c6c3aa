"""What the value-based algorithms (DQN, PQN) share: the Q-network of a config, epsilon-greedy acting, `act`.

Both configs have the fields read here: `hidden_sizes`, `activation`, `torso`, `dueling`, `layer_norm`
(the network), `start_e`, `end_e`, `exploration_steps` (the exploration schedule), `obs_clip`; and both
learners have `params` and `normalizer`.

DQN's config also has `distributional` (the head learns distributions of returns) and `noisy` (noisy head layers
explore in place of epsilon-greedy); PQN's has neither, and reads as "none" and False. With IQN's head the rollout
policies act on the mean over K fractions that each environment samples afresh at every step (`acting_fractions`),
greedy evaluation (`act`) on K fixed ones.

Where the environment has an action mask (`Env.action_mask`), acting chooses among the allowed actions
only, greedy and random choices alike, and the targets bootstrap from the best allowed action.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from distrl.rl import acting, distributions, normalization
from distrl.envs import Env
from distrl.errors import require, require_positive
from distrl.rl.networks import QNetwork
from distrl.rl.noisy import NOISE
from distrl.rl.returns import quantile


def check(config: ml_collections.ConfigDict) -> None:
  """The shared fields: a ConfigError naming the first bad one."""
  for field in ("dueling", "layer_norm"):
    require(isinstance(config[field], bool), f"{field}={config[field]!r} must be True or False")
  require(0 <= config.end_e <= config.start_e <= 1,
          f"epsilon must decay within [0, 1]: got start_e={config.start_e}, end_e={config.end_e}")
  require_positive(config, "exploration_steps")
  for field in ("total_timesteps", "exploration_steps"):  # epsilon's schedule reads the step count
    require(config[field] < 2**31, f"{field}={config[field]} must be below 2**31 (environment steps are int32 on "
                                   f"the devices)")


def network(config: ml_collections.ConfigDict, env: Env) -> QNetwork:
  """Q-values (..., num_actions) from observations (..., *obs_shape); with DQN's `distributional` ("c51", "qr",
  "iqn") their distributions too (`QNetwork`)."""
  head = distributional(config)
  atoms = dict(num_atoms=config.num_atoms, v_min=config.v_min, v_max=config.v_max) if head in ("c51", "qr") else {}
  if head == "iqn":
    atoms = dict(num_quantile_samples=config.num_quantile_samples,
                 quantile_embedding_dim=config.quantile_embedding_dim)
  noise = dict(noisy=True, noisy_sigma0=config.noisy_sigma0) if noisy(config) else {}
  return QNetwork(num_actions=env.num_actions, hidden_sizes=tuple(config.hidden_sizes), activation=config.activation,
                  obs_ndim=len(env.observation_shape), torso=config.torso, dueling=config.dueling,
                  layer_norm=config.layer_norm, distributional=head, **atoms, **noise)


def distributional(config: ml_collections.ConfigDict) -> str:
  """What the Q-network learns: "none" (values), "c51" (distributions over a support), "qr" (quantiles), "iqn"
  (the quantile function)."""
  return config.get("distributional", "none")


def noisy(config: ml_collections.ConfigDict) -> bool:
  """Whether the Q-network's head layers are noisy (`noisy.NoisyDense`), exploring in place of epsilon-greedy."""
  return config.get("noisy", False)


def epsilon(config: ml_collections.ConfigDict, env_steps: jax.Array) -> jax.Array:
  """Linear from start_e to end_e over the first `exploration_steps` environment steps (global), then flat."""
  return optax.linear_schedule(config.start_e, config.end_e, config.exploration_steps)(env_steps)


def explore(q: jax.Array, mask: jax.Array | None, keys: jax.Array, eps: jax.Array, num_actions: int):
  """Epsilon-greedy choices on Q-values (E, A): with probability `eps` a uniformly random allowed action, else the
  allowed argmax Q. Each environment draws both of its choices from one call on its own key (`keys` (E, 2)): two
  uniforms u, explore if u_0 < eps, and the random action from u_1 (`distributions.uniform_allowed`).
  -> (actions, max_a Q(s, a) over the allowed actions: what PQN bootstraps from)."""
  greedy = distributions.masked_argmax(q, mask)
  u = jax.vmap(lambda key: jax.random.uniform(key, (2,)))(keys)
  random_action = distributions.uniform_allowed(u[:, 1], mask, num_actions).astype(greedy.dtype)
  return jnp.where(u[:, 0] < eps, random_action, greedy), distributions.masked_max(q, mask)


def acting_fractions(net: QNetwork, keys: jax.Array) -> tuple[jax.Array, jax.Array | None]:
  """IQN's fractions to act on: each environment's key (E, 2) split into the key it goes on acting with and one for
  its own `num_quantile_samples` fractions (E, K), drawn afresh at every step. Other heads: the keys as they are,
  and no fractions (None), so that their draws stay what they were."""
  if net.distributional != "iqn":
    return keys, None
  pairs = jax.vmap(jax.random.split)(keys)  # (E, 2, 2)
  return pairs[:, 0], jax.vmap(lambda key: quantile.sampled(key, (net.num_quantile_samples,)))(pairs[:, 1])


def epsilon_greedy(net: nn.Module, params, observe, eps: jax.Array, env: Env) -> acting.Policy:
  """The rollout policy: `explore` on the Q-values of `params` (IQN's: at each environment's sampled fractions);
  beside the action it returns max_a Q(s, a)."""
  def policy(obs, keys):
    keys, tau = acting_fractions(net, keys)
    return explore(net.apply(params, observe(obs), tau=tau), env.action_mask(obs), keys, eps, env.num_actions)

  return policy


def noisy_greedy(net: nn.Module, params, observe, env: Env) -> acting.Policy:
  """The rollout policy of a network with noisy layers: the allowed argmax of Q-values with noise, each
  environment's own sample drawn from its own key at every step, so that parallel environments explore
  independently and a rollout is the same whichever device runs it (as epsilon-greedy's draws). Beside the action
  it returns max_a Q(s, a). IQN's head: at each environment's sampled fractions too."""
  def policy(obs, keys):
    keys, tau = acting_fractions(net, keys)
    q = jax.vmap(lambda o, key, t: net.apply(params, o, tau=t, rngs={NOISE: key}))(observe(obs), keys, tau)
    mask = env.action_mask(obs)
    return distributions.masked_argmax(q, mask), distributions.masked_max(q, mask)

  return policy


def choose(q: jax.Array, mask: jax.Array | None, key: jax.Array, *, greedy: bool, num_actions: int) -> jax.Array:
  """The allowed argmax of Q-values (B, A) if `greedy`, else a uniformly random allowed action from `key`."""
  if not greedy:
    return distributions.uniform_allowed(jax.random.uniform(key, q.shape[:1]), mask, num_actions)
  return distributions.masked_argmax(q, mask)


def act(learner, obs: jax.Array, key: jax.Array, *, config, env: Env, greedy: bool) -> jax.Array:
  """Actions for a batch of observations (B, *obs_shape): the allowed argmax Q if `greedy`, else a uniformly
  random allowed action. Noisy layers act with their mean weights (no noise); IQN's Q is the mean quantile at the
  K fixed midpoints (2k + 1) / 2K (`QNetwork` without `tau`), so that the evaluation draws nothing."""
  q = network(config, env).apply(learner.params, normalization.observations(learner.normalizer, obs,
                                                                            clip=config.obs_clip))
  return choose(q, env.action_mask(obs), key, greedy=greedy, num_actions=env.num_actions)
