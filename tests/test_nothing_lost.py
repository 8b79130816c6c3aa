"""Nothing lost, round two: the failures a careless or unlucky user meets, tried as the user meets them.

Every failure is one line of ours and a non-zero exit; every stop a saved checkpoint and exit 0; and the files
of a run are compared before and after, not only exit codes.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from distrl.runtime import loop, trainer
from distrl.runtime.checkpoint import Checkpoints
from distrl.configs import ppo as ppo_config
from distrl.errors import ConfigError, RunFailed
from tests.cli import ROOT, launch, records


def _files(directory) -> dict[str, str]:
  """{relative path: sha256} of every file under `directory` (but the lock file, which names its last holder)."""
  found = {}
  for root, _, names in os.walk(directory):
    for name in names:
      if name == ".lock":
        continue
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        found[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return found


def _tiny(updates, **fields):
  n = jax.device_count()
  config = ppo_config.get_config()
  config.update(dict(num_envs=n, num_steps=16, num_minibatches=2, log_every=2, checkpoint_every=4, eval_every=4,
                     eval_episodes=n, total_timesteps=updates * n * 16))
  config.update(fields)
  return config


def test_history_without_a_checkpoint_is_refused_and_overwrite_moves_it_aside(tmp_path, capsys):
  trainer.train(_tiny(8), str(tmp_path))
  shutil.rmtree(tmp_path / "checkpoints")  # deleted (or all damaged): nothing to resume from
  before = _files(tmp_path)
  with pytest.raises(ConfigError) as error:
    trainer.train(_tiny(8), str(tmp_path))
  assert f"--workdir={tmp_path} holds a run (metrics.jsonl with 4 records; best/ with 1 entry) but no checkpoint" \
         in str(error.value) and "add --overwrite to start over there" in str(error.value)
  assert _files(tmp_path) == before, "a refused start changes nothing"

  capsys.readouterr()
  result = trainer.train(_tiny(8), str(tmp_path), overwrite=True)
  (moved,) = [name for name in os.listdir(tmp_path) if name.startswith("overwritten-")]
  assert f"--overwrite: moved the run that was in {tmp_path} to {tmp_path / moved}" in capsys.readouterr().out
  assert {k[len(moved) + 1:]: v for k, v in _files(tmp_path).items() if k.startswith(moved)} == \
      before, "the old run is kept, byte for byte"
  assert [r["update"] for r in records(tmp_path)] == [h["update"] for h in result.history] == [2, 4, 6, 8]


def test_a_metrics_line_cut_short_is_dropped_said_and_the_run_resumes(tmp_path, capsys):
  trainer.train(_tiny(4), str(tmp_path))
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 96, "update": 6, "time": 1.2, "loss/to')  # a crash while writing the record of update 6
  capsys.readouterr()
  result = trainer.train(_tiny(8), str(tmp_path))
  assert f"warning: {tmp_path}/metrics.jsonl: dropped its last line, cut short by a crash" in capsys.readouterr().out
  assert [r["update"] for r in records(tmp_path)] == [2, 4, 6, 8]
  assert [h["update"] for h in result.history] == [6, 8]
  times = [r["time"] for r in records(tmp_path)]
  assert times == sorted(times), "time counts on from the run's start across the resume"


def test_resume_refuses_another_seed_and_says_what_a_longer_run_changes(tmp_path, capsys):
  trainer.train(_tiny(4), str(tmp_path))
  before = _files(tmp_path)
  with pytest.raises(ConfigError, match=f"{tmp_path} is the run of seed 0; it cannot go on as seed 3"):
    trainer.train(_tiny(8, seed=3), str(tmp_path))
  with pytest.raises(ConfigError, match=f"^{tmp_path} holds a run of ppo on CartPole-v1, not dqn on CartPole-v1"):
    from distrl.configs import dqn as dqn_config
    other = dqn_config.get_config()
    other.update(dict(num_envs=jax.device_count(), train_frequency=jax.device_count(), eval_episodes=jax.device_count()))
    trainer.train(other, str(tmp_path))
  assert _files(tmp_path) == before

  # A longer run: the annealed learning rate now spans the new length (and says so) ...
  capsys.readouterr()
  config = _tiny(8)
  result = trainer.train(config, str(tmp_path))
  out = capsys.readouterr().out
  assert "with changed settings: total_timesteps: 256 -> 512" in out.replace(str(4 * 16 * jax.device_count()), "256") \
      .replace(str(8 * 16 * jax.device_count()), "512")
  assert "the run now ends at step" in out and "follow the new length from here on" in out
  # run.json keeps every start and what it changed: the first start's config is config.json less those changes.
  n, starts = jax.device_count(), json.loads((tmp_path / "run.json").read_text())["starts"]
  assert [(s["update"], s["changed"]) for s in starts] == [(0, {}), (4, {"total_timesteps": [4 * 16 * n, 8 * 16 * n]})]
  # ... e.g. updates 5 and 6 (gradient steps 4*4*2 .. 5*4*2) at lr * (1 - g / (8 updates * 4 epochs * 2)).
  gradient_steps = [u * 4 * 2 for u in (4, 5)]
  expected = np.mean([2.5e-4 * (1 - g / (8 * 4 * 2)) for g in gradient_steps])
  assert result.history[0]["update"] == 6 and result.history[0]["opt/lr"] == pytest.approx(expected, rel=1e-5)

  # A finished run says so, without compiling anything.
  capsys.readouterr()
  again = trainer.train(config, str(tmp_path))
  assert f"{tmp_path}: the run is finished (update 8 of 8" in capsys.readouterr().out
  assert again.compile_seconds == 0.0 and again.history == []  # nothing compiled, nothing logged


def test_resuming_on_another_device_count_says_so(tmp_path, capsys):
  if jax.device_count() < 2:
    pytest.skip("needs 2 devices")
  config = _tiny(4, num_envs=2, eval_episodes=2)
  trainer.train(config, str(tmp_path), devices=jax.devices()[:1])
  capsys.readouterr()
  trainer.train(_tiny(8, num_envs=2, eval_episodes=2), str(tmp_path), devices=jax.devices()[:2])
  assert "on 2 device(s) in 1 process(es) (it ran on 1 device(s) in 1 process(es) before)" in capsys.readouterr().out


def test_a_second_launcher_is_refused_and_kill_9_leaves_no_stale_lock(tmp_path):
  n = jax.device_count()
  flags = [f"--workdir={tmp_path}", f"--config.num_envs={8 * n}", "--config.total_timesteps=100000000",
           "--config.log_every=1", "--config.checkpoint_every=2", f"--config.eval_episodes={n}"]
  first = launch(*flags)
  while first.poll() is None and len(records(tmp_path)) < 4:
    time.sleep(0.05)
  config_before = (tmp_path / "config.json").read_bytes()
  second = launch(*flags)
  _, err = second.communicate(timeout=120)
  assert second.returncode == 1
  assert err.startswith(f"distrl: error: --workdir={tmp_path} is in use by another run (pid {first.pid} on ")
  assert len(err.strip().splitlines()) == 1
  assert (tmp_path / "config.json").read_bytes() == config_before
  first.send_signal(signal.SIGKILL)
  first.communicate(timeout=60)
  third = launch(*flags)  # the kernel dropped the first run's lock with it
  assert "resuming" in "".join(_read_until(third, "compiled"))
  third.send_signal(signal.SIGTERM)
  out, err = third.communicate(timeout=120)
  assert third.returncode == 0, err
  updates = [r["update"] for r in records(tmp_path)]
  assert updates == sorted(set(updates)), "no update logged twice"


def _read_until(run, text, timeout=120):
  """Lines of the run's stdout up to and including the first that contains `text`."""
  lines, deadline = [], time.time() + timeout
  while time.time() < deadline:
    line = run.stdout.readline()
    if not line:
      break
    lines.append(line)
    if text in line:
      return lines
  raise AssertionError(f"{text!r} never came: {lines}")


