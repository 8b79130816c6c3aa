"""The host architecture's evaluation: episodes of fresh host environments, on this process's share, acting greedily
or sampling (`config.eval_policy`)."""

import functools
import zlib

import jax
import numpy as np
from jax.experimental import multihost_utils

from distrl import algorithms, architectures
from distrl.envs.host import Spec


class HostEvaluator:
  """evaluate(learner, key) -> {"return": (episodes,), "length": (episodes,)}: episodes of fresh host
  environments (this process's share, seeded from `key`; gathered over processes), each its first episode to its end
  or the environment's time limit."""

  def __init__(self, algorithm, config, env: Spec, episodes: int):
    self.env, self.episodes = env, episodes
    self.greedy = architectures.greedy(config)
    act = functools.partial(algorithms.act, algorithm, config=config, env=env, greedy=self.greedy)
    self._act = jax.jit(lambda learner, obs, key: act(learner, obs, key, None)[0])

  def compile(self, learner, key) -> None:
    """The policy compiles on its first step, with the environments it steps: nothing to do ahead."""

  def __call__(self, learner, key) -> dict:
    processes, index = jax.process_count(), jax.process_index()
    local = max(1, self.episodes // processes)
    seed = (zlib.crc32(np.asarray(key).tobytes()) + index * local) % 2**31
    envs = self.env.open(local, seed)
    keys = None if self.greedy else jax.random.split(jax.random.key(seed), self.env.max_steps)  # one a step
    try:
      obs = envs.reset()
      done = np.zeros(local, bool)
      returns, lengths = np.zeros(local, np.float32), np.zeros(local, np.float32)
      for t in range(self.env.max_steps):
        stepped = envs.step(np.asarray(self.env.clip(self._act(learner, obs, None if self.greedy else keys[t]))))
        first = stepped.counted & ~done
        returns[first], lengths[first] = stepped.episode_return[first], stepped.episode_length[first]
        done |= stepped.counted
        obs = stepped.obs
        if done.all():
          break
    finally:
      envs.close()
    result = {"return": returns, "length": lengths}
    if processes > 1:
      result = jax.tree.map(lambda x: np.asarray(x).reshape(-1), multihost_utils.process_allgather(result))
    return result
