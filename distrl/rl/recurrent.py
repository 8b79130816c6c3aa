"""Memory: the recurrent core an agent may have between its torso and its heads (`config.recurrent`).

The core's state ("memory") is one row per environment in `actors`, carried across updates and saved in
checkpoints. Acting steps it once per environment step and resets it to zeros after every step that ended an
episode (terminated or truncated). The loss replays each environment's sequence from the memory stored at the
rollout's start, with the same resets (`replay`), so its gradient sees what acting saw.

Minibatches take whole environments (`orders`, `minibatches`), never parts of their sequences. For device-count
invariance, environments are grouped in blocks of `num_minibatches` consecutive global indices; each epoch, every
block shuffles its members with the key of its first environment and hands one to each minibatch. Every minibatch
so holds one environment of every block, and with blocks that never straddle two devices (`num_minibatches`
divides each device's share) the union of the devices' local minibatches is the global minibatch.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from distrl.errors import ConfigError, require

CELLS = {"gru": nn.GRUCell, "lstm": nn.OptimizedLSTMCell}


def check(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """The recurrent fields, and the sizes whole-environment minibatches need: a ConfigError naming the first bad one."""
  require(config.recurrent in ("",) + tuple(CELLS),
          f"recurrent={config.recurrent!r} must be {' or '.join(map(repr, CELLS))}, or '' for none")
  if not config.recurrent:
    return
  require(isinstance(config.recurrent_size, int) and config.recurrent_size > 0,
          f"recurrent_size={config.recurrent_size!r} must be a positive integer")
  local = config.num_envs // num_devices
  if local % config.num_minibatches:
    fits = [m for m in range(1, local + 1) if local % m == 0]
    closest = min(fits, key=lambda m: abs(m - config.num_minibatches))
    raise ConfigError(f"a recurrent agent's minibatches take whole environments: each device's {local} of "
                      f"num_envs={config.num_envs} must split into num_minibatches={config.num_minibatches} equal "
                      f"parts (try --config.num_minibatches={closest}, or more environments)")


def cell(config: ml_collections.ConfigDict) -> nn.RNNCellBase:
  return CELLS[config.recurrent](features=config.recurrent_size)


def initial(config: ml_collections.ConfigDict, num: int) -> Any:
  """The memory of `num` environments at the start of their first episode (zeros), or None without a core."""
  if not config.recurrent:
    return None
  return cell(config).initialize_carry(jax.random.PRNGKey(0), (num, config.recurrent_size))


def step(net: "Recurrent", params, obs: jax.Array, memory: Any, config: ml_collections.ConfigDict) -> tuple[Any, Any]:
  """One step of the network on a batch of observations (B, ...): -> (outputs, the memory after it), from `memory`,
  or from fresh memory (an episode's start) if it is None."""
  return net.apply(params, obs, initial(config, len(obs)) if memory is None else memory)


def reset(memory: Any, ended: jax.Array) -> Any:
  """`memory` (leaves (E, ...)) with the rows of the environments that `ended` (E,) set back to zeros."""
  return jax.tree.map(lambda m: jnp.where(ended.reshape(ended.shape + (1,) * (m.ndim - ended.ndim)), 0, m), memory)


class Recurrent(nn.Module):
  """`torso` (observations -> features), the `cell` of width `size`, then `head` (the cell's output -> the network's
  outputs). `__call__(obs, memory) -> (outputs, memory)` is one step of a batch (B, ...); `replay` runs sequences."""

  torso: nn.Module
  cell: str
  size: int
  head: nn.Module

  def setup(self):
    self.core = CELLS[self.cell](features=self.size)

  def features(self, obs: jax.Array) -> jax.Array:
    return self.torso(obs)

  def step(self, memory: Any, features: jax.Array) -> tuple[Any, jax.Array]:
    return self.core(memory, features)

  def outputs(self, hidden: jax.Array) -> Any:
    return self.head(hidden)

  def __call__(self, obs: jax.Array, memory: Any) -> tuple[Any, Any]:
    memory, hidden = self.core(memory, self.torso(obs))
    return self.head(hidden), memory


def replay(net: Recurrent, params, obs: jax.Array, memory: Any, episode_end: jax.Array) -> Any:
  """The network's outputs (T, B, ...) on sequences `obs` (T, B, *obs_shape) from `memory` (B, ...), reset after
  every step where `episode_end` (T, B), as acting stepped it. The torso and the head run on all T * B observations
  at once; only the cell steps through time."""
  def step(memory, inputs):
    features, ended = inputs
    memory, hidden = net.apply(params, memory, features, method=Recurrent.step)
    return reset(memory, ended), hidden

  features = net.apply(params, obs, method=Recurrent.features)
  _, hidden = jax.lax.scan(step, memory, (features, episode_end))
  return net.apply(params, hidden, method=Recurrent.outputs)


def orders(keys: jax.Array, epochs: int, num_minibatches: int) -> jax.Array:
  """Which local environment each minibatch takes from each block, (epochs, M, E / M), from the environments' keys
  (E, 2): block b's members b M .. b M + M - 1 shuffled with its first environment's key, one per minibatch."""
  block_keys = keys[::num_minibatches]  # (E / M, 2)
  epoch_keys = jax.vmap(functools.partial(jax.random.split, num=epochs))(block_keys)  # (E / M, epochs, 2)
  shuffled = jax.vmap(jax.vmap(jax.random.permutation, in_axes=(0, None)), in_axes=(1, None))(
      epoch_keys, num_minibatches)  # (epochs, E / M, M)
  first = jnp.arange(0, keys.shape[0], num_minibatches)
  return jnp.swapaxes(first[:, None] + shuffled, 1, 2)


def minibatches(x: jax.Array, order: jax.Array, time_axis: bool = True) -> jax.Array:
  """A rollout's leaf (T, E, ...) as minibatches (M, T, E / M, ...) of whole environments in one epoch's `order`
  (M, E / M); a leaf without a time axis (E, ...), e.g. the memory at the rollout's start, as (M, E / M, ...)."""
  return jnp.moveaxis(x[:, order], 1, 0) if time_axis else x[order]
