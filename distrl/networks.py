"""Flax modules: MLP torsos with orthogonal init, and the PPO actor-critic built from them."""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}


def orthogonal_dense(features: int, scale: float) -> nn.Dense:
  """A dense layer with orthogonal weights of gain `scale` and zero bias (the PPO initialisation)."""
  return nn.Dense(features, kernel_init=nn.initializers.orthogonal(scale), bias_init=nn.initializers.zeros)


class MLP(nn.Module):
  """Hidden layers with gain sqrt(2), then a linear head with gain `head_scale`.

  Input `x` is shaped (..., *obs_shape) with `obs_ndim` trailing observation axes, which are
  flattened; the output is (..., out_features).
  """

  hidden_sizes: Sequence[int]
  out_features: int
  head_scale: float
  activation: str = "tanh"
  obs_ndim: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[: x.ndim - self.obs_ndim] + (-1,)).astype(jnp.float32)
    for size in self.hidden_sizes:
      x = ACTIVATIONS[self.activation](orthogonal_dense(size, np.sqrt(2))(x))
    return orthogonal_dense(self.out_features, self.head_scale)(x)


class ActorCritic(nn.Module):
  """Separate policy and value networks (no shared torso), as in the PPO reference implementations.

  `logits(obs)` -> (..., num_actions); `value(obs)` -> (...); `__call__` -> both (used to init).
  """

  num_actions: int
  hidden_sizes: Sequence[int]
  activation: str = "tanh"
  obs_ndim: int = 1

  def setup(self):
    self.actor = MLP(self.hidden_sizes, self.num_actions, 0.01, self.activation, self.obs_ndim)
    self.critic = MLP(self.hidden_sizes, 1, 1.0, self.activation, self.obs_ndim)

  def logits(self, obs: jax.Array) -> jax.Array:
    return self.actor(obs)

  def value(self, obs: jax.Array) -> jax.Array:
    return self.critic(obs)[..., 0]

  def __call__(self, obs: jax.Array):
    return self.logits(obs), self.value(obs)
