"""PQN behind the algorithm contract: sizes, init, update, act; and initial_memory, for its recurrent core."""

from distrl.pqn.learner import act, init, initial_memory, sizes, update

# The fields a sweep can vary in one program (distrl.runtime.sweep): none changes an array shape.
SWEEPABLE = ("end_e", "gamma", "lr", "max_grad_norm", "obs_clip", "q_lambda", "reward_clip", "reward_scale",
             "start_e")

__all__ = ["SWEEPABLE", "act", "init", "initial_memory", "sizes", "update"]
