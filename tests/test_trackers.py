"""The experiment trackers (distrl/runtime/trackers.py), with the real libraries offline: W&B in offline mode (its run
files read back here), MLflow with a database store in tmp_path. They hold the records metrics.jsonl holds, per seed
as there; a resume goes on with their runs; a tracker that fails is one warning line and the run completes; a tracker
asked for without its package, or with a wrong field, is one line before anything compiles."""

import json
import os
import struct
import subprocess
import sys

import jax
import pytest

from distrl.errors import ConfigError
from distrl.runtime import trackers, trainer
from tests.cli import records
from tests.runs import tiny_ppo

pytest.importorskip("wandb")
pytest.importorskip("mlflow")

SEEDS = 2  # records with per-seed keys (train/episode_return/seed_1), as metrics.jsonl has them


def _tracked(num_updates, **fields):
  config = tiny_ppo(num_updates, num_seeds=SEEDS, **fields)
  config.wandb.project, config.wandb.tags = "distrl-tests", ("tiny",)
  config.mlflow.experiment = "distrl-tests"
  return config


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
  """One database for the module: MLflow builds its tables once per store (seconds)."""
  return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


@pytest.fixture
def offline(tmp_path, monkeypatch, mlflow_uri):
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_DIR", str(tmp_path))
  monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
  return tmp_path


