"""distrl.networks' dense product (its own gradient on the CPU) against flax's plain dense layer."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distrl import networks


@pytest.mark.parametrize("shape", [(128, 64), (4, 16, 64), (1, 64)])
def test_the_dense_product_has_flaxs_values_and_gradients(shape):
  """Same parameters in both layers; the loss mixes the outputs nonlinearly so every gradient entry differs."""
  x = jax.random.normal(jax.random.key(0), shape)
  ours, flax_dense = networks.orthogonal_dense(32, 1.0), nn.Dense(32)
  params = ours.init(jax.random.key(1), x)
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(2), p.shape), params)  # bias non-zero

  def loss(layer):
    return lambda params, x: jnp.sum(jnp.tanh(layer.apply(params, x)) ** 2 * jnp.arange(1, 33))

  np.testing.assert_allclose(ours.apply(params, x), flax_dense.apply(params, x), rtol=1e-5, atol=1e-5)
  got = jax.grad(loss(ours), argnums=(0, 1))(params, x)
  want = jax.grad(loss(flax_dense), argnums=(0, 1))(params, x)
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4), got, want)
  assert float(jnp.abs(got[0]["params"]["kernel"]).min()) > 0  # every entry checked, none trivially 0


def test_the_dense_product_under_vmap_and_jit_matches_per_seed_calls():
  """Seeds vmap the networks (config.num_seeds): the batched gradient equals each seed's own."""
  x = jax.random.normal(jax.random.key(0), (3, 8, 5))
  layer = networks.orthogonal_dense(4, 1.0)
  params = jax.vmap(lambda k: layer.init(k, x[0]))(jax.random.split(jax.random.key(1), 3))
  grad = jax.grad(lambda p, x: jnp.sum(jnp.sin(layer.apply(p, x))))
  batched = jax.jit(jax.vmap(grad))(params, x)
  for seed in range(3):
    one = grad(jax.tree.map(lambda p: p[seed], params), x[seed])
    jax.tree.map(lambda b, o: np.testing.assert_allclose(b[seed], o, rtol=1e-5, atol=1e-6), batched, one)
