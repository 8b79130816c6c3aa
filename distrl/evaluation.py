"""Greedy evaluation: `episodes` fresh environments, split over devices, each play one episode."""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from distrl import envs, seeds, sharding
from distrl.envs import Env


def make_evaluate(act: Callable, config: ml_collections.ConfigDict, env: Env, mesh, episodes: int) -> Callable:
  """-> evaluate(params, key) -> {"return": (episodes,), "length": (episodes,)}: each episode's.

  `act(params, obs, key, *, config, env, greedy)` is the algorithm's; evaluation environment i
  resets from fold_in(key, i) whatever device runs it. Each environment runs for the
  environment's time limit and counts its first episode only. With several agents
  (`config.num_seeds`), params and keys have a leading seed axis, and so do the results.
  """
  local = episodes // mesh.size
  max_steps = int(env.params.max_steps_in_episode)
  policy = functools.partial(act, config=config, env=env, greedy=True)

  def per_device(params, key):
    obs, env_state, keys = envs.reset_batch(env, key, sharding.global_index(local))
    step_keys = jnp.swapaxes(jax.vmap(functools.partial(jax.random.split, num=max_steps))(keys), 0, 1)

    def step(carry, step_key):
      obs, env_state, done, episode_return, episode_length = carry
      action = policy(params, obs, None)
      obs, env_state, _, _, _, info = jax.vmap(env.step)(step_key, env_state, action)
      first_end = info["returned_episode"] & ~done
      episode_return = jnp.where(first_end, info["returned_episode_returns"], episode_return)
      episode_length = jnp.where(first_end, info["returned_episode_lengths"], episode_length)
      return (obs, env_state, done | info["returned_episode"], episode_return, episode_length), None

    zeros = jnp.zeros(local, jnp.float32)
    carry = sharding.per_device((obs, env_state, jnp.zeros(local, bool), zeros, zeros))
    _, _, _, episode_return, episode_length = jax.lax.scan(step, carry, step_keys)[0]
    return sharding.gather({"return": episode_return, "length": episode_length})

  return sharding.map_replicated(seeds.vmap(per_device, config), mesh)
