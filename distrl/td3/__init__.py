"""TD3 behind the algorithm contract: sizes, init, update, act."""

from distrl.td3.learner import act, init, sizes, update

__all__ = ["act", "init", "sizes", "update"]
