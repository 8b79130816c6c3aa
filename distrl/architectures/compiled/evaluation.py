"""The compiled architecture's evaluation: `episodes` fresh environments, split over devices, each play one episode
(greedily, or sampling actions: `config.eval_policy`), in one compiled program."""

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
from flax import struct

from distrl import algorithms, architectures, envs, sharding
from distrl.runtime import agents
from distrl.envs import Env


@struct.dataclass
class _Play:
  """The scan carry: every local evaluation environment, and its first episode's outcome once it ended."""

  obs: Any
  env_state: Any
  memory: Any  # the agent's memory (`algorithms.initial_memory`), or None
  done: jax.Array  # the first episode has ended
  episode_return: jax.Array
  episode_length: jax.Array


def make_evaluate(algorithm, config: ml_collections.ConfigDict, env: Env, mesh, episodes: int) -> Callable:
  """-> evaluate(learner, key) -> {"return": (episodes,), "length": (episodes,)}: each episode's.

  `algorithm` acts greedily (or samples its actions, `config.eval_policy`), with its memory if it has one
  (`algorithms.act`); evaluation environment i resets from fold_in(key, i) whatever device runs it. Each environment
  runs for the environment's time limit and counts its first episode only. With several agents (`config.num_seeds`),
  the learner and keys have a leading seed axis, and so do the results.
  """
  local = episodes // sharding.data_size(mesh)
  greedy = architectures.greedy(config)
  policy = functools.partial(algorithms.act, algorithm, config=config, env=env, greedy=greedy)

  def per_device(learner, key):
    obs, env_state, keys = envs.reset_batch(env, key, sharding.global_index(local))
    step_keys = jnp.swapaxes(jax.vmap(functools.partial(jax.random.split, num=env.max_steps))(keys), 0, 1)

    def step(play: _Play, step_key):
      if greedy:
        action, memory = policy(learner, play.obs, None, play.memory)
      else:  # a greedy evaluation's keys stay as they were: its results do not change
        step_key, act_key = jnp.swapaxes(jax.vmap(jax.random.split)(step_key), 0, 1)
        action, memory = jax.vmap(functools.partial(_sampled, policy, learner))(play.obs, act_key, play.memory)
      obs, env_state, _, _, _, info = env.step_batch(step_key, play.env_state, action)
      first_end = info["returned_episode"] & ~play.done
      return _Play(obs=obs, env_state=env_state, memory=memory, done=play.done | info["returned_episode"],
                   episode_return=jnp.where(first_end, info["returned_episode_returns"], play.episode_return),
                   episode_length=jnp.where(first_end, info["returned_episode_lengths"], play.episode_length)), None

    zeros = jnp.zeros(local, jnp.float32)
    start = _Play(obs=obs, env_state=env_state, done=jnp.zeros(local, bool), episode_return=zeros,
                  episode_length=zeros, memory=algorithms.initial_memory(algorithm, local, config=config, env=env))
    end = jax.lax.scan(step, sharding.per_device(start), step_keys)[0]
    return sharding.gather({"return": end.episode_return, "length": end.episode_length})

  split = sharding.splits_agents(mesh, agents.count(config))
  return sharding.map_replicated(agents.vmap(per_device, config), mesh, split)


def _sampled(policy: Callable, learner, obs, key, memory):
  """The action (and memory) of one environment, sampled from its own key: what environment i does depends on its
  key alone, not on how many environments share a device."""
  one = lambda x: x[None]
  action, after = policy(learner, one(obs), key, jax.tree.map(one, memory))
  return action[0], jax.tree.map(lambda x: x[0], after)


class CompiledEvaluator:
  """An `architectures.Evaluator`: `make_evaluate`'s program, compiled ahead by `compile`."""

  def __init__(self, algorithm, config: ml_collections.ConfigDict, env: Env, mesh, episodes: int):
    self._evaluate = make_evaluate(algorithm, config, env, mesh, episodes)

  def compile(self, learner, keys) -> None:
    self._evaluate = self._evaluate.lower(learner, keys).compile()

  def __call__(self, learner, keys) -> dict:
    return self._evaluate(learner, keys)
