"""Where a start of a run begins: from scratch, or from the latest checkpoint of the run in its workdir.

A rerun with the same command resumes. A config that cannot mean the same run (another algorithm, environment,
seed, or array shapes) is refused with what differs; a workdir that holds a run's files but no checkpoint to
resume them from is refused (`--overwrite` moves it aside). Settings that may change (a longer run, another
device count) are said in the start's line and recorded in `run.json`.
"""

import dataclasses
import json
from typing import Callable

import ml_collections

from distrl.errors import ConfigError, RunFailed
from distrl.rl.state import TrainState
from distrl.runtime.checkpoint import Checkpoints, IncompatibleCheckpoint
from distrl.runtime.programs import Program
from distrl.runtime.workdir import Workdir


@dataclasses.dataclass
class Plan:
  """How this start of the run begins."""

  state: TrainState  # the initial state, or the restored one (global layout)
  restored: int | None  # the update of the checkpoint restored, None for a start from scratch
  history: list[dict]  # the run's records up to `update` (metrics.jsonl), which this start goes on from
  changes: dict[str, tuple]  # {field: (recorded value, new value)}: settings changed since config.json
  last_start: dict | None  # run.json as the previous start left it
  finished: bool  # the restored run has done all its updates: nothing to train

  @property
  def update(self) -> int:
    return self.restored or 0

  @property
  def elapsed(self) -> float:
    """The run's training time before this start: `time` of its last record."""
    return self.history[-1]["time"] if self.history else 0.0


def record_config(config: ml_collections.ConfigDict) -> dict:
  """The config as JSON-like values (tuples become lists), as config.json holds it."""
  return json.loads(config.to_json_best_effort())


def changes(old: dict | None, config: ml_collections.ConfigDict) -> dict[str, tuple]:
  """{field: (recorded value, new value)} for every field that differs from the run's config.json."""
  if old is None:
    return {}
  new = record_config(config)
  return {k: (old.get(k, "(unset)"), new.get(k, "(unset)")) for k in sorted(old.keys() | new.keys())
          if old.get(k) != new.get(k)}


def describe(changed: dict[str, tuple], limit: int = 5) -> str:
  shown = [f"{k}: {old!r} -> {new!r}" for k, (old, new) in list(changed.items())[:limit]]
  more = len(changed) - limit
  return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def check(workdir: Workdir, old: dict | None, config: ml_collections.ConfigDict, error: Exception | None) -> None:
  """A ConfigError for a resume that cannot mean what it says (another run's config, another seed)."""
  changed = changes(old, config)
  for field in ("algo", "env_name"):
    if field in changed:
      recorded, given = changed[field]
      raise ConfigError(f"{workdir.path} holds a run of {old.get('algo')} on {old.get('env_name')}, not "
                        f"{config.algo} on {config.env_name} ({field}: {recorded!r} -> {given!r}); resume it with "
                        f"its own config, or use another --workdir")
  if error is not None:
    fields = f"fields that differ from {workdir.file('config.json')}: {describe(changed)}; " if changed else ""
    raise ConfigError(f"{fields}{error}. Resume with the config the run was started with, or use a new --workdir.")
  if "sweep" in changed:
    recorded, given = changed["sweep"]
    raise ConfigError(f"{workdir.path} is a sweep of {recorded!r}; it cannot go on as {given!r} (its agents are "
                      f"those members). Train another sweep in another --workdir")
  if "seed" in changed:
    recorded, given = changed["seed"]
    raise ConfigError(f"{workdir.path} is the run of seed {recorded}; it cannot go on as seed {given} (its "
                      f"environments, networks and samples all derive from its seed). Train seed {given} in another "
                      f"--workdir, or several seeds at once with --config.num_seeds")


