"""The only module that knows about devices.

One mesh over every device of every process with two axes: `MEMBER_AXIS` (the groups of devices that many agents,
a sweep's members and seeds, are split over; one group unless `config.member_groups` says more) and `DATA_AXIS` (the
devices of a group, which split its agents' environments). A `TrainState`'s `actors` are split over `DATA_AXIS` on
their leading (environment) dimension; `update` and `learner` are replicated over it. With several groups, the agent
axis (the learner's first, the actors' second) is split over `MEMBER_AXIS`: each group trains its own agents, and
`pmean` inside `update` reduces over the devices of a group only. `Runner` turns an algorithm's per-device
`update(state) -> (state, metrics)` into one compiled call that runs K updates on every device, with
`jax.shard_map` (default) or `jax.pmap` (one group).
"""

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from distrl.rl.state import TrainState

DATA_AXIS = "data"
MEMBER_AXIS = "members"
BACKENDS = ("shard_map", "pmap")


def make_mesh(devices=None, groups: int = 1) -> Mesh:
  """A mesh (`MEMBER_AXIS`: `groups`, `DATA_AXIS`: the rest) over `devices` (default: all devices of all
  processes); consecutive devices form a group."""
  devices = jax.devices() if devices is None else list(devices)
  if groups < 1 or len(devices) % groups:
    raise ValueError(f"{len(devices)} devices cannot form {groups} groups of equal size")
  # Auto axes: shard_map makes the body manual anyway, and jit'd init/host code stays unconstrained.
  return jax.make_mesh((groups, len(devices) // groups), (MEMBER_AXIS, DATA_AXIS), axis_types=(AxisType.Auto,) * 2,
                       devices=devices)


def data_size(mesh: Mesh) -> int:
  """How many devices split each agent's environments: those of one group."""
  return mesh.shape[DATA_AXIS]


def groups(mesh: Mesh) -> int:
  """How many groups of devices the agents are split over."""
  return mesh.shape[MEMBER_AXIS]


def group_rows(table, local: int):
  """Inside a mapped function: this device's `local` rows of a table over every agent (leading axis), the rows of
  its group; the whole table where a device holds every agent."""
  def rows(x):
    if x.shape[0] == local:
      return x
    return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index(MEMBER_AXIS) * local, local)
  return jax.tree.map(rows, table)


SMALL_LEAF = 1024  # elements: a leaf below this (a bias's gradient, a loss) may be a reduction's output
ONE_VECTOR = 1 << 16  # elements: up to this, every leaf travels in one vector


def pmean(tree):
  """Mean over devices; inside `update` this is where devices show through.

  The leaves travel as flat vectors, one all-reduce per vector instead of one per leaf (on emulated CPU devices
  each costs a rendezvous of their threads). XLA's CPU backend fuses the reductions that produce small leaves (a
  bias's gradient, a loss) into the concatenation that builds the vector, and the fusion's cost then grows with the
  whole vector (a Q-network's MinAtar CNN, 206k parameters: 78 ms a gradient step instead of ~1). So a tree of more
  than `ONE_VECTOR` elements travels as two vectors, its large leaves and its small ones; on one device it does not
  travel at all (the mean over one device is the leaf).
  """
  if jax.lax.axis_size(DATA_AXIS) == 1:
    return tree
  leaves, treedef = jax.tree.flatten(tree)
  if sum(jnp.size(leaf) for leaf in leaves) <= ONE_VECTOR:
    groups = [range(len(leaves))]
  else:
    small = [jnp.size(leaf) < SMALL_LEAF for leaf in leaves]
    groups = [[i for i in range(len(leaves)) if small[i] == s] for s in (False, True)]
  out = list(leaves)
  for group in filter(None, groups):
    flat, unravel = ravel_pytree([leaves[i] for i in group])
    for i, leaf in zip(group, unravel(jax.lax.pmean(flat, DATA_AXIS))):
      out[i] = leaf
  return jax.tree.unflatten(treedef, out)