def test_signals_at_every_moment_stop_cleanly_and_lose_nothing(tmp_path):
  """Ctrl-C while compiling, SIGHUP (the terminal closed) inside a long log interval, SIGTERM while a resume
  compiles, stdout closed by `| head`, and Ctrl-C pressed again and again while the final checkpoint saves."""
  n = jax.device_count()
  flags = [f"--workdir={tmp_path}", f"--config.num_envs={16 * n}", "--config.total_timesteps=100000000",
           f"--config.eval_episodes={n}", "--config.eval_every=1000000", "--config.checkpoint_every=1000000"]
  checkpoints = lambda: Checkpoints(str(tmp_path / "checkpoints"), keep=3, create=False).saved()

  run = launch(*flags, "--config.log_every=1000000", "--compilation_cache=")  # one log interval for the whole run
  _read_until(run, "training ppo")
  run.send_signal(signal.SIGINT)  # while compiling (seconds without a compilation cache), and again
  time.sleep(0.5)
  run.send_signal(signal.SIGINT)
  out, err = run.communicate(timeout=120)
  assert run.returncode == 0 and "Traceback" not in err, err
  assert "stopped by SIGINT before the first update; nothing to save" in out and checkpoints() == []
  assert err == "distrl: SIGINT: already stopping (SIGINT); the run stops before its first update\n"

  run = launch(*flags, "--config.log_every=1000000")
  _read_until(run, "compiled")
  time.sleep(2.0)
  start = time.time()
  run.send_signal(signal.SIGHUP)  # inside the interval: served within MAX_CHUNK_SECONDS, not at its end
  out, err = run.communicate(timeout=120)
  assert run.returncode == 0 and "Traceback" not in err, err
  assert time.time() - start < loop.MAX_CHUNK_SECONDS + 15
  (record,) = records(tmp_path)  # the record of the updates done, at the stop
  assert f"stopped by SIGHUP: saved update {record['update']} to {tmp_path}/checkpoints" in out
  assert checkpoints() == [record["update"]]
  stopped_at = record["update"]

  run = launch(*flags, "--config.log_every=1000000")
  _read_until(run, "resuming")
  run.send_signal(signal.SIGTERM)  # while the resume compiles
  out, err = run.communicate(timeout=120)
  assert run.returncode == 0 and "Traceback" not in err, err
  assert f"stopped by SIGTERM: saved update {stopped_at}" in out and checkpoints() == [stopped_at]

  run = launch(*flags, "--config.log_every=2")
  _read_until(run, "[ppo CartPole-v1]")  # a reader that reads a progress line, then goes away: `... | head`
  run.stdout.close()
  _, err = run.communicate(timeout=120)
  assert run.returncode == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
  last = records(tmp_path)[-1]["update"]
  assert checkpoints()[-1] == last > stopped_at

  run = launch(*flags, "--config.log_every=2")
  _read_until(run, "[ppo CartPole-v1]")
  for _ in range(40):  # Ctrl-C, then again and again while it saves
    run.send_signal(signal.SIGINT)
    time.sleep(0.05)
  out, err = run.communicate(timeout=120)
  assert run.returncode == 0 and "Traceback" not in err, err
  final = records(tmp_path)[-1]["update"]
  assert f"stopped by SIGINT: saved update {final}" in out and checkpoints()[-1] == final
  assert not [name for name in os.listdir(tmp_path / "checkpoints") if "tmp" in name], "no save cut short"
  assert "distrl: SIGINT: already stopping" in err or "distrl: SIGINT: still saving" in err
  updates = [r["update"] for r in records(tmp_path)]
  assert updates == sorted(set(updates))


