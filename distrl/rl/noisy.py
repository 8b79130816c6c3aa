"""Noisy linear layers (Fortunato et al. 2018, "Noisy Networks for Exploration"): exploration by learned noise in
a network's weights instead of epsilon-greedy; the heads of DQN's Q-network with `noisy` (as Rainbow's).

A layer of p inputs and q outputs has means and scales of its weights and biases, and factorised Gaussian noise:
p + q standard normals eps_in (p,), eps_out (q,) give

    w = mu_w + sigma_w * (f(eps_in) outer f(eps_out))      (p, q)
    b = mu_b + sigma_b * f(eps_out)                        (q,),      f(x) = sign(x) sqrt(|x|),

initialised (the paper's section 3.2) mu ~ U[-1/sqrt(p), 1/sqrt(p)] and sigma = sigma0 / sqrt(p).

The noise comes from the flax rng stream NOISE, and only from it: `net.apply(params, x, rngs={"noise": key})`
draws one sample for the whole call (every row of x); each layer takes its own key from the stream (flax folds in
the layer's path), so a run's noise derives from the keys it passes, which live in its checkpointed state. Without
that stream the layer is its mean, x @ mu_w + mu_b: what greedy evaluation acts on.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

NOISE = "noise"  # the rng stream a noisy layer draws from


def scaled(x: jax.Array) -> jax.Array:
  """f(x) = sign(x) sqrt(|x|), which the factorised noise passes its normals through."""
  return jnp.sign(x) * jnp.sqrt(jnp.abs(x))


def factorised(key: jax.Array, inputs: int, outputs: int) -> tuple[jax.Array, jax.Array]:
  """The normals eps_in (inputs,) and eps_out (outputs,) of one sample: the first and the last of inputs + outputs
  standard normals drawn from `key`."""
  eps = jax.random.normal(key, (inputs + outputs,))
  return eps[:inputs], eps[inputs:]


class NoisyDense(nn.Module):
  """A linear layer (..., p) -> (..., features) with factorised Gaussian noise in its weights and bias (module
  docstring); its mean without the NOISE rng stream. Parameters: `kernel` and `bias` (mu), `kernel_sigma` and
  `bias_sigma` (sigma)."""

  features: int
  sigma0: float = 0.5  # the noise's initial scale: sigma = sigma0 / sqrt(p) (the paper's 0.5 for factorised noise)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    p = x.shape[-1]
    bound = 1.0 / np.sqrt(p)
    mean = nn.initializers.uniform(2 * bound)  # U[0, 2 bound), moved to [-bound, bound) below
    mu_w = self.param("kernel", lambda key, shape: mean(key, shape) - bound, (p, self.features))
    mu_b = self.param("bias", lambda key, shape: mean(key, shape) - bound, (self.features,))
    sigma = lambda key, shape: jnp.full(shape, self.sigma0 / np.sqrt(p), jnp.float32)
    sigma_w = self.param("kernel_sigma", sigma, (p, self.features))
    sigma_b = self.param("bias_sigma", sigma, (self.features,))
    if not self.has_rng(NOISE):
      return x @ mu_w + mu_b
    eps_in, eps_out = factorised(self.make_rng(NOISE), p, self.features)
    self.sow(NOISE, "eps", (eps_in, eps_out))  # kept only where a caller asks (mutable=["noise"]): for tests
    w = mu_w + sigma_w * jnp.outer(scaled(eps_in), scaled(eps_out))
    b = mu_b + sigma_b * scaled(eps_out)
    return x @ w + b
