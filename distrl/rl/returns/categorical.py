"""The categorical (C51) target of distributional Q-learning (Bellemare et al. 2017): the distribution of returns
over a fixed, evenly spaced support z_1 < ... < z_N, bootstrapped through the n-step return and projected back onto
the support.

    Tz_j = G + discount * z_j              (discount = 0 after a terminal state: all the mass moves to G)
    m_i  = sum_j p_j * max(0, 1 - |clip(Tz_j, z_1, z_N) - z_i| / dz)

with p the next state's distribution at the chosen action a* and dz the support's spacing: each atom's probability
is split between the two support points around it in proportion to its nearness (the paper's Algorithm 1, as
rlax's `categorical_l2_project` onto an evenly spaced support), so the mass (1) is kept and what falls past either
end lands on it. Computed as the paper does, two scatter-adds of N values a row (on a CPU ~4x faster than the N x N
weights of the formula above).
"""

import jax
import jax.numpy as jnp

from distrl.rl import distributions


def support(num_atoms: int, v_min: float, v_max: float) -> jax.Array:
  """The N = num_atoms evenly spaced returns from v_min to v_max, (N,)."""
  return jnp.linspace(v_min, v_max, num_atoms, dtype=jnp.float32)


def mean(logits: jax.Array, atoms: jax.Array) -> jax.Array:
  """The expected return of each distribution given by logits (..., N) over the support `atoms` (N,): (...)."""
  return jnp.sum(jax.nn.softmax(logits, axis=-1) * atoms, axis=-1)


def projection(values: jax.Array, probs: jax.Array, atoms: jax.Array) -> jax.Array:
  """The distribution with probabilities `probs` (B, N) at returns `values` (B, N), projected onto the evenly spaced
  support `atoms` (M,): (B, M), each row summing to what its `probs` sums to."""
  at = (jnp.clip(values, atoms[0], atoms[-1]) - atoms[0]) / (atoms[1] - atoms[0])  # in units of the spacing
  below, above = jnp.floor(at), jnp.ceil(at)
  rows = jnp.arange(values.shape[0])[:, None]
  projected = jnp.zeros(values.shape[:1] + atoms.shape, probs.dtype)
  projected = projected.at[rows, below.astype(jnp.int32)].add(probs * jnp.where(above == below, 1.0, above - at))
  return projected.at[rows, above.astype(jnp.int32)].add(probs * (at - below))


def categorical_target(return_t, discount_t, logits_t_target, atoms, q_t_online=None, mask_t=None):
  """C51's target distributions for a batch, with no gradient: the target network's distribution at s_t for the
  action a* moved through the n-step return and projected onto `atoms`.

      a* = argmax_a E[Z_target(s_t, a)]     (C51)
      a* = argmax_a Q_online(s_t, a)        (with double Q, when q_t_online is given: the online network's means)

  the argmax over the actions allowed at s_t where `mask_t` is given.

  Args:
    return_t: the n-step return G (B,) and discount_t its bootstrap's discount (B,), 0 after a terminal state
      (`n_step_return`).
    logits_t_target: the target network's logits at s_t, (B, A, N).
    atoms: the support (N,).
    q_t_online: the online network's expected returns at s_t (B, A), for double Q.
    mask_t: the actions allowed at s_t (True), (B, A), or None: all of them.
  Returns:
    the target probabilities (B, N).
  """
  if logits_t_target.ndim != 3 or logits_t_target.shape[-1] != atoms.shape[0] or \
      return_t.shape != logits_t_target.shape[:1] or discount_t.shape != return_t.shape:
    raise ValueError(f"categorical_target wants return_t (B,), discount_t (B,), logits (B, A, N) over N atoms; got "
                     f"{return_t.shape}, {discount_t.shape}, {logits_t_target.shape}, {atoms.shape[0]} atoms")
  selector = mean(logits_t_target, atoms) if q_t_online is None else q_t_online
  a_star = distributions.masked_argmax(selector, mask_t)
  probs = jax.nn.softmax(jnp.take_along_axis(logits_t_target, a_star[:, None, None], axis=1)[:, 0], axis=-1)
  values = return_t[:, None] + discount_t[:, None] * atoms[None, :]
  return jax.lax.stop_gradient(projection(values, probs, atoms))
