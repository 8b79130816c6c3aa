"""Many independent agents in one program: an algorithm vmapped over an agent axis (a sweep's members x seeds).

With `config.num_seeds = S > 1`, agent i is the run of seed `config.seed + i`: its initial state and
every random stream (resets, actions, shuffling, evaluations) are exactly those of a single-seed run of
that seed; its arithmetic equals that run's up to float rounding (a vmapped, batched matmul rounds
differently), so the two agree closely for tens of updates and then drift apart, as any two runs on
different hardware do.
Every learner leaf gets a leading seed axis (S, ...) and every actors leaf a *second* axis
(E, S, ...), so that the environment axis stays first and remains the one split over devices.
Inside `update`, `sharding.pmean` under `vmap` reduces over devices for each seed on its own:
gradients are never mixed across seeds. With S = 1 (the default) nothing is vmapped and the
state has no seed axis at all.

A sweep (`distrl.runtime.sweep`) multiplies the agents: M members of S seeds are M * S agents on the same axis,
agent m * S + s being member m's seed `seed + s`, its swept values given to its `init` and `update` as traced
scalars.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from distrl import sharding
from distrl.rl.state import TrainState
from distrl.runtime import sweep

# Where the seed axis is in a TrainState: none on the update counter, which all seeds share.
AXES = TrainState(update=None, learner=0, actors=1)


def count(config: ml_collections.ConfigDict) -> int:
  """How many agents a config trains: its sweep's members times its seeds."""
  return sweep.count(config) * int(config.num_seeds)


def keys(config: ml_collections.ConfigDict) -> jax.Array:
  """PRNGKey(seed) of every agent: (2,) for one agent, (A, 2) for A; every member has seeds seed, seed + 1, ..."""
  if count(config) == 1:
    return jax.random.PRNGKey(config.seed)
  seeds = jnp.tile(config.seed + jnp.arange(int(config.num_seeds)), sweep.count(config))
  return jax.vmap(jax.random.PRNGKey)(seeds)


def vmap(fn: Callable, config: ml_collections.ConfigDict, in_axes=0, out_axes=0) -> Callable:
  """`jax.vmap(fn, in_axes, out_axes)` over the agents, or `fn` itself for one agent."""
  return fn if count(config) == 1 else jax.vmap(fn, in_axes=in_axes, out_axes=out_axes)


def init(init_fn: Callable[..., TrainState], config: ml_collections.ConfigDict) -> Callable:
  """key(s) -> TrainState: an algorithm's `init(key, config=...)` for every agent, one agent after the other, each
  with its member's config.

  `lax.map`, not `vmap`: a vmapped orthogonal init is a *batched* QR, whose jaxlib CPU kernel
  splits its batch over XLA's intra-op thread pool; with every emulated device running it at
  once, the pool's threads all wait on sub-tasks queued behind them and the program hangs
  (on several emulated CPU devices; cf. PyAutoLabs/PyAutoFit#1528). Unbatched QRs run inline.
  """
  if count(config) == 1:  # a sweep of one member is that member's config
    return lambda key: init_fn(key, config=sweep.member_config(config, sweep.members(config)[0]))
  values = sweep.table(config, int(config.num_seeds))

  def init_all(keys: jax.Array) -> TrainState:
    one = lambda args: init_fn(args[0], config=sweep.member_config(config, args[1]))
    states = jax.lax.map(one, (keys, values))  # every leaf stacked on a leading agent axis
    return TrainState(update=states.update[0], learner=states.learner,
                      actors=jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1), states.actors))

  return init_all


def update(update_fn: Callable, config: ml_collections.ConfigDict) -> Callable:
  """state -> (state, metrics): an algorithm's per-device `update(state, config=...)` for every agent, each with its
  member's config; metrics gain a leading agent axis."""
  if count(config) == 1:
    return lambda state: update_fn(state, config=sweep.member_config(config, sweep.members(config)[0]))
  values = sweep.table(config, int(config.num_seeds))
  one = lambda state, agent: update_fn(state, config=sweep.member_config(config, agent))

  def run(state):
    local = jax.tree.leaves(state.learner)[0].shape[0]  # this device's agents: all, or its group's
    return jax.vmap(one, in_axes=(AXES, 0), out_axes=(AXES, 0))(state, sharding.group_rows(values, local))

  return run
