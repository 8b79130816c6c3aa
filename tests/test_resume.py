"""Nothing lost: kill -9 and resume, damaged checkpoints, non-finite guard, configs that do not fit."""

import os
import random
import shutil
import signal
import time

import jax
import numpy as np
import pytest

from distrl.configs import dqn as dqn_config
from distrl.configs import ppo as ppo_config
from distrl.runtime import loop, trainer
from distrl.runtime.checkpoint import Checkpoints
from distrl.errors import ConfigError
from examples import a2c_config
from tests.cli import launch, records, timeless

# Runs long enough (a few seconds) to be killed in their middle, with a checkpoint every 2 chunks.
RUNS = {
    "ppo": ("ppo", {"num_envs": 64, "total_timesteps": 64 * 128 * 30, "log_every": 1, "checkpoint_every": 2,
                               "eval_every": 1000, "eval_episodes": 8}),
    # Prioritised replay and n-step returns: priorities, their running maximum and the sampling key resume too.
    "dqn": ("dqn", {"num_envs": 8, "train_frequency": 8, "buffer_size": 8000, "learning_starts": 800,
                    "prioritized": True, "n_step": 3, "total_timesteps": 8 * 30 * 200, "log_every": 200,
                    "checkpoint_every": 400, "eval_every": 100000, "eval_episodes": 8}),
    # The example algorithm that lives outside distrl (examples/a2c.py), resumed like the built-in ones.
    "a2c": ("examples/a2c_config.py", {"num_envs": 64, "num_steps": 32, "total_timesteps": 64 * 32 * 30 * 20,
                                       "log_every": 20, "checkpoint_every": 40, "eval_every": 100000,
                                       "eval_episodes": 8}),
}
CONFIGS = {"ppo": ppo_config, "dqn": dqn_config, "a2c": a2c_config}


def _config(algo, fields):
  config = CONFIGS[algo].get_config()
  config.update(fields)
  return config


def _assert_same_state(a, b):
  for x, y in zip(jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("algo", list(RUNS))
def test_kill_9_at_a_random_chunk_then_resume_ends_bit_identical_to_an_uninterrupted_run(algo, tmp_path):
  config_file, fields = RUNS[algo]
  flags = [f"--workdir={tmp_path / 'run'}", *(f"--config.{k}={v}" for k, v in fields.items())]
  kill_after = random.randint(3, 12)  # chunks logged before the kill
  print(f"killing {algo} after {kill_after} logged chunks")
  run = launch(*flags, config=config_file)
  deadline = time.time() + 180
  while time.time() < deadline and run.poll() is None and len(records(tmp_path / "run")) < kill_after:
    time.sleep(0.01)
  run.send_signal(signal.SIGKILL)
  run.communicate(timeout=60)
  assert run.returncode == -signal.SIGKILL, "the run finished before it could be killed"

  resumed = launch(*flags, config=config_file)
  out, err = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, err
  assert "resuming" in out or "training" in out  # no checkpoint yet is possible for an early kill
  updates = [r["update"] for r in records(tmp_path / "run")]
  chunk = fields["log_every"]
  assert updates == list(range(chunk, 30 * chunk + 1, chunk)), "metrics continue with no repeats or gaps"

  reference = trainer.train(_config(algo, fields), str(tmp_path / "reference"))
  final = Checkpoints(str(tmp_path / "run" / "checkpoints"), keep=3).restore(30 * chunk, like=reference.state)
  _assert_same_state(final, reference.state)
  # The records too, every bit: a resumed session's first interval is split into calls (one update first) that
  # the uninterrupted run's is not, and its sums are the same float32 additions all the same.
  assert timeless(records(tmp_path / "run")) == timeless(records(tmp_path / "reference"))


def test_sigint_finishes_the_chunk_saves_and_exits_zero(tmp_path):
  _, fields = RUNS["ppo"]
  run = launch(f"--workdir={tmp_path}", *(f"--config.{k}={v}" for k, v in fields.items()))
  while run.poll() is None and len(records(tmp_path)) < 2:
    time.sleep(0.01)
  run.send_signal(signal.SIGINT)
  out, err = run.communicate(timeout=60)
  assert run.returncode == 0, err
  last = records(tmp_path)[-1]["update"]
  assert f"stopped by SIGINT: saved update {last} to {tmp_path}/checkpoints" in out
  assert Checkpoints(str(tmp_path / "checkpoints"), keep=3).latest() == last


def _short_ppo(total_updates, **fields):
  config = ppo_config.get_config()
  config.num_envs = jax.device_count()
  config.update(dict(num_steps=16, num_minibatches=2, log_every=5, checkpoint_every=5, eval_every=1000,
                     eval_episodes=jax.device_count(), total_timesteps=total_updates * jax.device_count() * 16))
  config.update(fields)
  return config


def _damage(directory):
  """Overwrites every data file of a checkpoint with garbage of the same size."""
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      size = os.path.getsize(path)
      with open(path, "wb") as f:
        f.write(b"\x13" * max(size, 1))


def _lose_array_metadata(directory):
  """Deletes the file that lists a checkpoint's arrays (orbax then reads no metadata, not an error)."""
  os.remove(os.path.join(directory, "default", "_METADATA"))


@pytest.mark.parametrize("damage", [_damage, _lose_array_metadata])
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
  _damage(tmp_path / "checkpoints" / "15.orbax-checkpoint-tmp-1234")
  capsys.readouterr()
  result = trainer.train(_short_ppo(20), str(tmp_path))
  assert "from update 10" in capsys.readouterr().out
  assert [h["update"] for h in result.history] == [15, 20]


def test_non_finite_values_stop_the_run_naming_step_and_quantity_and_keep_the_last_good_checkpoint(tmp_path):
  config = dqn_config.get_config()
  config.update(dict(num_envs=jax.device_count() * 2, train_frequency=jax.device_count() * 2, lr=1e30,
                     max_grad_norm=1e30, learning_starts=200 * jax.device_count() * 2, log_every=100,
                     checkpoint_every=100, eval_episodes=jax.device_count(),
                     total_timesteps=400 * jax.device_count() * 2))
  with pytest.raises(loop.TrainingDiverged) as error:
    trainer.train(config, str(tmp_path))
  message = str(error.value)
  assert "non-finite" in message and "loss/total" in message and "parameters or optimizer state" in message
  assert "in updates 201..300" in message and f"(step {300 * config.num_envs:,})" in message
  checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=3)
  assert checkpoints.latest() == 200  # learning started at update 200: the state before that is kept
  restored_config = config.copy_and_resolve_references()
  restored_config.lr = 2.5e-4
  resumed = trainer.train(restored_config, str(tmp_path))  # resuming with a sane lr works from there
  assert [h["update"] for h in resumed.history] == [300, 400]