def _cli(*args, env=None, module="distrl.launch", timeout=120):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout, env={**os.environ, "PYTHONPATH": ROOT, **(env or {})})


@pytest.mark.parametrize("env, message", [
    ({"JAX_PLATFORMS": "cuda"}, "JAX could not start its backend with JAX_PLATFORMS=cuda"),
    ({"JAX_PLATFORMS": "gpu"}, "JAX could not start its backend with JAX_PLATFORMS=gpu"),
    ({"XLA_FLAGS": "--xla_force_host_platform_device_count=0"}, "JAX could not start its backend with XLA_FLAGS="),
])
def test_a_backend_that_cannot_start_is_one_line(env, message, tmp_path):
  result = _cli("--config=ppo", f"--workdir={tmp_path / 'run'}", env=env)
  assert result.returncode == 1 and result.stderr.startswith(f"distrl: error: {message}"), result.stderr
  assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
  assert "xla_backend_extra_options" not in result.stderr  # distrl's own option (distrl/xla_options.py) is not blamed


@pytest.mark.parametrize("body, message", [
    ("def get_config(arg=None):\n  return {'algo': 'ppo'}\n", "get_config() returned dict, not an ml_collections"),
    ("def get_config(arg=None):\n  pass\n", "get_config() returned None, not an ml_collections.ConfigDict"),
    ("import ml_collections\ndef get_config(arg=None):\n  return ml_collections.ConfigDict({'algo': 'ppo'})\n",
     "the config lacks env_name, env_kwargs, seed"),
])
def test_a_config_file_that_returns_no_config_is_one_line(body, message, tmp_path):
  (tmp_path / "mine.py").write_text(body)
  result = _cli(f"--config={tmp_path / 'mine.py'}", f"--workdir={tmp_path / 'run'}")
  assert result.returncode == 2 and message in result.stderr, result.stderr
  assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_ppo_step_counts_past_int32_are_one_line(tmp_path):
  result = _cli("--config=ppo", "--config.num_envs=8", "--config.total_timesteps=1000000000000",
                f"--workdir={tmp_path / 'run'}")
  assert result.returncode == 1 and "gradient steps; they are counted in int32" in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_a_damaged_latest_checkpoint_is_skipped_quietly_by_evaluate_and_launch(tmp_path):
  from tests.test_resume import _damage

  trainer.train(_tiny(8), str(tmp_path))
  for root, _, names in os.walk(tmp_path / "checkpoints" / "8"):  # arrays damaged, metadata intact
    if os.sep + "d" in root:
      _damage(root)
  result = _cli(f"--workdir={tmp_path}", f"--episodes={jax.device_count()}", module="distrl.evaluate",
                env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={jax.device_count()}"})
  assert result.returncode == 0, result.stderr
  assert result.stderr.startswith(f"warning: checkpoint {tmp_path}/checkpoints/8 is damaged") and \
      len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert "at update 4 (ppo on CartPole-v1)" in result.stdout
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4", "8"], "evaluate moves nothing"
  named = _cli(f"--workdir={tmp_path}", "--checkpoint=8", module="distrl.evaluate",
               env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={jax.device_count()}"})
  assert named.returncode == 1 and named.stderr.startswith(f"distrl: error: checkpoint {tmp_path}/checkpoints/8 is "
                                                           f"damaged") and len(named.stderr.splitlines()) == 1

  run = launch(f"--workdir={tmp_path}", f"--config.num_envs={jax.device_count()}", "--config.num_steps=16",
               "--config.num_minibatches=2", "--config.log_every=2", "--config.checkpoint_every=4",
               "--config.eval_every=4", f"--config.eval_episodes={jax.device_count()}",
               f"--config.total_timesteps={10 * jax.device_count() * 16}")
  out, err = run.communicate(timeout=300)
  assert run.returncode == 0 and err == "", err  # no tracebacks from the reads still in flight
  assert "is damaged" in out and "resuming" in out and "from update 4" in out


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path):
  """A small tmpfs (root can mount one here); where mounting is not allowed, a save that fails is injected."""
  disk = tmp_path / "disk"
  disk.mkdir()
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)],
                           capture_output=True).returncode == 0
  try:
    workdir = disk / "run"
    if mounted:
      run = launch(f"--workdir={workdir}", f"--config.num_envs={jax.device_count()}", "--config.checkpoint_every=10",
                   "--config.keep_checkpoints=100", f"--config.eval_episodes={jax.device_count()}")
      out, err = run.communicate(timeout=300)
      assert run.returncode == 1, out
      assert err.startswith("distrl: error: ") and len(err.strip().splitlines()) == 1, err
      assert "(No space left on device)" in err and "the last complete checkpoint is update" in err
      kept = int(err.split("the last complete checkpoint is update ")[1].split()[0])
    else:
      config = _tiny(16)
      trainer.train(_tiny(8), str(workdir))
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


