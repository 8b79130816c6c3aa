"""A rerun of a workdir goes on with the run as recorded (distrl.cli.rerun), and keeps what a finished run made."""

import json
import os
import pathlib

import jax
import pytest

from distrl.cli import rerun
from distrl.configs import ppo as ppo_config
from tests.cli import launch, records


def _files(workdir: pathlib.Path) -> dict[str, bytes]:
  """Every file of a workdir and its bytes, but the lock's record of who holds it."""
  return {str(p.relative_to(workdir)): p.read_bytes() for p in sorted(workdir.rglob("*"))
          if p.is_file() and p.name != ".lock"}


@pytest.mark.unit
def test_explicit_fields_are_those_the_command_line_sets():
  argv = ["launch", "--config=ppo", "--config.lr=1e-3", "--config.seed", "2", "--config.env_kwargs.length=3",
          "--workdir=runs/x"]
  assert rerun.explicit_fields(argv) == {"lr", "seed", "env_kwargs.length"}


@pytest.mark.unit
def test_the_recorded_config_is_the_base_and_the_command_line_changes_it(tmp_path):
  recorded = ppo_config.get_config()
  recorded.total_timesteps, recorded.lr, recorded.hidden_sizes = 100_000, 1e-3, (32,)
  recorded.env_kwargs = {"length": 5}
  (tmp_path / "config.json").write_text(recorded.to_json_best_effort())
  given = ppo_config.get_config()
  given.seed = 4  # set on the command line
  unused = rerun.as_recorded(given, str(tmp_path), {"seed"})
  assert (given.total_timesteps, given.lr, given.hidden_sizes, given.seed) == (100_000, 1e-3, (32,), 4)
  assert dict(given.env_kwargs) == {"length": 5}
  assert unused == ["env_kwargs: {} -> {'length': 5}", "hidden_sizes: [64, 64] -> [32]", "lr: 0.00025 -> 0.001",
                    "total_timesteps: 500000 -> 100000"]


@pytest.mark.unit
def test_a_config_of_another_environment_is_left_for_the_trainer_to_refuse(tmp_path):
  recorded = ppo_config.get_config("Acrobot-v1")
  (tmp_path / "config.json").write_text(recorded.to_json_best_effort())
  given = ppo_config.get_config()
  assert rerun.as_recorded(given, str(tmp_path), set()) == [] and given.env_name == "CartPole-v1"


def test_a_plain_rerun_of_a_finished_run_keeps_every_file_and_extending_it_keeps_its_end(tmp_path):
  """Issue 33: a run of a shorter budget, rerun with the plain command, trained on to the default and rotation
  deleted its final checkpoint and best/. Now the plain rerun says it is finished and changes no file; extending
  it is explicit, and its final checkpoint survives the rotation of keep_checkpoints=1."""
  workdir = tmp_path / "run"
  sizes = [f"--config.num_envs={jax.device_count()}", "--config.num_steps=16", "--config.num_minibatches=2",
           f"--config.eval_episodes={jax.device_count()}", "--config.log_every=2", "--config.checkpoint_every=2",
           "--config.eval_every=2", "--config.keep_checkpoints=1"]
  steps = 4 * jax.device_count() * 16
  first = launch(f"--workdir={workdir}", *sizes, f"--config.total_timesteps={steps}")
  assert first.wait(timeout=300) == 0, first.stderr.read()
  before = _files(workdir)
  plain = launch(f"--workdir={workdir}")  # the README's resume pattern, without the budget
  out, err = plain.communicate(timeout=300)
  assert plain.returncode == 0, err
  assert "the run is finished (update 4 of 4" in out and "compiled" not in out
  assert _files(workdir) == before
  longer = launch(f"--workdir={workdir}", f"--config.total_timesteps={2 * steps}")
  out, err = longer.communicate(timeout=300)
  assert longer.returncode == 0, err
  assert "with changed settings: total_timesteps" in out
  assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "8"]  # keep 1, and the first run's end
  assert [r["update"] for r in records(workdir)] == [2, 4, 6, 8]
  again = launch(f"--workdir={workdir}", f"--config.total_timesteps={3 * steps}")  # extended once more
  assert again.wait(timeout=300) == 0, again.stderr.read()
  assert sorted(os.listdir(workdir / "checkpoints"), key=int) == ["4", "8", "12"]  # every end so far, for good
  assert json.loads((workdir / "run.json").read_text())["finished"] == [4, 8, 12]
