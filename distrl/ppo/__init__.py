"""PPO behind the algorithm contract: sizes, init, update, act; initial_memory, for its recurrent core; and
behaviour and learn, the two halves of update, for host environments (`distrl.architectures.host`)."""

from distrl.ppo.learner import act, behaviour, init, initial_memory, learn, sizes, update

MAX_ACTOR_LAG = 1  # host environments' actors act at most one update behind the learner (Cleanba's)

# The fields a sweep can vary in one program (distrl.runtime.sweep): none changes an array shape.
SWEEPABLE = ("clip_eps", "ent_coef", "gae_lambda", "gamma", "lr", "max_grad_norm", "obs_clip", "reward_clip",
             "vf_coef")

__all__ = ["SWEEPABLE", "MAX_ACTOR_LAG", "act", "behaviour", "init", "initial_memory", "learn", "sizes", "update"]
