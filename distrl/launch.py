"""Command-line entry point.

  python -m distrl.launch --config=configs/ppo.py --workdir=runs/cartpole [--config.lr=1e-3 ...]

Running the same command on a workdir that holds a checkpoint resumes it.
"""

import os
import re
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, with an optional preset: configs/ppo.py:Acrobot-v1.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and logs go (default: runs/<algo>-<env>-<time>).")


def _flag_error(error: Exception, argv: list[str]) -> str:
  """One line for a bad flag, config field, preset or config file."""
  text = str(error).replace("\\n", "\n")
  config_arg = next((a.split("=", 1)[1] for a in reversed(argv) if a.startswith("--config=")), None)  # absl takes the last
  if config_arg is not None and not os.path.exists(config_arg.split(":", 1)[0]):
    return f"config file {config_arg.split(':', 1)[0]!r} does not exist (e.g. --config=configs/ppo.py)"
  if isinstance(error, (AttributeError, KeyError)):
    suggestion = re.search(r'Did you mean "([\w.]+)" instead of "([\w.]+)"', text)
    if suggestion:
      return f"unknown config field {suggestion[2]!r}: did you mean {suggestion[1]!r}?"
    name = re.search(r"(\w+)", text)
    return f"unknown config field {name[1] if name else text!r}"
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if "Traceback" in text:  # a config file raised: its own message is the last line
    return re.sub(r"^\w+(Error|Exception): ", "", lines[-1])
  return " ".join(lines)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag, config field or config file reported as one line, exit 2."""
  try:
    rest = flags.FLAGS(argv)
    config = _CONFIG.value
    if config is not None:
      config.algo  # a config file that failed to load raises only when first read
  except Exception as error:  # flags.Error, or whatever a config file or override raised
    print(f"distrl: error: {_flag_error(error, argv)}", file=sys.stderr)
    sys.exit(2)
  if config is None:
    print("distrl: error: --config is required, e.g. --config=configs/ppo.py", file=sys.stderr)
    sys.exit(2)
  return rest


def default_workdir(config) -> str:
  return os.path.join("runs", f"{config.algo}-{config.env_name}-{time.strftime('%Y%m%d-%H%M%S')}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO
  from distrl import errors, trainer  # after flag parsing: JAX reads XLA_FLAGS at import

  config = _CONFIG.value
  workdir = _WORKDIR.value or default_workdir(config)
  try:
    trainer.train(config, workdir)
  except (errors.ConfigError, trainer.TrainingDiverged) as error:
    print(f"distrl: error: {error}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
