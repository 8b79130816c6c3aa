"""Experiment trackers beside metrics.jsonl and tb/: Weights & Biases (`config.wandb.project`) and MLflow
(`config.mlflow.experiment`).

Each tracker is a small class with one interface (`Tracker`): `open` starts its run, or goes on with the run whose id
it is given, `log` logs one record (the keys metrics.jsonl has) at its environment step, `close` ends the run. Each
reads its own environment (`WANDB_MODE`, `WANDB_DIR`, `WANDB_API_KEY`; `MLFLOW_TRACKING_URI`, ...), and its package,
an optional extra, is imported only when a config asks for it (`check`, before anything compiles).

`Trackers` holds those a run asked for, on process 0 only: it keeps their run ids in WORKDIR/trackers.json, so a
resumed run goes on with the same tracker runs, logs the resolved config when a tracker's run is new, and turns a
tracker's failure (network down, disk full) into one warning line after which the run goes on without that tracker:
metrics.jsonl and tb/ hold every record whatever the trackers do.
"""

import os
import time
import urllib.parse
from typing import Callable, Protocol

import ml_collections

from distrl.errors import ConfigError, first_line

FILE = "trackers.json"  # {tracker key: its run's id} in the workdir


class Tracker(Protocol):
  """One tracker's run: `KEY` is its config group, pip extra and package; `TITLE` the name messages use; `FIELDS` the
  group's fields and their types, of which `SWITCH` switches the tracker on."""

  KEY: str
  TITLE: str
  FIELDS: dict[str, type | tuple[type, ...]]
  SWITCH: str

  def open(self, run_id: str | None, config: dict, name: str) -> str:
    """Starts a run named `name` and logs `config` (run_id None), or goes on with run `run_id`; returns the run's
    id."""

  def describe(self) -> str:
    """Where the run is, in a few words (for the start's line)."""

  def log(self, record: dict) -> None:
    """One record of metrics.jsonl: `step`, `update`, `time` and the scalars, at the record's `step`."""

  def close(self, failed: bool) -> None:
    """Ends the run (as failed where the run failed)."""


class WandB:
  """A W&B run (`wandb.init`). Records are logged with their environment step as the field `step`, which W&B's charts
  take as their x-axis (`define_metric`): a run resumed from a checkpoint older than its last record logs steps W&B
  has seen, which `wandb.log(..., step=)` would drop."""

  KEY, TITLE = "wandb", "W&B"
  FIELDS, SWITCH = {"project": str, "entity": str, "group": str, "tags": (tuple, list), "name": str}, "project"

  def __init__(self, fields: ml_collections.ConfigDict):
    self.fields, self._run = fields, None

  def open(self, run_id, config, name):
    import wandb

    fields = self.fields
    self._run = wandb.init(project=fields.project, entity=fields.entity or None, group=fields.group or None,
                           tags=list(fields.tags) or None, name=fields.name or name, id=run_id, resume="allow",
                           config=config if run_id is None else None,
                           # distrl's console stays its own: no "wandb:" lines, no copy of stdout in the run
                           settings=wandb.Settings(silent=True, console="off"))
    self._run.define_metric("*", step_metric="step")
    return self._run.id

  def describe(self):
    if self._run.offline:
      return f"offline in {self._run.settings.sync_dir} (wandb sync uploads it)"
    return self._run.url or f"project {self.fields.project}"

  def log(self, record):
    self._run.log(record)

  def close(self, failed):
    self._run.finish(exit_code=1 if failed else 0)


