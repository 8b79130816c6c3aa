"""PQN behind the algorithm contract: sizes, init, update, act."""

from distrl.pqn.learner import act, init, sizes, update

__all__ = ["act", "init", "sizes", "update"]