def _wandb_records(directory, run_id):
  """The records (history rows without W&B's own `_` fields) of every offline run file of `run_id`, in the order the
  starts wrote them, read from W&B's transaction log: 32 KiB blocks of chunks, each a (crc32, length, type) header
  and a piece of a serialized `Record` (type 1 whole, 2 first, 3 middle, 4 last); a 7-byte file header first."""
  from wandb.proto import wandb_internal_pb2

  rows, config = [], []
  runs = sorted(d for d in os.listdir(os.path.join(directory, "wandb")) if d.endswith(f"-{run_id}"))
  for run in runs:
    with open(os.path.join(directory, "wandb", run, f"run-{run_id}.wandb"), "rb") as f:
      data = f.read()
    assert data[:4] == b":W&B"
    position, pieces = 7, b""
    while position + 7 <= len(data):
      left = 32768 - position % 32768
      _, length, kind = struct.unpack("<IHB", data[position:position + 7]) if left >= 7 else (0, 0, 0)
      if kind == 0:  # the rest of a block is padding
        position += left
        continue
      pieces += data[position + 7:position + 7 + length]
      position += 7 + length
      if kind in (1, 4):
        record = wandb_internal_pb2.Record.FromString(pieces)
        pieces = b""
        if record.HasField("history"):
          row = {"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in record.history.item}
          rows.append({k: v for k, v in row.items() if not k.startswith("_")})
        elif record.HasField("run"):
          config.append({u.key: json.loads(u.value_json) for u in record.run.config.update if u.key != "_wandb"})
  return rows, config, len(runs)


def _mlflow_records(run_id):
  """The run's metrics as records: {"step": s, key: value at s, ...} by step."""
  from mlflow.tracking import MlflowClient

  client = MlflowClient()
  by_step = {}
  for key in client.get_run(run_id).data.metrics:
    for metric in client.get_metric_history(run_id, key):
      by_step.setdefault(metric.step, {"step": metric.step})[key] = metric.value
  return [by_step[step] for step in sorted(by_step)], client.get_run(run_id)


def _ids(workdir):
  with open(os.path.join(workdir, trackers.FILE)) as f:
    return json.load(f)


def test_the_trackers_hold_the_records_of_metrics_jsonl_and_a_resume_goes_on_with_their_runs(offline):
  workdir = offline / "run"
  trainer.train(_tracked(4), str(workdir), devices=jax.devices()[:1])
  ids = _ids(workdir)
  trainer.train(_tracked(8), str(workdir), devices=jax.devices()[:1])  # extended: a second start, resumed
  assert _ids(workdir) == ids
  expected = records(workdir)
  assert [r["update"] for r in expected] == [2, 4, 6, 8] and f"train/episode_return/seed_{SEEDS - 1}" in expected[0]

  rows, configs, starts = _wandb_records(offline, ids["wandb"])
  assert starts == 2 and rows == expected
  assert configs[0]["total_timesteps"] == _tracked(4).total_timesteps and configs[1] == {}  # logged once, when new
  rows, run = _mlflow_records(ids["mlflow"])
  assert rows == expected
  assert run.data.params["total_timesteps"] == str(_tracked(4).total_timesteps)
  assert run.data.params["wandb.tags"] == "['tiny']" and run.info.status == "FINISHED"


def test_a_tracker_that_fails_is_one_warning_and_the_run_completes_with_its_files(offline, monkeypatch, capsys):
  import wandb

  def full_disk(*args, **kwargs):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(wandb.Run, "log", full_disk)
  workdir = offline / "run"
  result = trainer.train(_tracked(4), str(workdir), devices=jax.devices()[:1])
  out = capsys.readouterr().out
  warnings = [line for line in out.splitlines() if "warning" in line.lower()]
  first = records(workdir)[0]["step"]  # the first record's step: 2 updates of the tiny run's steps
  assert warnings == [f"warning: W&B failed at step {first} (OSError: [Errno 28] No space left on device); the run goes "
                      "on without it: metrics.jsonl and tb/ hold every record"], out
  assert not result.stopped and [r["update"] for r in records(workdir)] == [2, 4]
  assert _mlflow_records(_ids(workdir)["mlflow"])[0] == records(workdir)  # the other tracker goes on


@pytest.mark.unit
@pytest.mark.parametrize("key", ["wandb", "mlflow"])
def test_a_tracker_without_its_package_is_one_line_naming_the_extra_before_anything_compiles(key, tmp_path,
                                                                                            monkeypatch):
  # `None` in sys.modules makes `import <key>` raise ModuleNotFoundError, as an uninstalled package does.
  for name in [key, *(m for m in sys.modules if m.startswith(f"{key}."))]:
    monkeypatch.setitem(sys.modules, name, None)
  config = _tracked(4)
  with pytest.raises(ConfigError) as error:
    trainer.train(config, str(tmp_path / "run"))
  switch = trackers.TRACKERS[key].SWITCH
  assert str(error.value) == (f"--config.{key}.{switch} needs the {key} extra ({key} is not installed): "
                              f"pip install 'distrl[{key}]' (pip install -e '.[{key}]' in a clone)")
  assert not (tmp_path / "run").exists()  # refused before the workdir, the program and its compile


@pytest.mark.unit
@pytest.mark.parametrize("group, value, message", [
    ("wandb", {"tags": ("a", 1)}, "wandb.tags=('a', 1) must be a tuple of strings, e.g. "
                                  "--config.wandb.tags='(\"baseline\", \"minatar\")'"),
    ("wandb", "demo", "wandb must be a ConfigDict of project, entity, group, tags, name (as configs.run_fields makes "
                      "it), not 'demo'"),
    ("mlflow", {"run_name": "x"}, None),  # fine with an experiment
])
def test_a_wrong_tracker_field_is_one_line(group, value, message):
  config = _tracked(4)
  if isinstance(value, dict):
    config[group].update(value)
  else:
    with config.ignore_type():
      config[group] = value
  if message is None:
    return trackers.check(config)
  with pytest.raises(ConfigError) as error:
    trackers.check(config)
  assert str(error.value) == message


@pytest.mark.unit
def test_a_tracker_field_set_while_the_tracker_is_off_is_one_line():
  config = tiny_ppo(4)
  config.wandb.entity = "me"
  with pytest.raises(ConfigError) as error:
    trackers.check(config)
  assert str(error.value) == ("wandb.entity='me' is set but wandb.project is not: --config.wandb.project=NAME "
                              "switches W&B on")
  assert trackers.requested(tiny_ppo(4)) == []


@pytest.mark.unit
def test_mlflows_file_store_is_refused_for_several_agents_and_where_mlflow_refuses_it(tmp_path, monkeypatch):
  """It keeps a metric as a file, so train/episode_return/seed_0 cannot be beside train/episode_return; MLflow 3
  refuses it unless MLFLOW_ALLOW_FILE_STORE is set. Both before anything compiles."""
  import mlflow

  monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{tmp_path}/mlruns")
  monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
  config = _tracked(4)
  trackers.check(config, agents=1)
  with pytest.raises(ConfigError, match="MLflow's file store .* cannot keep a run of 2 agents"):
    trackers.check(config, agents=2)
  monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
  with pytest.raises(ConfigError, match=f"MLflow {mlflow.__version__} refuses its file store .* unless "
                                        f"MLFLOW_ALLOW_FILE_STORE=true"):
    trackers.check(config, agents=1)


def test_the_launcher_imports_no_tracker_unless_asked():
  """wandb and mlflow take seconds to import: a run that asks for neither never does."""
  code = ("import sys; from distrl import launch; from distrl.runtime import trainer, trackers; "
          "from distrl.configs import ppo; trackers.check(ppo.get_config()); "
          "print(sorted(m for m in ('wandb', 'mlflow') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
  assert out.strip() == "[]"