class MLflow:
  """An MLflow run (`MlflowClient`, which reads MLFLOW_TRACKING_URI): the config as the run's parameters (flattened,
  `env_kwargs.length`), the records' fields as metrics at their environment step."""

  KEY, TITLE = "mlflow", "MLflow"
  FIELDS, SWITCH = {"experiment": str, "run_name": str}, "experiment"
  BATCH = 100  # parameters and metrics per request: MLflow takes at most 100 parameters (1,000 metrics) in one

  def __init__(self, fields: ml_collections.ConfigDict):
    self.fields, self._client, self._run_id = fields, None, None

  def open(self, run_id, config, name):
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    self._client = client = MlflowClient()
    if run_id is not None:
      client.update_run(run_id, status="RUNNING")  # raises where the store has no such run
      self._run_id = run_id
      return run_id
    experiment = client.get_experiment_by_name(self.fields.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(self.fields.experiment)
    self._run_id = client.create_run(experiment_id, run_name=self.fields.run_name or name).info.run_id
    params = [Param(key, str(value)) for key, value in _flat(config).items()]
    for start in range(0, len(params), self.BATCH):
      client.log_batch(self._run_id, params=params[start:start + self.BATCH])
    return self._run_id

  def describe(self):
    return f"experiment {self.fields.experiment} at {self._client.tracking_uri}"

  def log(self, record):
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(key, float(value), now, record["step"]) for key, value in record.items() if key != "step"]
    for start in range(0, len(metrics), self.BATCH):
      self._client.log_batch(self._run_id, metrics=metrics[start:start + self.BATCH])

  def close(self, failed):
    self._client.set_terminated(self._run_id, status="FAILED" if failed else "FINISHED")


TRACKERS = {tracker.KEY: tracker for tracker in (WandB, MLflow)}


