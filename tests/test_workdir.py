"""A run's workdir (distrl/runtime/workdir.py, session.py): one run at a time, its history never lost, the
failures of writing there one line each; the files of a run are compared before and after, not only exit codes."""

import os
import shutil
import subprocess

import jax
import pytest

from distrl.errors import ConfigError, RunFailed
from distrl.runtime import trainer
from tests.cli import launch, records
from tests.runs import files, tiny_ppo


def test_history_without_a_checkpoint_is_refused_and_overwrite_moves_it_aside(tmp_path, capsys):
  trainer.train(tiny_ppo(8), str(tmp_path))
  shutil.rmtree(tmp_path / "checkpoints")  # deleted (or all damaged): nothing to resume from
  before = files(tmp_path)
  with pytest.raises(ConfigError) as error:
    trainer.train(tiny_ppo(8), str(tmp_path))
  assert f"--workdir={tmp_path} holds a run (metrics.jsonl with 4 records; best/ with 1 entry) but no checkpoint" \
         in str(error.value) and "add --overwrite to start over there" in str(error.value)
  assert files(tmp_path) == before, "a refused start changes nothing"

  capsys.readouterr()
  result = trainer.train(tiny_ppo(8), str(tmp_path), overwrite=True)
  (moved,) = [name for name in os.listdir(tmp_path) if name.startswith("overwritten-")]
  assert f"--overwrite: moved the run that was in {tmp_path} to {tmp_path / moved}" in capsys.readouterr().out
  assert {k[len(moved) + 1:]: v for k, v in files(tmp_path).items() if k.startswith(moved)} == \
      before, "the old run is kept, byte for byte"
  assert [r["update"] for r in records(tmp_path)] == [h["update"] for h in result.history] == [2, 4, 6, 8]


def test_a_metrics_line_cut_short_is_dropped_said_and_the_run_resumes(tmp_path, capsys):
  trainer.train(tiny_ppo(4), str(tmp_path))
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 96, "update": 6, "time": 1.2, "loss/to')  # a crash while writing the record of update 6
  capsys.readouterr()
  result = trainer.train(tiny_ppo(8), str(tmp_path))
  assert f"warning: {tmp_path}/metrics.jsonl: dropped its last line, cut short by a crash" in capsys.readouterr().out
  assert [r["update"] for r in records(tmp_path)] == [2, 4, 6, 8]
  assert [h["update"] for h in result.history] == [6, 8]
  times = [r["time"] for r in records(tmp_path)]
  assert times == sorted(times), "time counts on from the run's start across the resume"


