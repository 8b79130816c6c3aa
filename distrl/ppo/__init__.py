"""PPO behind the algorithm contract: sizes, init, update, act; and initial_memory, for its recurrent core."""

from distrl.ppo.learner import act, init, initial_memory, sizes, update

__all__ = ["act", "init", "initial_memory", "sizes", "update"]
