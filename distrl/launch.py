"""Command-line entry point.

  python -m distrl.launch --config=ppo --workdir=runs/cartpole [--config.lr=1e-3 ...]
  python -m distrl.launch --config=ppo:Breakout-MinAtar          # a shipped config with a preset
  python -m distrl.launch --config=path/to/my_config.py:preset    # a config file of your own

Running the same command on a workdir that holds a checkpoint resumes it. Several processes
(hosts) form one run with `--coordinator_address=HOST:PORT --num_processes=N --process_id=I`
on every process, or `--distributed` where JAX finds them itself (TPU pods, SLURM, Open MPI);
a SLURM job of several tasks is detected without the flag. See launch/ and BUILD.md.
"""

from distrl.runtime import stopping

stopping.REQUEST.install()  # before the imports below: a Ctrl-C from here on is a stop request, never a traceback

import os  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from distrl import configs, errors, xla_options  # noqa: E402
from distrl.cli import config_flag, noise, rerun  # noqa: E402
from distrl.errors import ConfigError  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, f"A shipped config ({', '.join(configs.names())}) or a "
                                          "config file, with an optional preset: ppo:Acrobot-v1, "
                                          "path/to/my_config.py:preset.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and logs go (default: runs/<algo>-<env>-<time>).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0, for a run of several processes.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "How many processes the run has (with --coordinator_address).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0 to num_processes - 1.")
_DISTRIBUTED = flags.DEFINE_boolean("distributed", None, "Start jax.distributed with cluster auto-detection (TPU pod, "
                                    "SLURM, Open MPI). Default: on inside a SLURM job of several tasks.")
_CACHE = flags.DEFINE_string("compilation_cache", os.path.join("~", ".cache", "distrl", "jax"),
                             "Directory of JAX's persistent compilation cache: a rerun of a config compiles in a "
                             "fraction of the time. Empty to disable.")
_HEARTBEAT = flags.DEFINE_integer("heartbeat_timeout", 60, "Seconds without word from a peer process before the run "
                                  "stops with an error.")
_OVERWRITE = flags.DEFINE_boolean("overwrite", False, "Start a new run in a --workdir that holds one: the old run's "
                                  "files are moved to WORKDIR/overwritten-<time>/, never deleted.")


def _fail(message: str, status: int, *, abandon: bool = False) -> None:
  """Our one line (the noise filter ends it with where it kept what other libraries printed, if they did), then
  exit `status`; with `abandon` (or where orbax left threads) without Python's exit handlers, which would only repeat
  the failure (JAX's, for a program that failed on the devices) or wait: a save that failed as orbax started it can
  leave orbax's threads waiting for the signals of work that never ran, for orbax's coordination timeout (5
  minutes), and the interpreter's exit waits for them, deaf to SIGTERM."""
  print(f"distrl: error: {message}", file=sys.stderr, flush=True)
  stopping.REQUEST.ignore_from_now()
  if abandon or any(type(thread).__module__.startswith("orbax.") and thread.is_alive() and not thread.daemon
                    for thread in threading.enumerate()):
    _leave_now(status)
  sys.exit(status)


def _leave_now(status: int) -> None:
  """Exits `status` without Python's exit handlers and without waiting for this process's other threads."""
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):  # a reader that went away
      pass
  os._exit(status)


_EXPLICIT: set[str] = set()  # the config fields the command line sets (rerun.explicit_fields)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag, config field or config file reported as one line, exit 2."""
  _EXPLICIT.update(rerun.explicit_fields(argv))
  try:
    _, rest = config_flag.read(argv, flags.FLAGS, _CONFIG)
  except ConfigError as error:
    _fail(str(error), 2)
  return rest


def default_workdir(config) -> str:
  """runs/<algo>-<env>-<time>, with a user's module paths (examples.a2c, examples.corridor:make) made path-safe."""
  name = re.sub(r"[^\w.-]+", "_", f"{config.algo}-{config.env_name}")
  return os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def _backend_error(error: Exception) -> None:
  """A JAX backend that cannot start, as one line of ours, exit 1."""
  given = {"JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS"), "XLA_FLAGS": xla_options.users_flags()}
  settings = ", ".join(f"{k}={v}" for k, v in given.items() if v)
  hint = (f" with {settings}: unset or fix {'it' if settings.count('=') == 1 else 'them'}, or install the JAX build "
          f"for your accelerator (see BUILD.md)") if settings else ""
  _fail(f"JAX could not start its backend{hint} ({type(error).__name__}: {errors.first_line(error)})", 1)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO
  import jax  # after flag parsing: JAX reads XLA_FLAGS when its backend starts

  from distrl.runtime import distributed

  if _CACHE.value:
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(_CACHE.value))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # evaluation and init too
  explicit = [_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value]
  if any(v is not None for v in explicit) and not all(v is not None for v in explicit):
    raise app.UsageError("--coordinator_address, --num_processes and --process_id go together")
  auto = _DISTRIBUTED.value if _DISTRIBUTED.value is not None else int(os.environ.get("SLURM_NTASKS", "1")) > 1
  noise.switch_on(f"process {_PROCESS_ID.value} of {_NUM_PROCESSES.value}" if _PROCESS_ID.value is not None
                  else "this process")
  try:
    if distributed.start(*explicit, auto=auto, timeout=_HEARTBEAT.value):
      stopping.REQUEST.install()  # again: JAX's preemption notifier took SIGTERM; the trainer agrees on stops itself
    jax.devices()  # starts the backend
  except Exception as error:  # RuntimeError for an unknown or failing platform, AssertionError for some plugins
    _backend_error(error)
  from distrl.runtime import trainer  # after start: importing gymnax starts JAX's backend

  config = _CONFIG.value
  if _WORKDIR.value is None and jax.process_count() > 1:
    raise app.UsageError("a run of several processes needs one --workdir shared by all of them")
  workdir = os.path.expanduser(_WORKDIR.value) if _WORKDIR.value else default_workdir(config)
  noise.keep_in(workdir, jax.process_index() if jax.process_count() > 1 else None)
  if not _OVERWRITE.value and (unused := rerun.as_recorded(config, workdir, _EXPLICIT)) and jax.process_index() == 0:
    print(f"{workdir} goes on as recorded in its config.json, not as the config given says ({'; '.join(unused)}); "
          f"set a field with --config.FIELD=VALUE to change it", flush=True)
  try:
    result = trainer.train(config, workdir, overwrite=_OVERWRITE.value)
    stopping.REQUEST.ignore_from_now()
    if result.compiling:  # stopped while compiling: the compile cannot be cancelled, and nothing waits for it
      _leave_now(0)
    distributed.finished()
  except errors.DeviceFailed as error:
    _fail(str(error), 1, abandon=True)
  except (errors.ConfigError, errors.RunFailed) as error:
    _fail(str(error), 1)
  except jax.errors.JaxRuntimeError as error:
    if jax.process_count() == 1:
      raise
    distributed.lost(f"lost contact with the run, another process died or was stopped? ({errors.first_line(error)})")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
