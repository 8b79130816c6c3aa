"""The update loop (distrl/runtime/loop.py): chunks traced once, a log interval split into calls logs the same
records, the pmap layout converted by programs compiled once, non-finite values stop the run."""

import os

import jax
import pytest

from distrl.configs import dqn as dqn_config
from distrl.runtime import loop, trainer
from distrl.runtime.checkpoint import Checkpoints
from tests.cli import records, timeless
from tests.runs import FAST, tiny_ppo


@pytest.fixture
def built(monkeypatch):
  """The programs the trainer builds, for their runners' trace counters."""
  from distrl.runtime import programs

  made, build = [], programs.build
  monkeypatch.setattr(programs, "build", lambda *args, **kwargs: made.append(build(*args, **kwargs)) or made[-1])
  return made


def test_chunk_is_traced_once_including_a_short_last_chunk(tmp_path, built):
  result = trainer.train(tiny_ppo(7, log_every=3), str(tmp_path))  # 7 updates: chunks of 3, 3, 1
  assert built[0].runner.traces == 1
  assert built[0].runner.layout_traces == 0  # shard_map keeps the global layout: nothing to convert
  assert [h["update"] for h in result.history] == [3, 6, 7]
  assert int(result.state.update) == 7
  assert [r["step"] for r in records(tmp_path)] == [h["step"] for h in result.history]
  assert {"train/episode_return", "loss/policy", "loss/value", "loss/entropy", "ppo/approx_kl",
          "ppo/clip_fraction", "opt/lr", "perf/sps"} <= set(result.history[-1])
  assert os.listdir(tmp_path / "tb")  # tensorboard events written


@pytest.mark.parametrize("backend", ["shard_map", "pmap"])
def test_a_log_interval_split_into_one_update_calls_logs_the_same_records(backend, tmp_path, monkeypatch):
  # MAX_CHUNK_SECONDS = 0: every call runs one update, as a stop-prompt split of a slow interval would. The sums go
  # on from call to call on the devices, so each record is the same float32 additions in the same order.
  config = tiny_ppo(12, backend=backend, log_every=6)  # 2 records of 6 updates
  whole = trainer.train(config, str(tmp_path / "whole"))
  monkeypatch.setattr(loop, "MAX_CHUNK_SECONDS", 0.0)
  split = trainer.train(config, str(tmp_path / "split"))
  assert [h["update"] for h in split.history] == [6, 12]
  assert timeless(split.history) == timeless(whole.history)


def test_pmap_backend_through_the_trainer_compiles_each_layout_conversion_once(tmp_path, built):
  # 8 updates; get() at 4 evaluations and 4 checkpoints
  result = trainer.train(tiny_ppo(8, backend="pmap", log_every=2, eval_every=2, checkpoint_every=2), str(tmp_path))
  runner = built[0].runner
  assert runner.traces == 1 and runner.layout_traces == 2  # put's and get's conversions, traced once each
  assert [h["update"] for h in result.history] == [2, 4, 6, 8]
  assert all("eval/return" in h for h in result.history)
  assert Checkpoints(str(tmp_path / "checkpoints"), keep=3).saved() == [4, 6, 8]


def test_non_finite_values_stop_the_run_naming_step_and_quantity_and_keep_the_last_good_checkpoint(tmp_path):
  config = dqn_config.get_config()
  config.update(dict(env_name=FAST, num_envs=jax.device_count() * 2, train_frequency=jax.device_count() * 2, lr=1e30,
                     max_grad_norm=1e30, learning_starts=20 * jax.device_count() * 2, log_every=10,
                     checkpoint_every=10, eval_episodes=jax.device_count(),
                     total_timesteps=40 * jax.device_count() * 2))
  with pytest.raises(loop.TrainingDiverged) as error:
    trainer.train(config, str(tmp_path))
  message = str(error.value)
  assert "non-finite" in message and "loss/total" in message and "parameters or optimizer state" in message
  assert "in updates 21..30" in message and f"(step {30 * config.num_envs:,})" in message
  checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=3)
  assert checkpoints.latest() == 20  # learning started at update 20: the state before that is kept
  restored_config = config.copy_and_resolve_references()
  restored_config.lr = 2.5e-4
  resumed = trainer.train(restored_config, str(tmp_path))  # resuming with a sane lr works from there
  assert [h["update"] for h in resumed.history] == [30, 40]
