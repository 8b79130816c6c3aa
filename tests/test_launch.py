"""The launcher (distrl/launch.py) as a user meets it: a short run from the command line, its live line and
summary, and every mistake (a bad flag, config, config file or backend) one line of ours and a non-zero exit."""

import json
import os
import re
import subprocess
import sys

import jax
import pytest

from distrl.configs import ppo as ppo_config
from distrl.errors import ConfigError
from distrl.runtime import trainer
from tests.cli import ROOT, launch, records

PPO_CONFIG = os.path.join(ROOT, "configs", "ppo.py")


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
DEVICE_SPLIT = ([({"num_envs": 12}, f"num_envs=12 does not divide evenly over the number of devices="
                  f"{jax.device_count()}")] if jax.device_count() in (8, 16) else [])


@pytest.mark.unit
@pytest.mark.parametrize("fields, message", DEVICE_SPLIT + [
    ({"env_name": "CartPol-v1"}, "unknown environment 'CartPol-v1': did you mean 'CartPole-v1'?"),
    ({"num_minibatches": 3}, "num_steps=128 does not divide evenly over num_minibatches=3"),
    ({"total_timesteps": 100}, "total_timesteps=100 is less than one iteration"),
    ({"lr": 0.0}, "lr=0.0 must be a positive number"),
    ({"backend": "tpu_magic"}, "backend='tpu_magic' must be one of"),
    ({"env_name": "tests.user_code:corridor_of", "env_kwargs": {"lenght": 3}},
     "env_kwargs {'lenght': 3} do not fit tests.user_code:corridor_of: got an unexpected keyword argument 'lenght'"),
    ({"total_timesteps": 10**12}, "gradient steps; they are counted in int32"),
])
def test_a_bad_config_is_one_clear_line_and_leaves_no_workdir(fields, message, tmp_path):
  """In-process: the launcher turns a ConfigError into its one line and exit 1 (the test below, once)."""
  config = ppo_config.get_config()
  config.num_envs = 8
  config.update(fields)
  with pytest.raises(ConfigError) as error:
    trainer.train(config, str(tmp_path / "run"))
  assert message in str(error.value) and "\n" not in str(error.value)
  assert not (tmp_path / "run").exists(), "a rejected config leaves no workdir behind"


def test_a_bad_config_from_the_command_line_is_one_line_and_exit_1(tmp_path):
  run = launch(f"--workdir={tmp_path / 'run'}", "--config.num_envs=8", "--config.num_minibatches=3")
  _, err = run.communicate(timeout=120)
  assert run.returncode == 1
  assert err.startswith("distrl: error: ") and "num_steps=128 does not divide evenly over num_minibatches=3" in err
  assert len(err.strip().splitlines()) == 1, err
  assert not (tmp_path / "run").exists(), "a rejected config leaves no workdir behind"


@pytest.mark.parametrize("flags, message", [
    (["--config.num_env=8"], "unknown config field 'num_env': did you mean 'num_envs'?"),
    (["--config=sac", "--config.recurrent=True"],
     "unknown config field 'recurrent' (a field of the configs of impala, ppo, pqn)"),
    (["--config.lr=fast"], "flag --config.lr=fast: could not convert string to float: 'fast'"),
    (["--config=ppo:Pong"], "unknown preset 'Pong' for --config=ppo"),
    (["--config=pqn:cartpole-v1"], "unknown preset 'cartpole-v1' for --config=pqn; did you mean 'CartPole-v1'? choose"),
    (["--config=ppo:brax:hopper"], "any environment of a suite trains as --config=ppo --config.env_name=brax:hopper; "),
    (["--config.env_kwargs.length", "--config.lr=1"], "flag --config.env_kwargs.length has no value"),
    ([f"--config={PPO_CONFIG}:Pong"], "unknown preset 'Pong' for --config=ppo"),
    (["--config=configs/nope.py"],
     "config 'configs/nope.py' is neither a file nor one of distrl's configs (dqn, impala, ppo, pqn, rainbow, sac, "
     "td3)"),
    (["--config=config/ppo.py"],
     "config 'config/ppo.py' is neither a file nor one of distrl's configs (dqn, impala, ppo, pqn, rainbow, sac, "
     "td3) (did you mean --config=ppo?)"),
])
def test_bad_flag_is_one_clear_line_and_a_nonzero_exit(flags, message, tmp_path):
  run = launch(f"--workdir={tmp_path / 'run'}", *flags)
  _, err = run.communicate(timeout=120)
  assert run.returncode == 2
  assert err.strip() == f"distrl: error: {message}" or message in err.splitlines()[0]
  assert len(err.strip().splitlines()) == 1, err
  assert not (tmp_path / "run").exists()


@pytest.mark.unit
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
  live = next(line for line in lines if line.startswith("\r[ppo"))  # (a compile over 5 s has a live line too)
  frames = [frame.replace("\x1b[K", "") for frame in live.split("\r")[1:]]  # redrawn in place once per record
  assert len(frames) == 5
  assert all(len(frame) <= 79 for frame in frames), frames
  total = 20 * jax.device_count() * 32
  assert re.match(rf"\[ppo CartPole-v1\] (█+ )?100% {total:,}/{total:,} \| return ", frames[-1]), frames[-1]
  assert " steps/s | ETA 0:00" in frames[-1]  # at 80 columns: return, steps/s, time left (README)
  assert len({frame.split(" | ")[0].split("%")[0][:-3] for frame in frames}) == 1, frames  # the layout holds
  assert "compiled the update loop" in text and text.index("compiled") < text.index("\r[ppo")
  summary = lines[lines.index(live) + 1:]
  assert summary[0].startswith(f"[ppo CartPole-v1] {total:,} of {total:,} steps; this session ")
  assert summary[1].startswith("  return ") and "; eval " in summary[1] and "at update" in summary[1]
  assert summary[2] == f"  checkpoint {tmp_path}/checkpoints/20"
  assert summary[3] == f"  evaluate it: python -m distrl.evaluate --workdir={tmp_path} --best"


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
     "the config lacks env_name, env_kwargs, architecture, seed"),
])
def test_a_config_file_that_returns_no_config_is_one_line(body, message, tmp_path):
  (tmp_path / "mine.py").write_text(body)
  result = _cli(f"--config={tmp_path / 'mine.py'}", f"--workdir={tmp_path / 'run'}")
  assert result.returncode == 2 and message in result.stderr, result.stderr
  assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