def plan(workdir: Workdir, checkpoints: Checkpoints, program: Program, say: Callable[[str], None]) -> Plan:
  """Restores the latest checkpoint of `workdir` if it has one, and decides whether this start may go on from it."""
  config = program.config
  old_config, last_start = workdir.read_json("config.json"), workdir.read_json("run.json")
  try:
    restored, state = checkpoints.restore_latest(program.state, warn=say)
  except IncompatibleCheckpoint as error:
    check(workdir, old_config, config, error)
    raise
  history = workdir.history(say)
  # Killed before its first checkpoint, the same run simply starts again (and logs the same records again);
  # anything else without a checkpoint would mix a new run into an old run's history.
  same_run_from_scratch = not changes(old_config, config) and not workdir.leftovers(saved_only=True)
  if restored is None and (damaged := checkpoints.set_aside()):
    raise RunFailed(f"every checkpoint in {checkpoints.directory} is damaged (moved aside as "
                    f"{', '.join(damaged)}): nothing to resume from. Put a good copy back, or add "
                    f"--overwrite to start over (the old run is moved to {workdir.path}/overwritten-<time>/, not "
                    f"deleted)")
  elif restored is None and history and same_run_from_scratch:
    say(f"{workdir.path}: no checkpoint was saved before the run stopped; starting it again from update 0")
  elif restored is None and (history or workdir.leftovers()):
    raise ConfigError(f"--workdir={workdir.path} holds a run ({'; '.join(workdir.leftovers())}) but no checkpoint "
                      f"to resume it from; add --overwrite to start over there (the old run is moved to "
                      f"{workdir.path}/overwritten-<time>/, not deleted), or use another --workdir")
  if restored is not None:
    check(workdir, old_config, config, None)
  finished = restored is not None and restored >= program.sizes.num_updates
  if not finished:
    history = workdir.keep_history_until(history, restored or 0)
  if restored is not None:
    history = _with_saved_record(workdir, history, restored, checkpoints.record(restored), say)
  return Plan(state=state, restored=restored, history=history, last_start=last_start, finished=finished,
              changes=changes(old_config, config) if restored is not None else {})


def _with_saved_record(workdir: Workdir, history: list[dict], update: int, record: dict | None,
                       say: Callable[[str], None]):
  """The history with the record saved beside the checkpoint of `update`, resumed from, where metrics.jsonl lost it
  (a last line cut short by a crash): written back in its place, as the resumed run will not log that update again."""
  if any(r["update"] == update for r in history):
    return history
  if record is None:
    say(f"warning: {workdir.file('metrics.jsonl')} has no record of update {update}, and its checkpoint holds none "
        f"(unreadable, or saved by an older distrl): that record is lost")
    return history
  history = sorted(history + [record], key=lambda r: r["update"])
  workdir.write_history(history)
  say(f"{workdir.file('metrics.jsonl')}: the record of update {record['update']}, lost, is written again from its "
      f"checkpoint")
  return history


def announce(plan: Plan, program: Program, workdir: Workdir, processes: int, say: Callable[[str], None]) -> None:
  """The start's line: what is trained, or where it resumes and what changed."""
  config, sizes, mesh = program.config, program.sizes, program.mesh
  rounded = (f" ({program.total_steps:,} steps: total_timesteps={config.total_timesteps:,} rounded down to whole "
             f"updates)" if program.total_steps != config.total_timesteps else "")
  if plan.restored is None:
    say(f"training {config.algo} on {config.env_name}: {sizes.num_updates} updates of {sizes.steps_per_update} "
        f"steps{rounded} on {mesh.size} device(s); workdir {workdir.path}")
    return
  last = plan.last_start
  moved = ""
  if last and (last.get("devices"), last.get("processes")) != (mesh.size, processes):
    moved = f" (it ran on {last['devices']} device(s) in {last['processes']} process(es) before)"
  say(f"resuming {workdir.path} from update {plan.update} (step {plan.update * sizes.steps_per_update:,}) of "
      f"{sizes.num_updates}{rounded} on {mesh.size} device(s) in {processes} process(es){moved}"
      + (f" with changed settings: {describe(plan.changes, limit=len(plan.changes))}" if plan.changes else ""))
  if program.architecture.RESUME_NOTE:
    say(program.architecture.RESUME_NOTE)
  if "total_timesteps" in plan.changes:
    say(f"the run now ends at step {program.total_steps:,}: schedules that span the whole run (an annealed learning "
        f"rate, ...) follow the new length from here on")
