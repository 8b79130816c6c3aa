"""A trained agent's greedy policy, out of a run's checkpoint: what `distrl.load_policy` returns (`Policy`) and what
`python -m distrl.export` writes (`export`).

One agent is taken from the run: the only one, or with several seeds (`num_seeds`) the first (the run of `seed`), or
of a sweep the first seed of member `member` (a sweep needs the member named). It acts greedily (the likeliest action,
a continuous policy's mean, a Q-network's best action) from its own learner state, so whatever `act` reads of it
(parameters, observation statistics) comes along.
"""

import dataclasses
import json
import os
import shutil
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from distrl import algorithms, sharding
from distrl.errors import ConfigError
from distrl.runtime import agents, programs, sweep


@dataclasses.dataclass(frozen=True)
class Greedy:
  """One agent of a saved run, acting greedily."""

  learner: Any  # the agent's TrainState.learner, numpy leaves on the host
  act: Callable  # (learner, obs (B, *obs_shape), memory) -> (actions (B, ...), memory after); memory None without
  initial_memory: Callable[[int], Any]  # num -> the memory of num actors at an episode's start (None: no memory)
  observation: jax.ShapeDtypeStruct  # one observation, as the agent sees it
  about: dict  # algo, env_name, update, workdir, best, member: where the agent came from


def restore(workdir: str, *, best: bool = False, member: int | None = None, checkpoint: int | None = None) -> Greedy:
  """The greedy agent of `workdir`'s latest checkpoint (or `checkpoint`, or with `best` the one kept in best/)."""
  program, state, update = programs.load(workdir, checkpoint, best)
  try:
    config, env, algorithm = program.config, program.env, program.algorithm
    sweep.check_member(config, member)
    members = sweep.count(config)
    if members > 1 and member is None:
      raise ConfigError(f"the run is a sweep of {members} members: choose one with member=K (--member=K), "
                        f"0..{members - 1}")
    learner = sharding.to_host(state.learner)
    if agents.count(config) > 1:  # the agents' leading axis: agent m * num_seeds + s is member m's seed seed + s
      index = (member or 0) * int(config.num_seeds)
      learner = jax.tree.map(lambda leaf: np.asarray(leaf[index]), learner)
    learner = jax.tree.map(np.asarray, learner)

    def act(learner, obs, memory):
      return algorithms.act(algorithm, learner, obs, None, memory, config=config, env=env, greedy=True)

    observation = jax.eval_shape(lambda key: env.reset(key)[0], jax.random.PRNGKey(0))
    return Greedy(learner=learner, act=act,
                  initial_memory=lambda num: algorithms.initial_memory(algorithm, num, config=config, env=env),
                  observation=jax.ShapeDtypeStruct(observation.shape, observation.dtype),
                  about=dict(algo=config.algo, env_name=config.env_name, update=int(update), workdir=workdir,
                             best=best, member=member))
  finally:
    program.close()


class Policy:
  """`actions = policy(obs)`: the greedy actions (numpy, (B,) or (B, action_dim)) of one trained agent for a batch
  of observations (B, *observation_shape), computed with JAX (compiled once for each batch size).

  Memory: an agent with memory (a recurrent core, `config.recurrent`) carries it from call to call, row by row: row i
  of a call continues from row i of the call before. `policy.reset()` starts every row afresh (the start of new
  episodes); `policy.reset(done)`, with a boolean mask (B,) of the rows whose episode ended (a vectorised
  environment's `terminated | truncated`), starts only those, before the call that sees their first observations.
  A call with another batch size starts every row afresh. `policy.memory` is the memory the next call starts from
  (None for an agent without memory, whose calls depend on nothing but their observations).
  """

  def __init__(self, greedy: Greedy):
    self.greedy = greedy
    self.about = greedy.about
    self.observation_shape, self.observation_dtype = greedy.observation.shape, greedy.observation.dtype
    self.memory = None
    self._act = jax.jit(greedy.act)
    self._initial = jax.jit(greedy.initial_memory, static_argnums=0)

  @property
  def has_memory(self) -> bool:
    return self.greedy.initial_memory(1) is not None

  def __call__(self, obs) -> np.ndarray:
    try:
      obs = jnp.asarray(np.asarray(obs, self.observation_dtype))
    except (TypeError, ValueError):
      raise ConfigError(f"observations {_brief(obs)} are not numbers of {self.observation_dtype}: give a batch "
                        f"(B, {', '.join(map(str, self.observation_shape))})") from None
    if obs.shape[1:] != self.observation_shape:
      raise ConfigError(f"observations of shape {tuple(obs.shape)} for a policy of observations "
                        f"{self.observation_shape}: give a batch (B, {', '.join(map(str, self.observation_shape))})")
    batch = obs.shape[0]
    if self.memory is None or jax.tree.leaves(self.memory)[0].shape[0] != batch:
      self.memory = self._initial(batch)
    actions, self.memory = self._act(self.greedy.learner, obs, self.memory)
    return np.asarray(actions)

  def reset(self, done=None) -> None:
    """Every row's memory back to an episode's start, or (with `done`, booleans (B,)) only those rows'."""
    if done is None or self.memory is None:
      self.memory = None
      return
    rows = jax.tree.leaves(self.memory)[0].shape[0]
    done = np.asarray(done)
    if done.shape != (rows,) or done.dtype != bool:
      raise ConfigError(f"reset(done) takes booleans (B,) for the {rows} rows of the last call, not {_brief(done)} "
                        f"(reset() starts every row afresh)")
    initial = self._initial(rows)
    self.memory = jax.tree.map(lambda m, i: jnp.where(done.reshape(done.shape + (1,) * (m.ndim - 1)), i, m),
                               self.memory, initial)


