"""Return estimators and bootstrap targets, one concept per module, for every algorithm to import from here.

    gae             generalised advantage estimates (PPO, A2C)
    lambda_returns  lambda-returns; with max_a Q(s_{t+1}, a) Peng's Q(lambda) (PQN)
    vtrace          V-trace's value targets and policy-gradient advantages (IMPALA)
    nstep           n-step returns of a window read from the replay at sampling time (DQN, SAC, TD3)
    double_q        DQN's (double) Q-learning target, SAC's and TD3's clipped double-Q target
    categorical     distributional DQN's (C51) target: the next distribution moved by the return, projected
    quantile        QR-DQN's target: the next state's quantiles moved by the return

Pure functions of arrays with keyword-only hyperparameters (bind them once with `functools.partial`). Sequences are
time-major, (T, ...); names carry their time index: `r_t` is the reward of step t (taken in s_t),
`value_tp1` / `v_tp1` the value of s_{t+1}, the state step t reached *before any auto-reset*. Two flags say how an
episode ended at step t, and they mean different things to an estimator:

    terminated_t   s_{t+1} is terminal: nothing is bootstrapped from it
    episode_end_t  terminated or truncated (a time limit): the next row is another episode, so no trace or sum
                   runs past step t; a truncated step still bootstraps from the value of its final state

Each estimator is tested on hand-computed numbers and against rlax where rlax has it (tests/test_returns.py).
"""

from distrl.rl.returns.categorical import categorical_target
from distrl.rl.returns.double_q import clipped_double_q_target, double_q_target
from distrl.rl.returns.gae import gae
from distrl.rl.returns.lambda_returns import lambda_returns
from distrl.rl.returns.nstep import n_step_return
from distrl.rl.returns.quantile import quantile_target
from distrl.rl.returns.vtrace import VTrace, vtrace

__all__ = ["VTrace", "categorical_target", "clipped_double_q_target", "double_q_target", "gae", "lambda_returns",
           "n_step_return", "quantile_target", "vtrace"]
