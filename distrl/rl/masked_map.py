"""Row-wise work done only on the rows a mask selects, for work too costly to do on every row when few need it:
resetting the environments that ended (Craftax generates a world per reset), bootstrapping from the pre-reset
observations of truncated episodes (a critic pass over every step of a rollout otherwise)."""

from typing import Any, Callable

import jax
import jax.numpy as jnp


def where(mask: jax.Array, fn: Callable[[Any], Any], inputs, otherwise, *, max_passes: int = 16):
  """`otherwise` (leaves (N, ...)) with row i replaced by `fn(inputs)[i]` wherever `mask[i]` (mask (N,) bool).

  `fn` maps a batch of rows of `inputs` (leaves (K, ...)) to the same rows of the result (leaves (K, ...)), row by
  row, so it is called only on selected rows: in a while_loop over them, ceil(N / max_passes) rows a pass (no
  pass when no row is selected, one when at most that many are, at most `max_passes` when all are). The selected
  rows' results are those of `fn` on them; the others are `otherwise`'s, untouched.
  """
  num = mask.shape[0]
  chunk = -(-num // max_passes)
  slots = -(-num // chunk) * chunk
  order = jnp.nonzero(mask, size=slots, fill_value=num)[0]  # the selected rows first; `num` pads (dropped)
  count = jnp.sum(mask)

  def one_pass(carry):
    start, result = carry
    index = jax.lax.dynamic_slice_in_dim(order, start, chunk)
    new = fn(jax.tree.map(lambda x: x[jnp.minimum(index, num - 1)], inputs))
    return start + chunk, jax.tree.map(lambda old, row: old.at[index].set(row, mode="drop"), result, new)

  _, result = jax.lax.while_loop(lambda carry: carry[0] < count, one_pass, (0, otherwise))
  return result
