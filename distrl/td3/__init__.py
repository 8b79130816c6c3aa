"""TD3 behind the algorithm contract: sizes, init, update, act."""

from distrl.td3.learner import act, init, sizes, update

# The fields a sweep can vary in one program (distrl.runtime.sweep): none changes an array shape.
SWEEPABLE = ("actor_lr", "critic_lr", "exploration_noise", "gamma", "noise_clip", "obs_clip", "policy_noise",
             "reward_clip", "tau")

__all__ = ["SWEEPABLE", "act", "init", "sizes", "update"]
