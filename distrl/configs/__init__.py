"""distrl's own configs, shipped with the package: `--config=ppo`, `--config=dqn:Acrobot-v1` work from any directory.

Each module here defines `get_config(arg=None)`, `arg` naming a preset. A user's own config file is
named by its path instead (`--config=my_configs/ppo_big.py:preset`).
"""

import difflib
import importlib
import os

from distrl.errors import ConfigError

DIRECTORY = os.path.dirname(os.path.abspath(__file__))

# Fields the trainer reads from every config, whatever the algorithm (distrl/algorithms.py states the contract).
RUN_FIELDS = ("algo", "env_name", "env_kwargs", "seed", "num_seeds", "backend", "num_envs", "log_every",
              "eval_every", "eval_episodes", "checkpoint_every", "keep_checkpoints")


def lacking(config) -> str | None:
  """What a config lacks of RUN_FIELDS, or of the fields of the shipped config of its `algo` (which that algorithm
  reads), as a message; None when it has them all."""
  missing = [field for field in RUN_FIELDS if field not in config]
  if missing:
    return (f"the config lacks {', '.join(missing)} (every config has {', '.join(RUN_FIELDS)}; "
            f"see distrl/configs/ppo.py)")
  if not (isinstance(config.algo, str) and config.algo in names()):
    return None
  missing = sorted(set(importlib.import_module(f"{__name__}.{config.algo}").get_config()) - set(config))
  if not missing:
    return None
  more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
  return (f"algo={config.algo!r} reads fields this config lacks ({', '.join(missing[:5])}{more}); start from its own "
          f"config: --config={config.algo}")


def apply_preset(config, algo: str, presets: dict, arg: str | None):
  """`config` updated with the preset `arg` names (none: as it is), else a ValueError naming the presets (the
  closest first, and the field to set for a suite's environment that has no preset)."""
  if not arg:
    return config
  if arg not in presets:
    close = difflib.get_close_matches(arg.lower(), [p.lower() for p in presets], n=1, cutoff=0.7)
    hint = f"did you mean {next(p for p in presets if p.lower() == close[0])!r}? " if close else ""
    if ":" in arg:
      hint += f"any environment of a suite trains as --config={algo} --config.env_name={arg}; "
    raise ValueError(f"unknown preset {arg!r} for --config={algo}; {hint}choose one of {', '.join(presets)}")
  config.update(presets[arg])
  return config


def names() -> list[str]:
  """The shipped configs: ppo, dqn, ..."""
  return sorted(f[:-3] for f in os.listdir(DIRECTORY) if f.endswith(".py") and not f.startswith("_"))


def resolve(value: str) -> str:
  """A --config value as ml_collections' config_flags takes it: a file path (with an optional `:preset`) stays as
  it is; the name of a shipped config becomes its file's path. Anything else is a ConfigError naming what exists."""
  name, colon, preset = value.partition(":")
  if os.path.isfile(name):
    return value
  if name in names():  # even where a directory of that name is here (a workdir called ppo, say)
    return os.path.join(DIRECTORY, f"{name}.py") + colon + preset
  if os.path.isdir(name):
    raise ConfigError(f"config {name!r} is a directory, not a config file; give a shipped config "
                      f"({', '.join(names())}) or a .py file that defines get_config()")
  stem = os.path.splitext(os.path.basename(name))[0]
  hint = f" (did you mean --config={stem}{colon}{preset}?)" if stem in names() else ""
  raise ConfigError(f"config {name!r} is neither a file nor one of distrl's configs ({', '.join(names())}){hint}; "
                    f"e.g. --config=ppo, --config=ppo:Acrobot-v1 or --config=path/to/my_config.py")
