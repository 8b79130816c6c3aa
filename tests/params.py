"""Test data drawn by numpy rather than JAX: a network's parameters and random inputs without a compile (JAX's random
draws and the networks' orthogonal init, QR decompositions, take seconds each to compile on the CPU)."""

import jax
import numpy as np


def like(shapes, seed: int = 0):
  """Parameters of the shapes `shapes` (`jax.eval_shape(net.init, ...)`) as the networks' init makes them: weights of
  variance 1 / fan-in, zero biases."""
  rng = np.random.default_rng(seed)
  draw = lambda leaf: (rng.standard_normal(leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1
                       else np.zeros(leaf.shape)).astype(np.float32)
  return jax.tree.map(draw, shapes)


def init(net, *inputs, seed: int = 0):
  """`like` the parameters `net.init(key, *inputs)` makes."""
  return like(jax.eval_shape(net.init, jax.random.PRNGKey(0), *inputs), seed)