def gather(tree):
  """Every device's rows, concatenated in global order and the same (replicated) on every device.

  Each device writes its rows at their global offset into zeros, and one psum adds them up.
  """

  def one(x):
    rows = jnp.zeros((x.shape[0] * jax.lax.axis_size(DATA_AXIS),) + x.shape[1:], x.dtype)
    return jax.lax.psum(rows.at[global_index(x.shape[0])].set(x), DATA_AXIS)

  return jax.tree.map(one, tree)


def shard_map(fn: Callable, mesh: Mesh, in_specs, out_specs) -> Callable:
  """`jax.shard_map` as distrl runs per-device code: without its varying-manual-axes type check.

  The per-device code (an algorithm's `update`, and the environments it steps, which distrl does
  not own) is written as if for one device. Under the check, a `while_loop` or `scan` whose
  initial carry is a constant and whose body makes it depend on a device's data is a type error,
  though it is correct on every device: gymnax's Asterix-MinAtar spawns its entities that way,
  and so may any user's environment. Without the check shard_map has pmap's semantics: a value is
  what each device computes, and `jax.grad` with respect to a replicated input is each device's
  own gradient, which `pmean` then averages. That equality with the unsharded update is what
  tests/test_sharding.py checks.
  """
  return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)


def per_device(tree):
  """Marks replicated values as varying over devices: parameters before `jax.grad`, loop carries.

  Under a `jax.shard_map` that checks varying manual axes (its default, which distrl's `shard_map`
  turns off), `jax.grad` with respect to a replicated input *sums* the gradient over devices by
  itself (the transpose of the implicit broadcast). Casting the parameters to per-device values
  first gives each device its own gradient, which `pmean` then averages exactly as under pmap,
  where the parameters are per-device already. Without the check this is the identity, so code
  that calls it runs the same under either.
  """

  def cast(x):
    return x if DATA_AXIS in jax.typeof(x).manual_axis_type.varying else jax.lax.pcast(x, DATA_AXIS, to="varying")

  return jax.tree.map(cast, tree)


def psum(tree):
  """Sum over devices, as one all-reduce."""
  flat, unravel = ravel_pytree(tree)
  return unravel(jax.lax.psum(flat, DATA_AXIS))


def specs(state: TrainState, split: bool = False) -> TrainState:
  """PartitionSpecs for a state: actors split on their leading axis, everything else replicated; with `split` (a
  state of several agents on a mesh of several groups) the agent axis split over the groups too."""
  return TrainState(
      update=P(),
      learner=jax.tree.map(lambda _: P(MEMBER_AXIS) if split else P(), state.learner),
      actors=jax.tree.map(lambda _: P(DATA_AXIS, MEMBER_AXIS) if split else P(DATA_AXIS), state.actors),
  )


def splits_agents(mesh: Mesh, agents: int) -> bool:
  """Whether `agents` agents are split over the groups of `mesh` (several of each)."""
  return agents > 1 and groups(mesh) > 1


def shardings(mesh: Mesh, state: TrainState, split: bool = False) -> TrainState:
  """NamedShardings for a (possibly abstract) state on `mesh`."""
  return jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs(state, split))


def to_host(tree):
  """Global arrays -> numpy on this host: replicated values (metrics, parameters) work in every process; values split
  over processes (per-agent values of groups on several processes) are gathered, a call every process makes."""

  def fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if not x.is_fully_replicated:  # per-agent values split over groups of several processes: every process asks
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
      x = x.addressable_data(0)
    return np.asarray(x)

  return jax.tree.map(fetch, tree)


