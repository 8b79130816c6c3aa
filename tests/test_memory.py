"""A run that cannot fit in memory is refused once its update is compiled, before the first update
(distrl/runtime/memory.py), in one line with both numbers and a size that fits."""

import types

import jax
import pytest

from distrl import algorithms
from distrl.configs import dqn as dqn_config
from distrl.configs import ppo as ppo_config
from distrl.errors import ConfigError
from distrl.runtime import memory, trainer
from tests.runs import tiny_ppo

GIB = 2**30


def _stats(argument: float, temp: float):
  """A memory analysis of `argument` GiB of state and `temp` GiB of temporaries (the state's outputs alias it)."""
  return types.SimpleNamespace(argument_size_in_bytes=int(argument * GIB), output_size_in_bytes=int(argument * GIB),
                               alias_size_in_bytes=int(argument * GIB), temp_size_in_bytes=int(temp * GIB),
                               generated_code_size_in_bytes=0)


@pytest.mark.unit
def test_a_rollout_that_cannot_fit_names_both_numbers_and_a_num_envs_that_fits(monkeypatch):
  """48 GiB needed, 16 GiB there: 128 environments x 0.9 x 16 / 48 = 38.4, so 38 (a multiple of 2 devices: 38)
  would need 48 x 38 / 128 = 14.25 GiB."""
  monkeypatch.setattr(memory, "available", lambda devices: (16 * GIB, "the host's available RAM"))
  config = ppo_config.get_config()
  config.num_envs = 128
  with pytest.raises(ConfigError) as refused:
    memory.check(config, _stats(1, 47), jax.devices()[:1], 2)
  assert str(refused.value) == ("the compiled update needs 48.0 GiB on each device and the host's available RAM is "
                                "16.0 GiB: num_envs and num_steps scale it (num_envs=128); --config.num_envs=38 fits "
                                "(about 14.2 GiB)")
  memory.check(config, _stats(1, 14), jax.devices()[:1], 2)  # 15 GiB: fits
  # With a GRU, each device's environments split into the minibatches: on 2 devices, 38 and 36 do not (19 and 18 are
  # not multiples of 4); 32 does, and is what the line names.
  config.recurrent = "gru"
  with pytest.raises(ConfigError, match=r"--config.num_envs=32 fits \(about 12.0 GiB\)"):
    memory.check(config, _stats(1, 47), jax.devices()[:1], 2, lambda smaller: algorithms.get("ppo").sizes(smaller, 2))


@pytest.mark.unit
def test_a_replay_buffer_that_cannot_fit_names_buffer_size(monkeypatch):
  """DQN's state is its buffer: 40 of 41 GiB; 8 GiB there: 1e6 x 0.9 x 8 / 41 = 175,609 transitions."""
  monkeypatch.setattr(memory, "available", lambda devices: (8 * GIB, "NVIDIA H100 memory"))
  config = dqn_config.get_config()
  config.buffer_size = 1_000_000
  with pytest.raises(ConfigError, match=r"needs 41.0 GiB on each device and NVIDIA H100 memory is 8.0 GiB: "
                                        r"buffer_size \(and batch_size\) scale it \(buffer_size=1000000\); "
                                        r"--config.buffer_size=175609 fits"):
    memory.check(config, _stats(40, 1), jax.devices()[:1], 1)


def test_the_trainer_refuses_a_run_that_cannot_fit_before_its_first_update(tmp_path, monkeypatch):
  """The compiled update's own analysis, against 1 KiB: refused after compiling, before anything is trained."""
  monkeypatch.setattr(memory, "available", lambda devices: (2**10, "the host's available RAM"))
  with pytest.raises(ConfigError, match=r"the compiled update needs [\d.]+ [KM]iB on each device and the host's "
                                        r"available RAM is 1.0 KiB: num_envs and num_steps scale it"):
    trainer.train(tiny_ppo(4), str(tmp_path / "run"))
  assert not (tmp_path / "run" / "metrics.jsonl").exists() and not (tmp_path / "run" / "checkpoints").exists()
