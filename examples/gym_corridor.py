"""A simulator of your own on the host: the corridor of `corridor.py` written as a gymnasium environment.

  python -m distrl.launch --config=ppo --config.architecture=host --config.env_name=examples.gym_corridor:make \
      --config.total_timesteps=100000 --workdir=runs/gym-corridor

Any `gymnasium.Env` works this way (C++ behind Python bindings, a lab's own simulator): distrl calls
`make(**config.env_kwargs)` once per environment, steps them on the host, acts on them with the policy in an actor
thread and learns from their rollouts (`--config.architecture=host`, `distrl/architectures/host/`). `terminated` ends
an episode without a bootstrap; a time limit (`truncated`) bootstraps from the observation it reached.
"""

import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
  """`length` cells, the agent and the goal at random; left or right; 1 at the goal, -0.01 a step, `4 * length`
  steps at most. Observations: (position, goal) / (length - 1)."""

  def __init__(self, length: int = 10, step_cost: float = 0.01):
    self.length, self.step_cost = length, step_cost
    self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
    self.action_space = gym.spaces.Discrete(2)

  def _obs(self):
    return np.array([self.position, self.goal], np.float32) / (self.length - 1)

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self.position, self.goal = self.np_random.choice(self.length, 2, replace=False)
    self.time = 0
    return self._obs(), {}

  def step(self, action):
    self.position = int(np.clip(self.position + (1 if action == 1 else -1), 0, self.length - 1))
    self.time += 1
    reached = self.position == self.goal
    return self._obs(), 1.0 if reached else -self.step_cost, reached, self.time >= 4 * self.length, {}


def make(length: int = 10, step_cost: float = 0.01) -> gym.Env:
  return Corridor(length, step_cost)