def test_resuming_with_other_shapes_is_refused_and_changes_nothing(tmp_path):
  trainer.train(_short_ppo(10), str(tmp_path))
  before = {p: os.path.getmtime(tmp_path / p) for p in ("config.json", "metrics.jsonl")}
  listing = sorted(os.listdir(tmp_path / "checkpoints"))
  with pytest.raises(ConfigError) as error:
    trainer.train(_short_ppo(20, hidden_sizes=(32, 32)), str(tmp_path))
  assert "holds arrays of other shapes" in str(error.value)
  assert str(error.value).startswith(f"fields that differ from {tmp_path}/config.json: hidden_sizes: [64, 64] -> "
                                     f"[32, 32], ")  # leading with what differs
  assert "; the checkpoint " in str(error.value)
  # Another environment (or algorithm): the cause leads, in one short line.
  with pytest.raises(ConfigError) as error:
    trainer.train(_short_ppo(20, env_name="Acrobot-v1"), str(tmp_path))
  assert str(error.value) == (f"{tmp_path} holds a run of ppo on CartPole-v1, not ppo on Acrobot-v1 (env_name: "
                              f"'CartPole-v1' -> 'Acrobot-v1'); resume it with its own config, or use another --workdir")
  assert {p: os.path.getmtime(tmp_path / p) for p in before} == before
  assert sorted(os.listdir(tmp_path / "checkpoints")) == listing


def test_resuming_with_only_a_longer_run_is_allowed_and_says_so(tmp_path, capsys):
  trainer.train(_short_ppo(10), str(tmp_path))
  capsys.readouterr()
  result = trainer.train(_short_ppo(20), str(tmp_path))
  out = capsys.readouterr().out
  assert "resuming" in out and "with changed settings: total_timesteps:" in out
  assert [h["update"] for h in result.history] == [15, 20]


@pytest.mark.parametrize("workdir, message", [("/proc/distrl-run", "cannot write to --workdir=/proc/distrl-run"),
                                              ("file", "is a file, not a directory")])
def test_a_workdir_that_cannot_be_written_is_one_line_and_a_nonzero_exit(workdir, message, tmp_path):
  if workdir == "file":
    workdir = tmp_path / "a-file"
    workdir.write_text("not a directory")
  run = launch(f"--workdir={workdir}", f"--config.num_envs={jax.device_count()}", f"--config.eval_episodes={jax.device_count()}")
  _, err = run.communicate(timeout=120)
  assert run.returncode == 1
  assert err.startswith("distrl: error: ") and message in err
  assert len(err.strip().splitlines()) == 1
