"""Environment-stratified minibatches: epochs over a rollout that do not depend on the device count.

Each epoch, every environment shuffles its own T time steps with its own key; minibatch m takes
the steps at positions [m T/M, (m+1) T/M) of every environment's order. Every minibatch so holds
T/M steps of *every* environment, and the union of the devices' local minibatches is exactly the
global minibatch of a run on one device.
"""

import functools

import jax
import jax.numpy as jnp


def orders(keys: jax.Array, num_steps: int, epochs: int) -> jax.Array:
  """Each environment's shuffled time steps for each epoch, (epochs, E, T), from its key in `keys` (E, 2)."""
  epoch_keys = jax.vmap(functools.partial(jax.random.split, num=epochs))(keys)  # (E, epochs, 2)
  return jax.vmap(jax.vmap(jax.random.permutation, in_axes=(0, None)), in_axes=(1, None))(epoch_keys, num_steps)


def split(x: jax.Array, order: jax.Array, num_minibatches: int) -> jax.Array:
  """A rollout's leaf (T, E, ...) in one epoch's `order` (E, T), as (M, T/M * E, ...) minibatches."""
  x = x[order.T, jnp.arange(x.shape[1])]
  return x.reshape((num_minibatches, -1) + x.shape[2:])
