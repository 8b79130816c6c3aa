"""IMPALA behind the algorithm contract: sizes, init, update, act; and behaviour and learn, for host environments'
actors that run several updates behind the learner (`distrl.host`)."""

from distrl.impala.learner import MAX_ACTOR_LAG, act, behaviour, init, learn, sizes, update

__all__ = ["MAX_ACTOR_LAG", "act", "behaviour", "init", "learn", "sizes", "update"]
