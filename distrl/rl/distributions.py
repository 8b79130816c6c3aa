"""The policy distributions, as pytrees (so they vmap): PPO's categorical and diagonal Gaussian, and SAC's
tanh-squashed Gaussian.

Each holds a batch (..., ) of distributions; `sample` draws one action per distribution from one key
(vmap it for a key per environment), `log_prob`, `entropy` and `mode` are batched. Written here
rather than taken from distrax, whose TensorFlow Probability dependency lags the pinned JAX.

Action masks (`Env.action_mask`: True where an action is allowed) restrict a categorical policy
to the allowed actions (`Categorical.masked`), a value-based agent's greedy choice and bootstrap
(`masked_argmax`, `masked_max`) and its random choice (`uniform_allowed`).
"""

import math

import jax
import jax.numpy as jnp
from flax import struct


# The logit of a forbidden action: its probability exp(MASKED_LOGIT - logsumexp) is exactly 0 in float32, yet every
# log-probability stays finite (with -inf, the entropy's 0 * log 0 and its gradient would be NaN).
MASKED_LOGIT = float(jnp.finfo(jnp.float32).min)


def masked_argmax(values: jax.Array, mask: jax.Array | None) -> jax.Array:
  """argmax over the last axis of `values` (..., num_actions) among the actions `mask` allows (True), or over all
  of them if `mask` is None: the greedy action of a value-based agent. A row that allows nothing gives action 0."""
  if mask is None:
    return jnp.argmax(values, -1)
  return jnp.argmax(jnp.where(mask, values, -jnp.inf), -1)


def masked_max(values: jax.Array, mask: jax.Array | None) -> jax.Array:
  """The value (...) of `masked_argmax`'s action: max over the allowed actions, always finite (a row that allows
  nothing gives action 0's value, which a terminal state's zero discount then multiplies without a NaN)."""
  return jnp.take_along_axis(values, masked_argmax(values, mask)[..., None], -1)[..., 0]


def uniform_allowed(u: jax.Array, mask: jax.Array | None, num_actions: int) -> jax.Array:
  """A uniformly random allowed action from uniforms `u` (...) in [0, 1): the floor(u * k)-th of the k actions
  `mask` (..., num_actions) allows (True), counted from action 0; with no mask, floor(u * num_actions). A row that
  allows nothing gives action 0."""
  if mask is None:
    return jnp.minimum((u * num_actions).astype(jnp.int32), num_actions - 1)
  allowed = jnp.cumsum(mask.astype(jnp.int32), -1)  # (..., num_actions): how many allowed up to each action
  rank = jnp.minimum((u * allowed[..., -1]).astype(jnp.int32), jnp.maximum(allowed[..., -1] - 1, 0))
  return jnp.argmax(allowed > rank[..., None], -1)


@struct.dataclass
class Categorical:
  logits: jax.Array  # (..., num_actions)

  def masked(self, mask: jax.Array | None) -> "Categorical":
    """The distribution renormalised over the actions `mask` (..., num_actions) allows (True): forbidden actions
    get probability 0, so they are never sampled nor the mode, and add nothing to the entropy. None: unchanged."""
    if mask is None:
      return self
    return Categorical(logits=jnp.where(mask, self.logits, MASKED_LOGIT))

  def sample(self, key: jax.Array) -> jax.Array:
    return jax.random.categorical(key, self.logits)

  def log_prob(self, action: jax.Array) -> jax.Array:
    log_probs = jax.nn.log_softmax(self.logits)
    return jnp.take_along_axis(log_probs, action[..., None].astype(jnp.int32), -1)[..., 0]

  def entropy(self) -> jax.Array:
    log_probs = jax.nn.log_softmax(self.logits)
    return -jnp.sum(jnp.exp(log_probs) * log_probs, -1)

  def mode(self) -> jax.Array:
    return jnp.argmax(self.logits, -1)


@struct.dataclass
class DiagonalNormal:
  mean: jax.Array  # (..., action_dim)
  log_std: jax.Array  # (..., action_dim), as mean (PPO broadcasts one state-independent vector)

  def sample(self, key: jax.Array) -> jax.Array:
    return self.mean + jnp.exp(self.log_std) * jax.random.normal(key, self.mean.shape)

  def log_prob(self, action: jax.Array) -> jax.Array:
    z = (action - self.mean) * jnp.exp(-self.log_std)
    return jnp.sum(-0.5 * jnp.square(z) - self.log_std - 0.5 * math.log(2 * math.pi), -1)

  def entropy(self) -> jax.Array:
    return jnp.sum(self.log_std + 0.5 * math.log(2 * math.pi * math.e), -1)

  def mode(self) -> jax.Array:
    return self.mean


@struct.dataclass
class TanhNormal:
  """a = tanh(u), u ~ N(mean, exp(log_std)) per dimension: a Gaussian squashed into (-1, 1)^d (SAC's policy).

  The density of a follows by the change of variables a = tanh(u), da/du = 1 - tanh(u)^2:
      log p(a) = log N(u; mean, std) - sum_i log(1 - tanh(u_i)^2),
      log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))       (the same, without cancellation for large |u|).
  Actions are drawn by reparameterisation from standard normal noise (`squash`), so that a loss can take the
  gradient through them.
  """

  mean: jax.Array  # (..., action_dim), of u
  log_std: jax.Array  # (..., action_dim), of u

  def squash(self, noise: jax.Array):
    """The action for standard normal `noise` (..., action_dim), and its log-probability: -> (a, log p(a))."""
    u = self.mean + jnp.exp(self.log_std) * noise
    log_det = jnp.sum(2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u)), -1)
    return jnp.tanh(u), DiagonalNormal(self.mean, self.log_std).log_prob(u) - log_det

  def sample(self, key: jax.Array) -> jax.Array:
    return self.squash(jax.random.normal(key, self.mean.shape))[0]

  def mode(self) -> jax.Array:
    """tanh(mean): the deterministic action (the mode of u, squashed)."""
    return jnp.tanh(self.mean)
