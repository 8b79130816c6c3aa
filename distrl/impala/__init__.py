"""IMPALA behind the algorithm contract: sizes, init, update, act; and behaviour and learn, for host environments'
actors that run several updates behind the learner (`distrl.architectures.host`)."""

from distrl.impala.learner import MAX_ACTOR_LAG, act, behaviour, init, learn, sizes, update

# The fields a sweep can vary in one program (distrl.runtime.sweep): none changes an array shape.
SWEEPABLE = ("ent_coef", "gamma", "lr", "max_grad_norm", "obs_clip", "pg_rho_clip", "reward_clip", "rho_clip",
             "vf_coef", "vtrace_lambda")

__all__ = ["SWEEPABLE", "MAX_ACTOR_LAG", "act", "behaviour", "init", "learn", "sizes", "update"]