def init_sharded(init: Callable[[jax.Array], TrainState], key: jax.Array, mesh: Mesh,
                 split: bool = False) -> TrainState:
  """Runs `init(key)` compiled, writing each device's environments straight to that device.

  With one process the state is built once, on the first device, then placed: the same program run by every
  emulated CPU device at once can deadlock jaxlib's shared intra-op thread pool (two agents of a twin-critic learner
  on 8 emulated devices do). Several processes each build it (no process can place another's shards)."""
  abstract = jax.eval_shape(init, key)
  if jax.process_count() == 1:
    return jax.device_put(jax.jit(init)(jax.device_put(key, mesh.devices.flat[0])),
                          shardings(mesh, abstract, split))
  return jax.jit(init, out_shardings=shardings(mesh, abstract, split))(key)


def global_index(local_count: int) -> jax.Array:
  """Inside a mapped function: the global indices (local_count,) of this device's rows."""
  return jax.lax.axis_index(DATA_AXIS) * local_count + jnp.arange(local_count)


def map_replicated(fn: Callable, mesh: Mesh, split: bool = False) -> Callable:
  """jit(shard_map(fn)) for a per-device fn of replicated inputs with replicated (reduced) outputs; with `split`,
  inputs and outputs have a leading agent axis split over the groups (`MEMBER_AXIS`)."""
  spec = P(MEMBER_AXIS) if split else P()
  return jax.jit(shard_map(fn, mesh, in_specs=spec, out_specs=spec))


def _chunk(update: Callable, state: TrainState, totals, num_updates: jax.Array, split: bool = False):
  """Runs `num_updates` (dynamic, so one compile covers a short last chunk) updates on one device.

  Metrics are (sum, count) pairs, added to `totals` update by update; the host divides. A log
  interval's calls carry their totals on, so that its sums are the same float32 additions in the
  same order however the interval is split into calls (its first call after a start runs one
  update; a long interval is split to keep stop requests prompt).
  """

  def body(_, carry):
    state, totals = carry
    state, metrics = update(state)
    state = state.replace(update=state.update + 1)
    return state, jax.tree.map(jnp.add, totals, metrics)

  state, totals = jax.lax.fori_loop(0, num_updates, body, (state, totals))
  ok = finite(state.learner)
  if split:  # each group holds its own agents' learners: finite only where every group's is
    ok = jax.lax.pmin(ok.astype(jnp.int32), MEMBER_AXIS) > 0
  return state, totals, ok


def finite(learner) -> jax.Array:
  """Whether every float of a learner (parameters, optimizer state) is finite."""
  floats = [x for x in jax.tree.leaves(learner) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in floats]))


class Chunk(NamedTuple):
  """What one call of the compiled chunk returns."""

  state: Any  # the state after the chunk's updates, in the backend's layout
  totals: dict  # the interval's metric sums so far, {name: (sum, count)}, on the devices
  finite: jax.Array  # whether every float of the learner (parameters, optimizer state) is finite after the chunk


