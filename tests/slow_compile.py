"""An environment as slow to compile as a big one (Craftax's update compiles for minutes), for the tests of a stop
during compilation and of the compile's progress line.

`deep_walk(depth)` is tests/user_code.py's Walk whose reward also passes through `depth` small matrix products, which
XLA compiles one by one. PPO's update and evaluation compile, on 2 CPU cores, in 8 s at depth 300, 24 s at 1,000 and
70 s at 2,000 on one device, and in 33 s at depth 300 on 8 emulated devices. Its observations and state do not depend
on `depth`, so a run may resume with another depth.
"""

import jax.numpy as jnp

from tests import user_code


class DeepWalk(user_code.Walk):

  def __init__(self, depth: int):
    super().__init__()
    self.depth = depth

  def step_env(self, key, state, action, params):
    obs, state, reward, done, info = super().step_env(key, state, action, params)
    x = jnp.full((4, 4), reward / 8)
    for i in range(self.depth):
      x = jnp.tanh(x @ (x.T + i))
    return obs, state, reward + 1e-6 * x[0, 0], done, info  # a trace of it in the reward: nothing is left out


def deep_walk(depth: int = 1):
  env = DeepWalk(depth)
  return env, env.default_params
