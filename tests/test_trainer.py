"""The host loop and the launcher: chunks traced once, stop and resume, errors a user can act on."""

import json
import os
import re
import signal
import time

import jax
import numpy as np
import pytest

from distrl.runtime import loop, metrics, trainer
from distrl.runtime.checkpoint import Checkpoints
from tests.cli import ROOT, launch, records, timeless

PPO_CONFIG = os.path.join(ROOT, "configs", "ppo.py")


@pytest.fixture
def built(monkeypatch):
  """The programs the trainer builds, for their runners' trace counters."""
  from distrl.runtime import programs

  made, build = [], programs.build
  monkeypatch.setattr(programs, "build", lambda *args, **kwargs: made.append(build(*args, **kwargs)) or made[-1])
  return made


def test_chunk_is_traced_once_including_a_short_last_chunk(ppo_cfg, tmp_path, built):
  ppo_cfg.num_steps = 16
  ppo_cfg.num_minibatches = 2
  ppo_cfg.total_timesteps = 7 * ppo_cfg.num_envs * 16  # 7 updates
  ppo_cfg.log_every = 3  # chunks of 3, 3, 1
  result = trainer.train(ppo_cfg, str(tmp_path))
  assert built[0].runner.traces == 1
  assert built[0].runner.layout_traces == 0  # shard_map keeps the global layout: nothing to convert
  assert [h["update"] for h in result.history] == [3, 6, 7]
  assert int(result.state.update) == 7
  assert [r["step"] for r in records(tmp_path)] == [h["step"] for h in result.history]
  assert {"train/episode_return", "loss/policy", "loss/value", "loss/entropy", "ppo/approx_kl",
          "ppo/clip_fraction", "opt/lr", "perf/sps"} <= set(result.history[-1])
  assert os.listdir(tmp_path / "tb")  # tensorboard events written


@pytest.mark.parametrize("backend", ["shard_map", "pmap"])
def test_a_log_interval_split_into_one_update_calls_logs_the_same_records(backend, ppo_cfg, tmp_path, monkeypatch):
  # MAX_CHUNK_SECONDS = 0: every call runs one update, as a stop-prompt split of a slow interval would. The sums go
  # on from call to call on the devices, so each record is the same float32 additions in the same order.
  ppo_cfg.backend, ppo_cfg.num_steps, ppo_cfg.num_minibatches = backend, 16, 2
  ppo_cfg.total_timesteps, ppo_cfg.log_every = 12 * ppo_cfg.num_envs * 16, 6  # 2 records of 6 updates
  whole = trainer.train(ppo_cfg, str(tmp_path / "whole"))
  monkeypatch.setattr(loop, "MAX_CHUNK_SECONDS", 0.0)
  split = trainer.train(ppo_cfg, str(tmp_path / "split"))
  assert [h["update"] for h in split.history] == [6, 12]
  assert timeless(split.history) == timeless(whole.history)


def test_pmap_backend_through_the_trainer_compiles_each_layout_conversion_once(ppo_cfg, tmp_path, built):
  ppo_cfg.backend, ppo_cfg.num_steps, ppo_cfg.num_minibatches = "pmap", 16, 2
  ppo_cfg.total_timesteps = 8 * ppo_cfg.num_envs * 16  # 8 updates
  ppo_cfg.log_every = ppo_cfg.eval_every = ppo_cfg.checkpoint_every = 2  # get() at 4 evals and 4 checkpoints
  result = trainer.train(ppo_cfg, str(tmp_path))
  runner = built[0].runner
  assert runner.traces == 1 and runner.layout_traces == 2  # put's and get's conversions, traced once each
  assert [h["update"] for h in result.history] == [2, 4, 6, 8]
  assert all("eval/return" in h for h in result.history)
  assert Checkpoints(str(tmp_path / "checkpoints"), keep=3).saved() == [4, 6, 8]


