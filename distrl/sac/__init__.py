"""SAC behind the algorithm contract: sizes, init, update, act."""

from distrl.sac.learner import act, init, sizes, update

# The fields a sweep can vary in one program (distrl.runtime.sweep): none changes an array shape.
SWEEPABLE = ("actor_lr", "critic_lr", "gamma", "initial_alpha", "obs_clip", "reward_clip",
             "target_entropy_per_dim", "tau")

__all__ = ["SWEEPABLE", "act", "init", "sizes", "update"]
