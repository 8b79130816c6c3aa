"""Command-line entry point.

  python -m distrl.launch --config=configs/ppo.py --workdir=runs/cartpole [--config.lr=1e-3 ...]

Running the same command on a workdir that holds a checkpoint resumes it.
"""

import os
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, with an optional preset: configs/ppo.py:Acrobot-v1.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and logs go (default: runs/<algo>-<env>-<time>).")
flags.mark_flags_as_required(["config"])


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
  app.run(main)
