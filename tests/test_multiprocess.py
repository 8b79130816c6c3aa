"""Several processes (stand-ins for hosts) with CPU devices and gloo collectives form one mesh."""

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from distrl import trainer
from distrl.checkpoint import Checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "multiprocess_worker.py")

pytestmark = pytest.mark.skipif(jax.device_count() != 8, reason="compares 2 processes x 4 devices with 8 devices")

SMALL = {
    "ppo": ["num_envs=8", "num_steps=32", "total_timesteps=2560", "log_every=5", "eval_episodes=8"],
    "dqn": ["num_envs=8", "train_frequency=8", "buffer_size=800", "batch_size=32", "total_timesteps=1600",
            "learning_starts=400", "target_update_interval=320", "log_every=50", "eval_episodes=8"],
}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def spawn(command, devices, **popen):
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
         "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
  return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          **popen)


def config_of(algo, overrides):
  config = importlib.import_module(f"distrl.configs.{algo}").get_config()
  for override in overrides:
    field, value = override.split("=", 1)
    config[field] = type(config[field])(value)
  return config


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_two_processes_of_four_devices_equal_one_process_of_eight(algo, tmp_path):
  port = free_port()
  workers = [spawn([sys.executable, WORKER, str(port), "2", str(i), algo, str(tmp_path / "run"),
                    str(tmp_path / f"params{i}.npz"), *SMALL[algo]], devices=4) for i in range(2)]
  for worker in workers:
    out, err = worker.communicate(timeout=300)
    assert worker.returncode == 0, err[-3000:]
  params = [np.load(tmp_path / f"params{i}.npz") for i in range(2)]
  reference = trainer.train(config_of(algo, SMALL[algo]), str(tmp_path / "reference"))
  expected = jax.tree.leaves(jax.device_get(reference.state.learner.params))
  assert len(params[0].files) == len(expected)
  for i, name in enumerate(params[0].files):
    np.testing.assert_array_equal(params[0][name], params[1][name])  # identical in both processes
    np.testing.assert_allclose(params[0][name], expected[i], atol=2e-5)  # equal to one process of 8 devices


def launch_two(workdir, *flags, heartbeat=60):
  port = free_port()
  return [spawn([sys.executable, "-m", "distrl.launch", "--config=ppo", f"--workdir={workdir}",
                 f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}",
                 f"--heartbeat_timeout={heartbeat}", *flags], devices=4) for i in range(2)]


def test_only_process_zero_logs_and_the_checkpoint_moves_between_process_counts(tmp_path):
  workdir = tmp_path / "run"
  flags = ["--config.num_envs=8", "--config.num_steps=32", "--config.log_every=5", "--config.eval_episodes=8"]
  runs = launch_two(workdir, *flags, "--config.total_timesteps=2560")  # 10 updates
  outputs = [run.communicate(timeout=300) for run in runs]
  assert all(run.returncode == 0 for run in runs), outputs[0][1][-2000:] + outputs[1][1][-2000:]
  assert "step 2,560/2,560" in outputs[0][0]
  assert "step" not in outputs[1][0], "process 1 prints no progress"
  assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 2
  assert len(list((workdir / "tb").iterdir())) == 1  # one events file, process 0's

  # The 2-process checkpoint resumes in one process of 8 devices, and training goes on.
  config = config_of("ppo", ["num_envs=8", "num_steps=32", "log_every=5", "eval_episodes=8", "total_timesteps=5120"])
  result = trainer.train(config, str(workdir))
  assert [h["update"] for h in result.history] == [15, 20]
  assert Checkpoints(str(workdir / "checkpoints"), keep=3).latest() == 20

  # ... and two processes resume from that shared checkpoint in turn.
  runs = launch_two(workdir, *flags, "--config.total_timesteps=7680")  # 30 updates
  outputs = [run.communicate(timeout=300) for run in runs]
  assert all(run.returncode == 0 for run in runs), outputs[0][1][-2000:] + outputs[1][1][-2000:]
  assert f"resuming {workdir} from update 20" in outputs[0][0]
  assert [json.loads(line)["update"] for line in (workdir / "metrics.jsonl").read_text().splitlines()] == \
      [5, 10, 15, 20, 25, 30]


def test_killed_peer_ends_the_other_process_with_an_error_in_bounded_time(tmp_path):
  runs = launch_two(tmp_path / "run", "--config.num_envs=8", "--config.total_timesteps=50000000",
                    "--config.log_every=1", heartbeat=5)
  deadline = time.time() + 120
  while time.time() < deadline and not (tmp_path / "run" / "metrics.jsonl").exists():
    time.sleep(0.2)
  assert (tmp_path / "run" / "metrics.jsonl").exists(), "the run never started"
  runs[1].send_signal(signal.SIGKILL)
  start = time.time()
  try:
    _, err = runs[0].communicate(timeout=90)
  except subprocess.TimeoutExpired:
    runs[0].kill()
    pytest.fail("process 0 hung after its peer died")
  assert runs[0].returncode == 1
  assert time.time() - start < 90
  assert "distrl: error: process 0 of 2 stops:" in err
  assert "Traceback" not in err and "Check failure" not in err
