"""distrl: reinforcement learning in JAX, compiled end to end and sharded over every device: PPO (feed-forward and
recurrent), IMPALA, DQN, PQN, SAC and TD3.

From Python (a notebook, a script; `distrl/library.py`):

  import distrl
  config = distrl.get_config("ppo:Acrobot-v1", total_timesteps=40_000, lr=1e-3)  # as --config=... --config.lr=...
  result = distrl.train(config, workdir="runs/acrobot")  # again: resumes; result.state, .history, .checkpoint
  policy = distrl.load_policy("runs/acrobot", best=True)  # policy(observations) -> greedy actions

A mistake is raised as `distrl.ConfigError` (or `distrl.RunFailed` for a run that cannot go on) with the command
line's one-line message. From the shell: `python -m distrl.launch`, `distrl.evaluate`, `distrl.export` (a policy
that runs with JAX alone), `distrl.plot`.

`import distrl` stays light: the names above import JAX and the trainer when first used (PEP 562).
"""

import importlib

from distrl import xla_options

xla_options.configure()

# The names `import distrl` offers, and the module each comes from on first use.
_LAZY = {"get_config": "distrl.library", "train": "distrl.library", "load_policy": "distrl.library",
         "Result": "distrl.library", "ConfigError": "distrl.errors", "RunFailed": "distrl.errors"}
__all__ = list(_LAZY)


def __getattr__(name: str):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'distrl' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_LAZY))
