"""SAC behind the algorithm contract: sizes, init, update, act."""

from distrl.sac.learner import act, init, sizes, update

__all__ = ["act", "init", "sizes", "update"]