def test_stopped_run_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(ppo_cfg, tmp_path):
  # 64 envs x 128 steps: each update takes long enough to interrupt the run in its middle.
  sizes = ["--config.num_envs=64", "--config.total_timesteps=327680", "--config.log_every=1",
           "--config.checkpoint_every=1000"]  # 40 updates; checkpoints only at the stop and at the end
  workdir = str(tmp_path / "run")
  run = launch(f"--workdir={workdir}", *sizes)
  deadline = time.time() + 120
  while time.time() < deadline and run.poll() is None:
    if os.path.exists(os.path.join(workdir, "metrics.jsonl")) and len(records(workdir)) >= 3:
      break
    time.sleep(0.05)
  run.send_signal(signal.SIGTERM)
  out, err = run.communicate(timeout=120)
  assert run.returncode == 0, err
  assert "stopped by SIGTERM: saved update" in out
  stopped_at = records(workdir)[-1]["update"]
  assert 3 <= stopped_at < 40, "the run should stop in its middle"
  assert Checkpoints(os.path.join(workdir, "checkpoints"), keep=3).latest() == stopped_at

  resumed = launch(f"--workdir={workdir}", *sizes)
  out, err = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, err
  assert f"resuming {workdir} from update {stopped_at}" in out
  updates = [r["update"] for r in records(workdir)]
  assert updates == list(range(1, 41)), "the resumed run continues the step count, no repeats or gaps"

  # The same run, never interrupted, here in-process on the same devices.
  ppo_cfg.num_envs, ppo_cfg.total_timesteps, ppo_cfg.log_every = 64, 327680, 1
  reference = trainer.train(ppo_cfg, str(tmp_path / "reference"))
  checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), keep=3)
  final = checkpoints.restore(40, like=reference.state)
  for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(reference.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_default_workdir_and_a_short_run_from_the_command_line(tmp_path):
  run = launch("--config.num_envs=8", "--config.total_timesteps=8192", cwd=tmp_path)
  out, err = run.communicate(timeout=300)
  assert run.returncode == 0, err
  (workdir,) = (tmp_path / "runs").iterdir()
  assert workdir.name.startswith("ppo-CartPole-v1-")
  assert [r["step"] for r in records(workdir)] == [8 * 128 * 8]  # 8 updates, one chunk of 10 or fewer
  assert "step 8,192/8,192 (100%)" in out
  assert sorted(os.listdir(workdir / "checkpoints")) == ["8"]


def test_env_kwargs_on_the_command_line_take_any_name(tmp_path):
  """An environment's keywords are its constructor's, which the config cannot list in advance: `--config.env_kwargs.
  NAME=VALUE` (or `NAME VALUE`) adds NAME, its VALUE a Python literal or else a string, and reaches the run."""
  run = launch(f"--workdir={tmp_path}", "--config.env_name=tests.user_code:corridor_of", "--config.env_kwargs.length",
               "6", "--config.env_kwargs.note=a word", "--config.num_envs=8", "--config.total_timesteps=1024",
               "--config.num_steps=16", env_extra={"COLUMNS": "80"})
  _, err = run.communicate(timeout=300)
  assert run.returncode != 0 and "env_kwargs {'length': 6, 'note': 'a word'} do not fit" in err, err
  run = launch(f"--workdir={tmp_path}", "--config.env_name=tests.user_code:corridor_of", "--config.env_kwargs.length=6",
               "--config.num_envs=8", "--config.total_timesteps=1024", "--config.num_steps=16")
  _, err = run.communicate(timeout=300)
  assert run.returncode == 0, err
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["env_kwargs"] == {"length": 6}


# On one device every size divides over the devices: that case exists only with several.
DEVICE_SPLIT = ([(["--config.num_envs=12"], f"num_envs=12 does not divide evenly over the number of devices="
                  f"{jax.device_count()}")] if jax.device_count() in (8, 16) else [])


@pytest.mark.parametrize("flags, message", DEVICE_SPLIT + [
    (["--config.env_name=CartPol-v1"], "unknown environment 'CartPol-v1': did you mean 'CartPole-v1'?"),
    (["--config.num_minibatches=3"], "num_steps=128 does not divide evenly over num_minibatches=3"),
    (["--config.total_timesteps=100"], "total_timesteps=100 is less than one iteration"),
    (["--config.lr=0"], "lr=0.0 must be a positive number"),
    (["--config.backend=tpu_magic"], "backend='tpu_magic' must be one of"),
    (["--config.env_name=tests.user_code:corridor_of", "--config.env_kwargs.lenght=3"],
     "env_kwargs {'lenght': 3} do not fit tests.user_code:corridor_of: got an unexpected keyword argument 'lenght'"),
])
def test_bad_config_is_one_clear_line_and_a_nonzero_exit(flags, message, tmp_path):
  run = launch(f"--workdir={tmp_path / 'run'}", "--config.num_envs=8", *flags)
  out, err = run.communicate(timeout=120)
  assert run.returncode != 0
  assert message in err
  assert "Traceback" not in err
  assert not (tmp_path / "run").exists(), "a rejected config leaves no workdir behind"


@pytest.mark.parametrize("flags, message", [
    (["--config.num_env=8"], "unknown config field 'num_env': did you mean 'num_envs'?"),
    (["--config.lr=fast"], "flag --config.lr=fast: could not convert string to float: 'fast'"),
    (["--config=ppo:Pong"], "unknown preset 'Pong' for --config=ppo"),
    (["--config=pqn:cartpole-v1"], "unknown preset 'cartpole-v1' for --config=pqn; did you mean 'CartPole-v1'? choose"),
    (["--config=ppo:brax:hopper"], "any environment of a suite trains as --config=ppo --config.env_name=brax:hopper; "),
    (["--config.env_kwargs.length", "--config.lr=1"], "flag --config.env_kwargs.length has no value"),
    ([f"--config={PPO_CONFIG}:Pong"], "unknown preset 'Pong' for --config=ppo"),
    (["--config=configs/nope.py"], "config 'configs/nope.py' is neither a file nor one of distrl's configs (dqn, ppo, pqn)"),
    (["--config=config/ppo.py"], "config 'config/ppo.py' is neither a file nor one of distrl's configs (dqn, ppo, pqn) "
                                 "(did you mean --config=ppo?)"),
])
def test_bad_flag_is_one_clear_line_and_a_nonzero_exit(flags, message, tmp_path):
  run = launch(f"--workdir={tmp_path / 'run'}", *flags)
  _, err = run.communicate(timeout=120)
  assert run.returncode == 2
  assert err.strip() == f"distrl: error: {message}" or message in err.splitlines()[0]
  assert len(err.strip().splitlines()) == 1, err
  assert not (tmp_path / "run").exists()


def test_a_directory_named_like_a_config_does_not_shadow_it(tmp_path, monkeypatch):
  """`--config=pqn --workdir=pqn` run twice from one directory: the second time ./pqn (the workdir) exists. It
  used to be taken for the config file ("get_config() returned _ErrorConfig")."""
  from distrl import configs
  from distrl.cli import config_flag
  from distrl.errors import ConfigError

  monkeypatch.chdir(tmp_path)
  (tmp_path / "pqn").mkdir()
  (tmp_path / "runs").mkdir()
  assert config_flag.resolve("pqn:Breakout-MinAtar") == os.path.join(configs.DIRECTORY, "pqn.py") + ":Breakout-MinAtar"
  with pytest.raises(ConfigError, match="config 'runs' is a directory, not a config file"):
    config_flag.resolve("runs")


def test_a_terminal_gets_one_live_line_that_fits_its_width_and_a_summary(tmp_path):
  import pty

  main, secondary = pty.openpty()
  run = launch(f"--workdir={tmp_path}", f"--config.num_envs={jax.device_count()}", "--config.num_steps=32",
               f"--config.eval_episodes={jax.device_count()}", f"--config.total_timesteps={20 * jax.device_count() * 32}",
               "--config.log_every=4", stdout=secondary, text=False, env_extra={"COLUMNS": "80"})
  os.close(secondary)
  output = b""
  while True:
    try:
      chunk = os.read(main, 4096)
    except OSError:  # the other end closed
      break
    if not chunk:
      break
    output += chunk
  run.wait(timeout=120)
  text = output.decode()
  assert run.returncode == 0
  lines = text.replace("\r\n", "\n").split("\n")
  live = next(line for line in lines if line.startswith("\r"))
  frames = [frame.replace("\x1b[K", "") for frame in live.split("\r")[1:]]  # redrawn in place once per record
  assert len(frames) == 5
  assert all(len(frame) <= 79 for frame in frames), frames
  total = 20 * jax.device_count() * 32
  assert re.match(rf"\[ppo CartPole-v1\] (█+ )?100% {total:,}/{total:,} \| return ", frames[-1]), frames[-1]
  assert " | eval " in frames[-1] and " | ETA 0:00" in frames[-1]
  assert "compiled the update loop" in text and text.index("compiled") < text.index("\r[ppo")
  summary = lines[lines.index(live) + 1:]
  assert summary[0].startswith(f"[ppo CartPole-v1] {total:,} of {total:,} steps; this session ")
  assert summary[1].startswith("  return ") and "; eval " in summary[1] and "at update" in summary[1]
  assert summary[2] == f"  checkpoint {tmp_path}/checkpoints/20"
  assert summary[3] == f"  evaluate it: python -m distrl.evaluate --workdir={tmp_path} --best"


@pytest.mark.parametrize("width", [40, 80, 120, 200])
def test_the_progress_line_drops_fields_in_order_of_importance_to_fit(width, monkeypatch):
  monkeypatch.setenv("COLUMNS", str(width))
  writer = metrics.Writer.__new__(metrics.Writer)
  writer.total_steps, writer.name, writer._since = 499_712, "ppo Breakout-MinAtar", None
  scalars = {"train/episode_return": 36.25, "eval/return": 41.0, "perf/sps": 2560.4, "loss/total": 0.1234,
             "loss/policy": -0.01, "loss/value": 0.25, "loss/entropy": 1.02}
  line = writer._line(225_280, scalars, bar=True)
  assert len(line) <= width - 1, line
  shown = [field in line for field in ("return 36.25", "eval 41", "ETA", "█", "steps/s", "loss", "pi", "ent")]
  assert shown == sorted(shown, reverse=True), (line, shown)  # a prefix of the fields, most important first
  assert shown[:3] == [True, True, True] or width < 80
  assert all(shown) == (width >= 200)
