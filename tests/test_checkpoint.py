"""Checkpoints (distrl/runtime/checkpoint.py): a damaged or half-written checkpoint, or one whose files differ from the
checksums saved with it, is set aside and the previous one used, by the trainer and by evaluate; a full disk is one line
and keeps the last complete checkpoint."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from distrl import sharding
from distrl.errors import RunFailed
from distrl.runtime import checksums, programs, trainer
from distrl.runtime.checkpoint import Checkpoints
from distrl.runtime.loop import TrainingDiverged
from tests.cli import ROOT, launch
from tests.runs import FAST, damage, files, overwrite_64_bytes, tiny_ppo, tiny_ppo_flags

pytestmark = pytest.mark.xdist_group("checkpoint")  # one worker trains the module's finished run (`finished_run`)


def _short_ppo(total_updates, **fields):
  """A record and a checkpoint every 5 updates."""
  return tiny_ppo(total_updates, log_every=5, checkpoint_every=5, eval_every=1000, **fields)


def _cli(*args, env=None, module="distrl.evaluate", timeout=120):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout, env={**os.environ, "PYTHONPATH": ROOT,
                                              "XLA_FLAGS": f"--xla_force_host_platform_device_count={jax.device_count()}",
                                              **(env or {})})


def _launch_tiny_ppo(workdir, updates):
  """`tiny_ppo(updates)` in `workdir`, from the command line."""
  return launch(f"--workdir={workdir}", *tiny_ppo_flags(updates))


def _lose_array_metadata(directory):
  """Deletes the file that lists a checkpoint's arrays (orbax then reads no metadata, not an error)."""
  os.remove(os.path.join(directory, "default", "_METADATA"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """`tiny_ppo(8)` trained once for the module (checkpoints 4 and 8, best/): each test damages a copy of it."""
  workdir = tmp_path_factory.mktemp("finished") / "run"
  trainer.train(tiny_ppo(8), str(workdir))
  return workdir


def _copy(finished_run, tmp_path):
  """A copy of the module's finished run as `tmp_path`, the workdir a test damages."""
  shutil.copytree(finished_run, tmp_path, dirs_exist_ok=True)


@pytest.mark.parametrize("damage", [damage, _lose_array_metadata])
def test_damaged_latest_checkpoint_is_set_aside_and_the_previous_one_used(damage, tmp_path, capsys):
  trainer.train(_short_ppo(15), str(tmp_path))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "15", "5"]
  damage(tmp_path / "checkpoints" / "15")
  capsys.readouterr()
  result = trainer.train(_short_ppo(20), str(tmp_path))
  out = capsys.readouterr().out
  assert f"warning: checkpoint {tmp_path}/checkpoints/15 is damaged" in out
  assert "resuming" in out and "from update 10" in out
  assert [h["update"] for h in result.history] == [15, 20]
  names = os.listdir(tmp_path / "checkpoints")
  assert any(name.startswith("15.corrupt-") for name in names), "the damaged checkpoint is kept aside"
  assert "15" in names and "20" in names  # saved anew


@pytest.mark.unit
def test_a_damaged_checkpoints_reason_is_one_short_line_without_tensorstores_pointer():
  from distrl.runtime.checkpoint import damage
  error = ValueError("Encountered error while reading array index: (slice(0, 64, 1), slice(0, 64, 1)). See full "
                     "TensorStore details: <bound method pybind11_detail_function_record_v1_system_libstdcpp_gxx_abi_"
                     "1xxx_use_cxx11_.__str__ of ...>\nsecond line")
  assert damage(error) == "Encountered error while reading array index: (slice(0, 64, 1), slice(0, 64, 1))."
  assert damage(OSError("x" * 300)) == "x" * 200


def test_a_save_cut_short_leaves_the_last_complete_checkpoint_in_use(tmp_path, capsys):
  trainer.train(_short_ppo(10), str(tmp_path))
  # What a kill -9 in the middle of saving update 15 leaves: orbax's temporary directory, never renamed.
  shutil.copytree(tmp_path / "checkpoints" / "10", tmp_path / "checkpoints" / "15.orbax-checkpoint-tmp-1234")
  damage(tmp_path / "checkpoints" / "15.orbax-checkpoint-tmp-1234")
  capsys.readouterr()
  result = trainer.train(_short_ppo(20), str(tmp_path))
  assert "from update 10" in capsys.readouterr().out
  assert [h["update"] for h in result.history] == [15, 20]


def test_a_damaged_latest_checkpoint_is_skipped_quietly_by_evaluate_and_launch(finished_run, tmp_path):
  _copy(finished_run, tmp_path)
  for root, _, names in os.walk(tmp_path / "checkpoints" / "8"):  # arrays damaged, metadata intact
    if os.sep + "d" in root:
      damage(root)
  result = _cli(f"--workdir={tmp_path}", f"--episodes={jax.device_count()}")
  assert result.returncode == 0, result.stderr
  assert result.stderr.startswith(f"warning: checkpoint {tmp_path}/checkpoints/8 is damaged") and \
      len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert f"at update 4 (ppo on {FAST})" in result.stdout
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4", "8"], "evaluate moves nothing"
  named = _cli(f"--workdir={tmp_path}", "--checkpoint=8")
  assert named.returncode == 1 and named.stderr.startswith(f"distrl: error: checkpoint {tmp_path}/checkpoints/8 is "
                                                           f"damaged") and len(named.stderr.splitlines()) == 1

  run = _launch_tiny_ppo(tmp_path, 10)
  out, err = run.communicate(timeout=300)
  assert run.returncode == 0 and err == "", err  # no tracebacks from the reads still in flight
  assert "is damaged" in out and "resuming" in out and "from update 4" in out


@pytest.mark.unit
def test_checksums_name_the_first_data_file_changed_missing_or_added(tmp_path):
  step = tmp_path / "8"
  for name, data in {"default/_METADATA": b"{}", "default/d/0a1b": bytes(range(256)) * 4, "metrics/metrics": b"1",
                     "_CHECKPOINT_METADATA": b"orbax's record of the save"}.items():
    (step / name).parent.mkdir(parents=True, exist_ok=True)
    (step / name).write_bytes(data)
  assert checksums.difference(str(step)) is None  # saved without checksums (an older distrl): taken as it is
  checksums.write(str(step))
  assert sorted(json.loads((step / checksums.CHECKSUMS).read_text())) == ["default/_METADATA", "default/d/0a1b",
                                                                          "metrics/metrics"]
  (step / "_CHECKPOINT_METADATA").write_bytes(b"rewritten by orbax as it commits")
  assert checksums.difference(str(step)) is None
  overwrite_64_bytes(str(step))
  assert checksums.difference(str(step)) == "default/d/0a1b differs from its checksum"
  (step / "default/d/0a1b").write_bytes(bytes(range(256)) * 4)
  assert checksums.difference(str(step)) is None
  (step / "default/d/ffff").write_bytes(b"")
  assert checksums.difference(str(step)) == "default/d/ffff was not part of it when it was saved"
  (step / "default/d/ffff").unlink()
  (step / "metrics/metrics").unlink()
  assert checksums.difference(str(step)) == "metrics/metrics is missing"
  (step / checksums.CHECKSUMS).write_text('{"default/_METADATA": ')
  assert checksums.difference(str(step)).startswith(f"its {checksums.CHECKSUMS} is unreadable (")


def test_bytes_overwritten_in_place_are_caught_by_evaluate_and_set_aside_by_launch(finished_run, tmp_path):
  """64 bytes overwritten inside a checkpoint's largest file: orbax restores them as they are (a wrong policy, or a
  NaN later); the checksums saved with the checkpoint name the file instead."""
  _copy(finished_run, tmp_path)
  directory = tmp_path / "checkpoints"
  assert all((directory / update / checksums.CHECKSUMS).exists() for update in ("4", "8"))
  assert all((step / checksums.CHECKSUMS).exists() for step in (tmp_path / "best").iterdir())
  changed = overwrite_64_bytes(str(directory / "8"))
  before = {name: files(directory / name) for name in os.listdir(directory)}
  warning = f"warning: checkpoint {directory}/8 is damaged ({changed} differs from its checksum); "

  result = _cli(f"--workdir={tmp_path}", f"--episodes={jax.device_count()}")
  assert result.returncode == 0, result.stderr
  assert result.stderr == warning + "trying the one before\n"
  assert f"at update 4 (ppo on {FAST})" in result.stdout
  assert {name: files(directory / name) for name in os.listdir(directory)} == before, "evaluate moves nothing"
  named = _cli(f"--workdir={tmp_path}", "--checkpoint=8")
  assert named.returncode == 1
  assert named.stderr == f"distrl: error: checkpoint {directory}/8 is damaged ({changed} differs from its checksum); " \
                         f"saved: 4, 8\n"

  # best/ keeps one checkpoint: damaged, there is none to evaluate instead.
  [best] = os.listdir(tmp_path / "best")
  best_changed = overwrite_64_bytes(str(tmp_path / "best" / best))
  result = _cli(f"--workdir={tmp_path}", "--best", f"--episodes={jax.device_count()}")
  assert result.returncode == 1 and result.stdout == ""
  assert result.stderr == (f"warning: checkpoint {tmp_path}/best/{best} is damaged ({best_changed} differs from its "
                           f"checksum); trying the one before\n"
                           f"distrl: error: every checkpoint in {tmp_path}/best is damaged\n")

  run = _launch_tiny_ppo(tmp_path, 10)
  out, err = run.communicate(timeout=300)
  assert run.returncode == 0 and err == "", err
  [aside] = [name for name in os.listdir(directory) if name.startswith("8.corrupt-")]
  assert [line for line in out.splitlines() if "damaged" in line] == \
      [warning + f"moved it to {directory}/{aside} and trying the one before"]
  assert f"resuming {tmp_path} from update 4 (step" in out
  assert files(directory / aside) == before["8"], "set aside as it was"
  assert sorted(os.listdir(directory)) == sorted(["4", "8", "10", aside])  # 8 and 10 saved anew
  assert checksums.difference(str(directory / "8")) is None


def test_every_checkpoint_damaged_is_one_line_saying_so_every_time(finished_run, tmp_path):
  """Not the "no checkpoint to resume from" of a run that never saved one: the line says the checkpoints are
  damaged and where they were moved, at the start that moves them and at every start after it."""
  _copy(finished_run, tmp_path)
  directory = tmp_path / "checkpoints"
  for update in ("4", "8"):
    overwrite_64_bytes(str(directory / update))
  for attempt in range(2):
    run = _launch_tiny_ppo(tmp_path, 10)
    out, err = run.communicate(timeout=300)
    aside = sorted(os.listdir(directory), key=lambda name: int(name.split(".")[0]))
    assert run.returncode == 1 and [name.split(".")[0] for name in aside] == ["4", "8"], (out, err)
    assert err == (f"distrl: error: every checkpoint in {directory} is damaged (moved aside as {', '.join(aside)}): "
                   f"nothing to resume from. Put a good copy back, or add --overwrite to start over (the old run is "
                   f"moved to {tmp_path}/overwritten-<time>/, not deleted)\n"), (attempt, err)
    if attempt == 0:
      before = files(tmp_path)
  assert files(tmp_path) == before, "the second start changes nothing"


def test_a_damaged_metrics_file_in_best_is_one_line_for_evaluate_and_set_aside_by_launch(finished_run, tmp_path):
  """Orbax reads every best/ checkpoint's metrics as it opens; an empty one stopped it with a traceback."""
  _copy(finished_run, tmp_path)
  [best] = os.listdir(tmp_path / "best")
  (tmp_path / "best" / best / "metrics" / "metrics").write_text("")
  before = files(tmp_path)
  result = _cli(f"--workdir={tmp_path}", "--best", f"--episodes={jax.device_count()}")
  assert result.returncode == 1 and result.stderr == \
      f"distrl: error: checkpoint {tmp_path}/best/{best} is damaged (metrics/metrics is not JSON)\n"
  assert files(tmp_path) == before
  run = _launch_tiny_ppo(tmp_path, 10)
  out, err = run.communicate(timeout=300)
  assert run.returncode == 0 and err == "", err
  [aside] = [name for name in os.listdir(tmp_path / "best") if ".corrupt-" in name]
  assert f"warning: checkpoint {tmp_path}/best/{best} is damaged (metrics/metrics is not JSON); moved it to " \
         f"{tmp_path}/best/{aside}" in out


def test_a_divergence_right_after_a_resume_names_the_checkpoint_resumed_from(tmp_path):
  """A checkpoint that holds NaN (as damage no checksum saw would restore) diverges at once: the message names it
  rather than lr."""
  config = tiny_ppo(4)
  trainer.train(config, str(tmp_path))
  directory = str(tmp_path / "checkpoints")
  like = programs.build(config, sharding.make_mesh()).state
  state = Checkpoints(directory, keep=3, create=False).restore(4, like=like)
  poisoned = state.replace(learner=jax.tree.map(
      lambda x: x * np.nan if jax.numpy.issubdtype(x.dtype, jax.numpy.floating) else x, state.learner))
  shutil.rmtree(os.path.join(directory, "4"))
  rewritten = Checkpoints(directory, keep=3)
  rewritten.save(4, poisoned)
  rewritten.finish()
  rewritten.close()
  with pytest.raises(TrainingDiverged) as error:
    trainer.train(tiny_ppo(8), str(tmp_path))
  message = str(error.value)
  assert "in updates 5..5 " in message
  assert f"the first after resuming from {directory}/4: that checkpoint may be damaged. Move it out of {directory}" \
      in message


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path):
  """A small tmpfs (root can mount one here); where mounting is not allowed, a save that fails is injected."""
  disk = tmp_path / "disk"
  disk.mkdir()
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)],
                           capture_output=True).returncode == 0
  try:
    workdir = disk / "run"
    if mounted:
      run = launch(f"--workdir={workdir}", *tiny_ppo_flags(10**6, checkpoint_every=10, keep_checkpoints=100,
                                                          eval_every=10**6))  # the disk fills in a checkpoint's save
      out, err = run.communicate(timeout=300)
      assert run.returncode == 1, out
      assert err.startswith("distrl: error: ") and len(err.strip().splitlines()) == 1, err
      assert "(No space left on device)" in err and "the last complete checkpoint is update" in err
      kept = int(err.split("the last complete checkpoint is update ")[1].split()[0])
    else:
      config = tiny_ppo(16)
      trainer.train(tiny_ppo(8), str(workdir))
      original = Checkpoints.save

      def full(self, update, state, metrics=None):
        if update > 8:
          raise OSError(28, "No space left on device")
        return original(self, update, state, metrics)

      Checkpoints.save = full
      try:
        with pytest.raises(RunFailed, match="the last complete checkpoint is update 8"):
          trainer.train(config, str(workdir))
      finally:
        Checkpoints.save = original
      kept = 8
    # Nothing lost: the last complete checkpoint resumes elsewhere once there is room.
    shutil.copytree(workdir, tmp_path / "moved")
  finally:
    if mounted:
      subprocess.run(["umount", str(disk)], check=True)
  assert Checkpoints(str(tmp_path / "moved" / "checkpoints"), keep=100, create=False).latest() == kept


def test_a_truncated_array_file_is_one_warning_line_every_time(finished_run, tmp_path):
  """Truncating a checkpoint's largest array file made about half of the evaluations print thousands of lines
  (orbax's reads and tensorstore's callbacks failing in several threads as they are collected)."""
  _copy(finished_run, tmp_path)
  data = [os.path.join(root, name) for root, _, names in os.walk(tmp_path / "checkpoints" / "8") for name in names
          if os.sep + "d" in root]
  os.truncate(max(data, key=os.path.getsize), 100)
  for _ in range(3):
    result = _cli(f"--workdir={tmp_path}", f"--episodes={jax.device_count()}")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"warning: checkpoint {tmp_path}/checkpoints/8 is damaged") and \
        len(result.stderr.splitlines()) == 1, result.stderr[:2000]