def _brief(value) -> str:
  """A value as an error names it: an array by its shape and dtype, anything else by a short repr."""
  if isinstance(value, np.ndarray) or hasattr(value, "shape"):
    return f"of shape {tuple(np.shape(value))} ({getattr(value, 'dtype', '?')})"
  text = repr(value)
  return text if len(text) <= 40 else text[:39] + "…"


# The exported policy's files in its directory (`export` writes them; README.md shows how to load them).
POLICY, INITIAL_MEMORY, PARAMS, ABOUT = "policy.jax", "initial_memory.jax", "params.npz", "about.json"


@dataclasses.dataclass(frozen=True)
class Exported:
  """What `export` makes of a Greedy: serialized JAX functions (`jax.export`) and the parameters they take."""

  policy: bytes  # (params, obs (b, ...)) -> actions; with memory (params, obs, memory) -> (actions, memory)
  initial_memory: bytes | None  # (obs (b, ...)) -> the memory of b rows at an episode's start; None without memory
  params: dict[str, np.ndarray]  # the learner's leaves the policy reads, by path ("params.params.Dense_0.kernel")
  about: dict  # Greedy.about, with the platforms, the observation's shape and dtype, and whether it has memory


def _name(path) -> str:
  """A leaf's path in the learner as one name: 'params.params.Dense_0.kernel'."""
  return ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _read_inputs(jaxpr) -> list[bool]:
  """Which inputs of `jaxpr` its outputs depend on (JAX's dead-code elimination, which sees into nested jits; where
  this JAX lacks it, every input)."""
  try:
    from jax._src.interpreters import partial_eval
  except ImportError:
    return [True] * len(jaxpr.invars)
  return list(partial_eval.dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars))[1])


def export(greedy: Greedy, platforms: tuple[str, ...]) -> Exported:
  """`greedy` as JAX functions serialized by `jax.export`, for a batch of any size `b` (a symbolic dimension), lowered
  for each of `platforms`, and the parameters they take: only the leaves of the learner that acting reads (not the
  optimizer state or target networks)."""
  paths, treedef = jax.tree_util.tree_flatten_with_path(greedy.learner)
  leaves = [leaf for _, leaf in paths]
  names = [_name(path) for path, _ in paths]
  if len(set(names)) != len(names):
    raise ConfigError("the learner's leaves do not have distinct names; this policy cannot be exported")
  b, = jax.export.symbolic_shape("b")
  obs = jax.ShapeDtypeStruct((b, *greedy.observation.shape), greedy.observation.dtype)
  initial = greedy.initial_memory(1)

  def act_of_leaves(leaves, obs, memory):
    return greedy.act(jax.tree.unflatten(treedef, leaves), obs, memory)

  memory = None if initial is None else jax.eval_shape(lambda o: greedy.initial_memory(o.shape[0]), obs)
  jaxpr = jax.make_jaxpr(act_of_leaves)(leaves, jax.ShapeDtypeStruct((1, *obs.shape[1:]), obs.dtype), initial)
  used = [i for i, read in enumerate(_read_inputs(jaxpr.jaxpr)[:len(leaves)]) if read]
  params = {names[i]: np.asarray(leaves[i]) for i in used}

  def full(params):  # the learner again: leaves acting never reads as zeros, which XLA drops
    return [params[names[i]] if names[i] in params else jnp.zeros(np.shape(leaf), np.asarray(leaf).dtype)
            for i, leaf in enumerate(leaves)]

  specs = {name: jax.ShapeDtypeStruct(value.shape, value.dtype) for name, value in params.items()}
  if initial is None:
    policy = jax.export.export(jax.jit(lambda params, obs: act_of_leaves(full(params), obs, None)[0]),
                               platforms=platforms)(specs, obs)
    initial_memory = None
  else:
    policy = jax.export.export(jax.jit(lambda params, obs, memory: act_of_leaves(full(params), obs, memory)),
                               platforms=platforms)(specs, obs, memory)
    initial_memory = jax.export.export(jax.jit(lambda obs: greedy.initial_memory(obs.shape[0])),
                                       platforms=platforms)(obs).serialize()
  about = dict(greedy.about, platforms=list(platforms), observation_shape=list(greedy.observation.shape),
               observation_dtype=str(greedy.observation.dtype), memory=initial is not None)
  return Exported(policy=policy.serialize(), initial_memory=initial_memory, params=params, about=about)


def write(out: str, exported: Exported) -> None:
  """`exported`'s files (`about` as about.json) in the new directory `out` (its parents made as needed); an
  existing `out` is an OSError, never written into, and nothing is left of `out` if a write fails."""
  parent = os.path.dirname(os.path.abspath(out))
  if os.path.lexists(parent) and not os.path.isdir(parent):
    raise NotADirectoryError(20, os.strerror(20), parent)  # makedirs would say "File exists"
  os.makedirs(parent, exist_ok=True)
  os.mkdir(out)
  try:
    with open(os.path.join(out, POLICY), "wb") as f:
      f.write(exported.policy)
    if exported.initial_memory is not None:
      with open(os.path.join(out, INITIAL_MEMORY), "wb") as f:
        f.write(exported.initial_memory)
    with open(os.path.join(out, PARAMS), "wb") as f:
      np.savez(f, **exported.params)
    with open(os.path.join(out, ABOUT), "w") as f:
      json.dump(exported.about, f, indent=1)
      f.write("\n")
  except BaseException:
    shutil.rmtree(out, ignore_errors=True)  # the directory made here, with what was written into it
    raise