def _flat(config: dict, prefix: str = "") -> dict:
  """A nested config as {"group.field": value}."""
  flat = {}
  for key, value in config.items():
    if isinstance(value, dict) and value:
      flat.update(_flat(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def _fields(config: ml_collections.ConfigDict, key: str):
  """The config's group of tracker `key`; None where the config has none (a config of a user's own algorithm written
  without `configs.run_fields`): such a config asks for no tracker."""
  return config[key] if key in config else None


def requested(config: ml_collections.ConfigDict) -> list[str]:
  """The keys of the trackers the config switches on."""
  return [key for key, tracker in TRACKERS.items() if (fields := _fields(config, key)) is not None
          and fields[tracker.SWITCH]]


def check(config: ml_collections.ConfigDict, agents: int = 1) -> None:
  """A ConfigError (one line) for a tracker's field of the wrong type, a field set while its tracker is off, a
  tracker whose package is not installed (naming its extra), or MLflow's file store with several agents (`agents`),
  whose per-agent metrics (train/episode_return/seed_0 beside train/episode_return) it cannot hold. Imports the
  packages of the trackers asked for, and no other."""
  for key, tracker in TRACKERS.items():
    fields, types = _fields(config, key), tracker.FIELDS
    if fields is None:
      continue
    if not isinstance(fields, ml_collections.ConfigDict) or set(fields) != set(types):
      raise ConfigError(f"{key} must be a ConfigDict of {', '.join(types)} (as configs.run_fields makes it), not "
                        f"{fields!r}")
    for name, kind in types.items():
      value = fields[name]
      if not isinstance(value, kind) or (name == "tags" and not all(isinstance(t, str) for t in value)):
        form = "a tuple of strings, e.g. --config.wandb.tags='(\"baseline\", \"minatar\")'" if name == "tags" else \
            f"a string (set --config.{key}.{name}=...)"
        raise ConfigError(f"{key}.{name}={value!r} must be {form}")
    switch = tracker.SWITCH
    if not fields[switch] and (extra := next((name for name in types if fields[name]), None)):
      raise ConfigError(f"{key}.{extra}={fields[extra]!r} is set but {key}.{switch} is not: "
                        f"--config.{key}.{switch}=NAME switches {tracker.TITLE} on")
  for key in requested(config):
    switch = TRACKERS[key].SWITCH
    try:
      __import__(key)
    except ImportError as error:
      raise ConfigError(f"--config.{key}.{switch} needs the {key} extra ({error.name or key} is not installed): "
                        f"pip install 'distrl[{key}]' (pip install -e '.[{key}]' in a clone)") from None
    except Exception as error:  # noqa: BLE001 - an install that is there but broken
      raise ConfigError(f"--config.{key}.{switch}: {key} cannot be imported ({first_line(error, with_type=True)}); "
                        f"reinstall it: pip install --force-reinstall 'distrl[{key}]'") from None
  if "mlflow" in requested(config):
    _check_mlflow_store(agents)


def _check_mlflow_store(agents: int) -> None:
  """MLflow's file store (a `file:` or plain path MLFLOW_TRACKING_URI) keeps each metric in a file of its name, so it
  cannot hold train/episode_return/seed_0 beside train/episode_return; recent MLflow 3 releases (those that have
  MLFLOW_ALLOW_FILE_STORE) refuse it unless that is set. Either is said here, before the run compiles, rather than as
  a warning once it has."""
  import mlflow
  from mlflow import environment_variables

  uri = mlflow.get_tracking_uri()
  if urllib.parse.urlparse(uri).scheme not in ("", "file"):
    return
  fix = "set MLFLOW_TRACKING_URI to a database (sqlite:///mlflow.db, MLflow's default) or a tracking server"
  if agents > 1:
    raise ConfigError(f"MLflow's file store ({uri}) cannot keep a run of {agents} agents: it cannot hold "
                      f"train/episode_return beside train/episode_return/seed_0; {fix}")
  allowed = getattr(environment_variables, "MLFLOW_ALLOW_FILE_STORE", None)
  if allowed is not None and not allowed.get():
    raise ConfigError(f"MLflow {mlflow.__version__} refuses its file store ({uri}) unless "
                      f"MLFLOW_ALLOW_FILE_STORE=true: set that, or {fix}")


class Trackers:
  """The trackers of one start of a run (process 0), each dropped with one warning line where it fails."""

  def __init__(self, trackers: list[Tracker], say: Callable[[str], None]):
    self._open, self._say = trackers, say

  @classmethod
  def open(cls, config: ml_collections.ConfigDict, recorded: dict, workdir, say: Callable[[str], None]) -> "Trackers":
    """Opens the trackers `config` asks for in `workdir` (a `Workdir`): each goes on with the run whose id
    trackers.json keeps, or starts one logging `recorded` (the config as config.json holds it) and keeps its id."""
    keys = requested(config)
    if not keys:
      return cls([], say)
    ids = workdir.read_json(FILE) or {}
    name = os.path.basename(os.path.normpath(workdir.path))
    opened = []
    for key in keys:
      tracker = TRACKERS[key](config[key])
      try:
        ids[key] = tracker.open(ids.get(key), recorded, name)
      except Exception as error:  # noqa: BLE001 - a tracker's failure never ends the run
        say(_dropped(tracker, "could not start", error))
        continue
      opened.append(tracker)
      say(f"{tracker.TITLE}: run {ids[key]}, {tracker.describe()}")
    workdir.write_json(FILE, ids)
    return cls(opened, say)

  def log(self, record: dict) -> None:
    for tracker in list(self._open):
      try:
        tracker.log(record)
      except Exception as error:  # noqa: BLE001
        self._open.remove(tracker)
        self._say(_dropped(tracker, f"failed at step {record['step']:,}", error))
        _quietly(tracker.close, True)

  def close(self, failed: bool = False) -> None:
    for tracker in self._open:
      try:
        tracker.close(failed)
      except Exception as error:  # noqa: BLE001
        self._say(_dropped(tracker, "could not end its run", error))
    self._open = []


def _dropped(tracker: Tracker, what: str, error: Exception) -> str:
  return (f"warning: {tracker.TITLE} {what} ({_short(first_line(error, with_type=True))}); the run goes on without it: "
          f"metrics.jsonl and tb/ hold every record")


def _short(text: str, limit: int = 400) -> str:
  return text if len(text) <= limit else text[:limit - 1] + "…"


def _quietly(function, *args) -> None:
  """Calls `function`, whose failure was said already."""
  try:
    function(*args)
  except Exception:  # noqa: BLE001
    pass