def test_a_file_the_workdir_replaces_whole_is_as_it_was_when_the_disk_is_full(tmp_path, monkeypatch):
  from distrl.runtime.workdir import Workdir
  workdir = Workdir(str(tmp_path), primary=True)
  workdir.write_json("config.json", {"lr": 1})
  before = _files(tmp_path)

  def full(source, target):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(os, "replace", full)
  with pytest.raises(RunFailed, match=r"cannot write .*config.json \(No space left on device\); it is as it was"):
    workdir.write_json("config.json", {"lr": 2})
  assert _files(tmp_path) == before  # and no .tmp left


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


def test_a_truncated_array_file_is_one_warning_line_every_time(tmp_path):
  """Truncating a checkpoint's largest array file made about half of the evaluations print thousands of lines
  (orbax's reads and tensorstore's callbacks failing in several threads as they are collected)."""
  trainer.train(_tiny(8), str(tmp_path))
  data = [os.path.join(root, name) for root, _, names in os.walk(tmp_path / "checkpoints" / "8") for name in names
          if os.sep + "d" in root]
  os.truncate(max(data, key=os.path.getsize), 100)
  for _ in range(3):
    result = _cli(f"--workdir={tmp_path}", f"--episodes={jax.device_count()}", module="distrl.evaluate",
                  env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={jax.device_count()}"})
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"warning: checkpoint {tmp_path}/checkpoints/8 is damaged") and \
        len(result.stderr.splitlines()) == 1, result.stderr[:2000]
