"""DQN behind the algorithm contract: sizes, init, update, act."""

from distrl.dqn.learner import act, init, sizes, update

# The fields a sweep can vary in one program (distrl.runtime.sweep): none changes an array shape.
SWEEPABLE = ("end_e", "gamma", "lr", "max_grad_norm", "obs_clip", "priority_alpha", "priority_beta",
             "priority_eps", "reward_clip", "start_e", "tau")

__all__ = ["SWEEPABLE", "act", "init", "sizes", "update"]