def test_the_record_of_the_update_resumed_from_is_kept_when_its_line_was_cut_short(tmp_path, capsys):
  """The last line torn where the checkpoint is of that same update (the resumed run logs only what comes after):
  the record saved with the checkpoint is written back, equal to the line that was lost."""
  trainer.train(tiny_ppo(4), str(tmp_path))  # updates 2 and 4, and the final checkpoint of update 4
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines(keepends=True)
  lost = lines[-1]
  (tmp_path / "metrics.jsonl").write_text("".join(lines[:-1]) + lost[:len(lost) // 2])  # torn
  capsys.readouterr()
  trainer.train(tiny_ppo(8), str(tmp_path))
  said = capsys.readouterr().out
  assert f"{tmp_path}/metrics.jsonl: the record of update 4, lost, is written again from its checkpoint" in said
  kept = (tmp_path / "metrics.jsonl").read_text().splitlines(keepends=True)
  assert [r["update"] for r in records(tmp_path)] == [2, 4, 6, 8] and kept[:2] == lines, "as it was, line for line"

  # Torn again at the end (update 8), with the checkpoint's record unreadable too: the loss is said, not silent.
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines(keepends=True)
  (tmp_path / "metrics.jsonl").write_text("".join(lines[:-1]) + lines[-1][:10])
  (tmp_path / "checkpoints" / "8" / "distrl-record.json").write_text("{")
  capsys.readouterr()
  trainer.train(tiny_ppo(10), str(tmp_path))
  assert f"warning: {tmp_path}/metrics.jsonl has no record of update 8, and its checkpoint holds none" in \
      capsys.readouterr().out
  assert [r["update"] for r in records(tmp_path)] == [2, 4, 6, 10]


def test_a_last_record_without_its_newline_keeps_its_line_and_the_next_records_theirs(tmp_path, capsys):
  """A crash between a record and its newline: the record is whole, so it is kept (nothing said), and the resumed
  run's records go on the lines after it rather than onto its line."""
  trainer.train(tiny_ppo(4), str(tmp_path))
  text = (tmp_path / "metrics.jsonl").read_text()
  (tmp_path / "metrics.jsonl").write_text(text[:-1])
  capsys.readouterr()
  trainer.train(tiny_ppo(8), str(tmp_path))
  assert "warning" not in capsys.readouterr().out
  assert [r["update"] for r in records(tmp_path)] == [2, 4, 6, 8]
  assert (tmp_path / "metrics.jsonl").read_text().startswith(text)


@pytest.mark.parametrize("workdir, message", [("/proc/distrl-run", "cannot write to --workdir=/proc/distrl-run"),
                                              ("file", "is a file, not a directory")])
def test_a_workdir_that_cannot_be_written_is_refused_in_one_line_and_changes_nothing(workdir, message, tmp_path):
  # In-process: the launcher's one line and exit 1 for a ConfigError are tested from the command line in test_launch.
  if workdir == "file":
    workdir = tmp_path / "a-file"
    workdir.write_text("not a directory")
  with pytest.raises(ConfigError) as error:
    trainer.train(tiny_ppo(4), str(workdir))
  assert message in str(error.value) and "\n" not in str(error.value)
  assert os.listdir(tmp_path) == ([] if workdir == "/proc/distrl-run" else ["a-file"])


def test_a_disk_full_before_the_run_starts_is_one_line(tmp_path):
  """A new run on a full disk (the lock's record cannot be written) and a resume there (metrics.jsonl cannot be
  rewritten): one line each, exit 1, and the files as they were."""
  disk = tmp_path / "disk"
  disk.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode:
    pytest.skip("mounting a small tmpfs is not allowed here")
  try:
    with open(disk / "filler", "wb", buffering=0) as f:  # the disk, full
      with pytest.raises(OSError):
        while True:
          f.write(b"\0" * 4096)
    run = launch(f"--workdir={disk / 'run'}", f"--config.num_envs={jax.device_count()}")
    out, err = run.communicate(timeout=120)
    assert run.returncode == 1, out
    assert err == f"distrl: error: cannot write to --workdir={disk / 'run'}: No space left on device; free space or " \
                  f"pick another directory\n"
  finally:
    subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.unit
def test_a_file_the_workdir_replaces_whole_is_as_it_was_when_the_disk_is_full(tmp_path, monkeypatch):
  from distrl.runtime.workdir import Workdir
  workdir = Workdir(str(tmp_path), primary=True)
  workdir.write_json("config.json", {"lr": 1})
  before = files(tmp_path)

  def full(source, target):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(os, "replace", full)
  with pytest.raises(RunFailed, match=r"cannot write .*config.json \(No space left on device\); it is as it was"):
    workdir.write_json("config.json", {"lr": 2})
  assert files(tmp_path) == before  # and no .tmp left


@pytest.mark.unit
def test_overwriting_twice_within_a_second_keeps_both_old_runs(tmp_path, monkeypatch):
  from distrl.runtime import workdir as workdirs
  monkeypatch.setattr(workdirs.time, "strftime", lambda form: "20261130-235959")
  workdir = workdirs.Workdir(str(tmp_path), primary=True)
  moved = []
  for lr in (1, 2):
    workdir.write_json("config.json", {"lr": lr})
    moved.append(workdir.move_aside())
  assert moved == [str(tmp_path / "overwritten-20261130-235959"), str(tmp_path / "overwritten-20261130-235959-2")]
  assert [workdirs.Workdir(m, primary=True).read_json("config.json") for m in moved] == [{"lr": 1}, {"lr": 2}]


@pytest.mark.unit
@pytest.mark.parametrize("text", ['{"algo": "ppo", "env_name"', "[1, 2]"])
def test_a_damaged_config_json_is_one_line_from_each_reader_and_stays_as_it_was(text, tmp_path):
  """A hand-edited config.json (cut short, or not an object) is named in one ConfigError by the launcher's resume
  (`cli.rerun`), `distrl.evaluate` and `distrl.plot`, not a JSONDecodeError traceback; the file is left alone."""
  from distrl import plot
  from distrl.cli import rerun
  from distrl.configs import ppo as ppo_config
  from distrl.evaluate import load_run
  from distrl.runtime.workdir import Workdir
  (tmp_path / "config.json").write_text(text)
  (tmp_path / "metrics.jsonl").write_text("")
  readers = [lambda: rerun.as_recorded(ppo_config.get_config(), str(tmp_path), set()),
             lambda: load_run(str(tmp_path), None), lambda: plot.figure([str(tmp_path)], "eval/return"),
             lambda: Workdir(str(tmp_path), primary=True).read_json("config.json")]
  for read in readers:
    with pytest.raises(ConfigError, match=r"config.json (is damaged|holds a list).*restore it from a copy"):
      read()
  assert (tmp_path / "config.json").read_text() == text
