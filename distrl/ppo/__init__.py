"""PPO behind the algorithm contract: sizes, init, update, act."""

from distrl.ppo.learner import act, init, sizes, update

__all__ = ["act", "init", "sizes", "update"]
