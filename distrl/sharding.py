"""The only module that knows about devices.

One mesh over every device of every process with one axis, `DATA_AXIS`. A `TrainState`'s
`actors` are split over that axis on their leading (environment) dimension; `update` and
`learner` are replicated. `Runner` turns an algorithm's per-device `update(state) ->
(state, metrics)` into one compiled call that runs K updates on every device, with
`jax.shard_map` (default) or `jax.pmap`.
"""

from typing import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from distrl.state import TrainState

DATA_AXIS = "data"
BACKENDS = ("shard_map", "pmap")


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh named `DATA_AXIS` over `devices` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else list(devices)
  # Auto axes: shard_map makes the body manual anyway, and jit'd init/host code stays unconstrained.
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def pmean(tree):
  """Mean over devices; inside `update` this is where devices show through."""
  return jax.lax.pmean(tree, DATA_AXIS)


def psum(tree):
  """Sum over devices."""
  return jax.lax.psum(tree, DATA_AXIS)


def specs(state: TrainState) -> TrainState:
  """PartitionSpecs for a state: actors split on their leading axis, everything else replicated."""
  replicated = lambda tree: jax.tree.map(lambda _: P(), tree)
  return TrainState(
      update=P(),
      learner=replicated(state.learner),
      actors=jax.tree.map(lambda _: P(DATA_AXIS), state.actors),
  )


def shardings(mesh: Mesh, state: TrainState) -> TrainState:
  """NamedShardings for a (possibly abstract) state on `mesh`."""
  return jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs(state))


def init_sharded(init: Callable[[jax.Array], TrainState], key: jax.Array, mesh: Mesh) -> TrainState:
  """Runs `init(key)` compiled, writing each device's environments straight to that device."""
  abstract = jax.eval_shape(init, key)
  return jax.jit(init, out_shardings=shardings(mesh, abstract))(key)


def _chunk(update: Callable, state: TrainState, num_updates: jax.Array):
  """Runs `num_updates` (dynamic, so one compile covers a short last chunk) updates on one device.

  Metrics are (sum, count) pairs, summed over the updates; the host divides.
  """
  _, metrics_shape = jax.eval_shape(update, state)
  zeros = jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metrics_shape)

  def body(_, carry):
    state, totals = carry
    state, metrics = update(state)
    state = state.replace(update=state.update + 1)
    return state, jax.tree.map(jnp.add, totals, metrics)

  return jax.lax.fori_loop(0, num_updates, body, (state, zeros))


class Runner:
  """One compiled chunk of K updates of an algorithm's per-device `update`, on a mesh.

  The trainer keeps states in the *global layout* (global `jax.Array`s with `shardings`),
  which is what checkpoints hold; `put` and `get` convert to and from the backend's layout
  (identity for shard_map; a leading device axis for pmap).
  """

  def __init__(self, update: Callable, mesh: Mesh, backend: str, abstract_state: TrainState):
    if backend not in BACKENDS:
      raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    self.mesh, self.backend = mesh, backend
    self._shardings = shardings(mesh, abstract_state)
    self.traces = 0  # how many times the chunk was traced; a run should trace it once

    @chex.assert_max_traces(n=1)
    def chunk(state, num_updates):
      self.traces += 1
      return _chunk(update, state, num_updates)

    if backend == "shard_map":
      state_specs = specs(abstract_state)
      mapped = jax.shard_map(chunk, mesh=mesh, in_specs=(state_specs, P()), out_specs=(state_specs, P()))
      self._step = jax.jit(mapped, donate_argnums=0)
    else:
      self._step = jax.pmap(chunk, axis_name=DATA_AXIS, in_axes=(0, None), out_axes=(0, None),
                            donate_argnums=0, devices=mesh.devices.tolist())

  def compile(self, state) -> None:
    """Traces and compiles the chunk for `state`'s shapes now, so that compile time is measured apart."""
    self._step = self._step.lower(state, np.int32(1)).compile()

  def __call__(self, state, num_updates: int):
    """Runs `num_updates` updates on a state in the backend's layout; returns (state, metric sums)."""
    return self._step(state, np.int32(num_updates))

  def put(self, state: TrainState):
    """Global layout -> backend layout."""
    if self.backend == "shard_map":
      return jax.device_put(state, self._shardings)
    devices = self.mesh.devices.tolist()
    n = len(devices)
    split = lambda x: jax.device_put_sharded(list(np.asarray(x).reshape((n, -1) + x.shape[1:])), devices)
    copy = lambda x: jax.device_put_replicated(np.asarray(x), devices)
    return TrainState(update=copy(state.update), learner=jax.tree.map(copy, state.learner),
                      actors=jax.tree.map(split, state.actors))

  def get(self, state) -> TrainState:
    """Backend layout -> global layout."""
    if self.backend == "shard_map":
      return state
    first = lambda x: np.asarray(x[0])
    merge = lambda x: np.asarray(x).reshape((-1,) + x.shape[2:])
    host = TrainState(update=first(state.update), learner=jax.tree.map(first, state.learner),
                      actors=jax.tree.map(merge, state.actors))
    return jax.device_put(host, self._shardings)