class Runner:
  """One compiled chunk of K updates of an algorithm's per-device `update`, on a mesh.

  The trainer keeps states in the *global layout* (global `jax.Array`s with `shardings`),
  which is what checkpoints hold; `put` and `get` convert to and from the backend's layout
  (identity for shard_map; a leading device axis for pmap).
  """

  def __init__(self, update: Callable, mesh: Mesh, backend: str, abstract_state: TrainState, split: bool = False):
    """`split`: the state's agent axis is split over the mesh's groups (`splits_agents`); metrics then have a
    leading agent axis split likewise."""
    if backend not in BACKENDS:
      raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if backend == "pmap" and groups(mesh) > 1:
      raise ValueError("backend='pmap' runs one group of devices; split agents over groups with shard_map")
    self.mesh, self.backend = mesh, backend
    self._shardings = shardings(mesh, abstract_state, split)
    self.traces = 0  # how many times the chunk was traced; `compile` makes it exactly once
    self.layout_traces = 0  # how many times a pmap layout conversion was traced (once each per run)

    def chunk(state, totals, num_updates):
      self.traces += 1
      return _chunk(update, state, totals, num_updates, split)

    state_specs, per_agent = specs(abstract_state, split), P(MEMBER_AXIS) if split else P()
    self._metrics = shard_map(lambda state: update(state)[1], mesh, in_specs=(state_specs,), out_specs=per_agent)
    self._abstract_state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), abstract_state)
    if backend == "shard_map":
      mapped = shard_map(chunk, mesh, in_specs=(state_specs, per_agent, P()),
                         out_specs=(state_specs, per_agent, P()))
      self._step = jax.jit(mapped, donate_argnums=0)
    else:
      self._step = jax.pmap(chunk, axis_name=DATA_AXIS, in_axes=(0, None, None), out_axes=(0, None, None),
                            donate_argnums=0, devices=mesh.devices.flatten().tolist())
      self._pmap_layout()

  @functools.cached_property
  def zeros(self) -> dict:
    """Metric sums of no updates: where an interval's first call starts (traced on first use: evaluation, which
    builds a Runner it never calls, does not pay for it)."""
    metrics = jax.eval_shape(self._metrics, self._abstract_state)
    return jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), metrics)

  def compile(self, state) -> None:
    """Traces and compiles the chunk for `state`'s shapes now, so that compile time is measured apart."""
    self._step = self._step.lower(state, self.zeros, np.int32(1)).compile()

  def memory_analysis(self):
    """XLA's memory analysis of the compiled chunk (after `compile`)."""
    return memory_analysis(self._step)

  def compiled_text(self) -> str:
    """The compiled chunk's HLO text (after `compile`; shard_map only): what benchmarks/profile.py attributes."""
    return self._step.as_text()

  def __call__(self, state, num_updates: int, totals=None) -> Chunk:
    """Runs `num_updates` updates on a state in the backend's layout.

    The sums start from `totals` (an earlier call's sums: the interval goes on) or from zeros.
    """
    return Chunk(*self._step(state, self.zeros if totals is None else totals, np.int32(num_updates)))

  def put(self, state: TrainState):
    """Global layout -> backend layout (for pmap, a leading device axis on every leaf)."""
    return jax.device_put(state, self._shardings) if self.backend == "shard_map" else self._to_pmap(state)

  def get(self, state) -> TrainState:
    """Backend layout -> global layout (the trainer calls this at every evaluation and checkpoint)."""
    return state if self.backend == "shard_map" else self._from_pmap(state)

  def close(self) -> None:
    """Nothing runs beside the compiled chunk."""

  def _pmap_layout(self) -> None:
    """The two layout conversions for pmap, jitted once: a leading device axis on every leaf, and back."""
    n = self.mesh.size

    def to_pmap(state):
      self.layout_traces += 1
      copy = lambda x: jnp.broadcast_to(x, (n,) + x.shape)
      return TrainState(update=copy(state.update), learner=jax.tree.map(copy, state.learner),
                        actors=jax.tree.map(lambda x: x.reshape((n, -1) + x.shape[1:]), state.actors))

    def from_pmap(state):
      self.layout_traces += 1
      first = lambda x: x[0]
      return TrainState(update=first(state.update), learner=jax.tree.map(first, state.learner),
                        actors=jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), state.actors))

    # pmap's outputs are laid out on a 1-D mesh of the same devices; the conversion's too, so from_pmap sees one
    # layout (its own output's and pmap's) and is traced once.
    flat = jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=self.mesh.devices.flatten())
    self._to_pmap = jax.jit(to_pmap, out_shardings=NamedSharding(flat, P(DATA_AXIS)))
    self._from_pmap = jax.jit(from_pmap, out_shardings=self._shardings)


def memory_analysis(compiled):
  """`compiled.memory_analysis()`, or None (not compiled yet, or a backend that has none)."""
  try:
    return compiled.memory_analysis()
  except (AttributeError, NotImplementedError, jax.errors.JaxRuntimeError):
    return None
