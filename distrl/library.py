"""distrl as a Python library (a notebook, a script): `get_config`, `train` and `load_policy`, which `import distrl`
offers as `distrl.get_config`, `distrl.train` and `distrl.load_policy`.

  import distrl
  config = distrl.get_config("ppo:Acrobot-v1", total_timesteps=40_000, lr=1e-3)
  result = distrl.train(config, workdir="runs/acrobot")    # run it again to resume; raise total_timesteps to extend
  policy = distrl.load_policy("runs/acrobot")
  actions = policy(observations)                           # a batch (B, *observation_shape) -> (B, ...)

They are the command line's code: `get_config` reads a name as `--config` does and its keyword overrides as the
flags `--config.FIELD=VALUE` (`distrl.cli.config_flag.read`), `train` is `distrl.launch`'s call of the trainer, and
`load_policy` loads a checkpoint as `distrl.evaluate` does. Mistakes are raised, never an exit: `ConfigError` (a
config, an override, a workdir a user can fix) and `RunFailed` (a run that could not go on: what is kept is said),
each with the launcher's one-line message. A Ctrl-C (a notebook's interrupt), SIGTERM or SIGHUP during `train` stops
the run after the current call with a checkpoint and returns (`result.stopped`). Progress goes to stdout: one line
redrawn in place on a terminal, plain lines elsewhere (a notebook, a log file).

Unlike `distrl.launch`, `train` does not switch on JAX's persistent compilation cache (it would change the caller's
JAX settings); a notebook that starts often can: `jax.config.update("jax_compilation_cache_dir", "~/.cache/...")`.
"""

import dataclasses
import os

import ml_collections
from absl import flags
from ml_collections import config_flags

from distrl.cli import config_flag
from distrl.policy import Policy
from distrl.runtime import trainer


def get_config(name: str, **overrides) -> ml_collections.ConfigDict:
  """The config `--config=NAME` gives, with `overrides` set as `--config.FIELD=VALUE` flags set them.

  `name` is a shipped config (`"ppo"`), with a preset (`"ppo:Acrobot-v1"`), or a config file
  (`"path/to/my_config.py"`, `"path/to/my_config.py:preset"`). Overrides are checked as the command line checks them
  (an unknown field, with the one meant; a value its field's type cannot take): `lr=1e-3`,
  `hidden_sizes=(64, 64)`, `env_kwargs={"size": 3}` (a dict sets a group's fields, as `--config.env_kwargs.size=3`),
  `sweep={"lr": (1e-3, 3e-4)}`. The config is locked as the launcher's is: setting a field it lacks raises.
  """
  flag_values = flags.FlagValues()  # of this call alone: nothing is defined in absl's global FLAGS
  holder = config_flags.DEFINE_config_file("config", None, "A config name or file.", flag_values=flag_values,
                                           lock_config=True)
  config, _ = config_flag.read(["distrl", f"--config={name}", *config_flag.as_flags(overrides)], flag_values, holder)
  return config


@dataclasses.dataclass
class Result(trainer.Result):
  """`trainer.Result` (the final `state`, the `history` of this start's records, `stopped`, `compile_seconds`) and
  where the run's files are."""

  workdir: str = ""
  checkpoint: str | None = None  # WORKDIR/checkpoints/<update>: the saved checkpoint of `state` (None: none saved)
  best: str | None = None  # WORKDIR/best: the checkpoint of the best evaluation (None where nothing was evaluated)
  metrics: str | None = None  # WORKDIR/metrics.jsonl: every record of the run, its earlier starts' too


def train(config: ml_collections.ConfigDict, workdir: str, *, overwrite: bool = False, devices=None) -> Result:
  """Trains `config` in `workdir` (a directory: made if needed), resuming from its latest checkpoint if it has one, as
  `python -m distrl.launch` does; returns when the run has reached `config.total_timesteps` or was stopped.

  The config is used as it is given (a rerun from the command line takes the fields it does not set from the
  workdir's config.json instead). A finished run returns at once (raise `total_timesteps` to train it longer).
  `overwrite`: a run already in `workdir` is moved aside into `workdir/overwritten-<time>/` and a new one starts.
  `devices`: the devices to train on (default: every device).
  """
  workdir = os.path.expanduser(str(workdir))
  result = trainer.train(config, workdir, devices=devices, overwrite=overwrite)
  checkpoint = os.path.join(workdir, "checkpoints", str(int(result.state.update)))
  best = os.path.join(workdir, "best")
  metrics = os.path.join(workdir, "metrics.jsonl")
  return Result(**{field.name: getattr(result, field.name) for field in dataclasses.fields(trainer.Result)},
                workdir=workdir, checkpoint=checkpoint if os.path.isdir(checkpoint) else None,
                best=best if os.path.isdir(best) and os.listdir(best) else None,
                metrics=metrics if os.path.isfile(metrics) else None)


def load_policy(workdir: str, best: bool = False, member: int | None = None, *,
                checkpoint: int | None = None) -> Policy:
  """The greedy policy of the run in `workdir`: `actions = policy(obs)` for a batch of observations
  (B, *observation_shape), numpy actions (B,) or (B, action_dim) out.

  From the latest checkpoint, or `checkpoint` (an update), or with `best` the state of the best evaluation
  (WORKDIR/best). A sweep's `member` K (required for a sweep); with several seeds, the first seed's agent.

  Memory (a recurrent agent, `config.recurrent`): the policy is stateful. Row i of a call continues from row i of the
  call before; call `policy.reset()` when new episodes start in every row, `policy.reset(done)` with a boolean
  mask (B,) to start only the rows whose episode ended, before the call that sees their first observations. A call
  with another batch size starts every row afresh. A policy without memory depends only on its observations.
  """
  from distrl import policy

  return Policy(policy.restore(os.path.expanduser(str(workdir)), best=best, member=member, checkpoint=checkpoint))
