"""PPO behind the algorithm contract: sizes, init, update, act; initial_memory, for its recurrent core; and
behaviour and learn, the two halves of update, for host environments (`distrl.host`)."""

from distrl.ppo.learner import act, behaviour, init, initial_memory, learn, sizes, update

MAX_ACTOR_LAG = 1  # host environments' actors act at most one update behind the learner (Cleanba's)

__all__ = ["MAX_ACTOR_LAG", "act", "behaviour", "init", "initial_memory", "learn", "sizes", "update"]
