"""The shipped configs: the design card's `--config=configs/<algo>.py` from the repository root, `--config=<algo>`
from anywhere, the run fields written once, and the package list that installs them."""

import ast
import pathlib
import subprocess
import sys

import pytest

from distrl import configs
from tests.cli import ROOT, launch, records

# Prints what launch's flag parsing made of a command line (no JAX backend, no training): algo, env_name, a field.
PARSE = """
import sys
from distrl import launch
launch.parse_flags(sys.argv)
config = launch._CONFIG.value
print(config.algo, config.env_name, config.num_envs)
"""


def _parse(*flags, cwd):
  return subprocess.run([sys.executable, "-c", PARSE, *flags], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("value, expected", [
    ("configs/ppo.py", "ppo CartPole-v1 4"),
    ("configs/dqn.py:Acrobot-v1", "dqn Acrobot-v1 10"),
    ("configs/pqn.py:Breakout-MinAtar", "pqn Breakout-MinAtar 128"),
    ("configs/ppo.py:Breakout-MinAtar-mlp", "ppo Breakout-MinAtar 64"),
    ("configs/td3.py:brax:inverted_pendulum", "td3 brax:inverted_pendulum 64"),
    ("configs/rainbow.py:Seaquest-MinAtar", "dqn Seaquest-MinAtar 16"),
])
def test_the_cards_form_reads_the_top_level_configs_from_the_repository_root(value, expected):
  result = _parse(f"--config={value}", cwd=ROOT)
  assert result.returncode == 0, result.stderr
  assert result.stdout.split("\n")[-2] == expected


@pytest.mark.parametrize("value, expected", [("ppo", "ppo CartPole-v1 4"), ("dqn:CleanRL", "dqn CartPole-v1 10"),
                                             ("pqn:Acrobot-v1", "pqn Acrobot-v1 32"), ("sac", "sac Pendulum-v1 8"),
                                             ("rainbow", "dqn CartPole-v1 10")])
def test_a_shipped_config_by_name_works_from_any_directory(value, expected, tmp_path):
  result = _parse(f"--config={value}", cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  assert result.stdout.split("\n")[-2] == expected


@pytest.mark.unit
def test_the_installed_configs_are_the_top_level_files():
  """One home: distrl.configs is the repository's configs/ folder (pyproject.toml's package-dir), not a copy."""
  assert pathlib.Path(configs.DIRECTORY).resolve() == (pathlib.Path(ROOT) / "configs").resolve()
  assert not (pathlib.Path(ROOT) / "distrl" / "configs").exists()


@pytest.mark.unit
def test_pyproject_lists_every_package_of_distrl():
  """pyproject.toml lists the packages explicitly (the configs' folder is mapped): a new folder must be listed, or a
  non-editable install would lack it."""
  import tomllib

  listed = set(tomllib.loads((pathlib.Path(ROOT) / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
  found = {".".join(p.parent.relative_to(ROOT).parts) for p in pathlib.Path(ROOT, "distrl").rglob("__init__.py")}
  assert found | {"distrl.configs"} == listed


ALGO = {"rainbow": "dqn"}  # shipped configs named otherwise than the algorithm they set (rainbow: settings of DQN)


@pytest.mark.unit
def test_the_run_fields_are_written_once():
  """Every shipped config takes the fields every config has from configs.run_fields, and writes none of them again."""
  for name in configs.names():
    tree = ast.parse((pathlib.Path(configs.DIRECTORY) / f"{name}.py").read_text())
    assigned = {target.attr for node in ast.walk(tree) if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Attribute)}
    assert not assigned & set(configs.RUN_FIELDS), (name, assigned & set(configs.RUN_FIELDS))
    config = __import__(f"distrl.configs.{name}", fromlist=["get_config"]).get_config()
    assert config.algo == ALGO.get(name, name) and configs.lacking(config) is None


@pytest.mark.unit
def test_every_config_field_has_a_comment():
  """The config is the documentation of its fields: each assignment `config.x = ...` carries a one-line comment."""
  for path in pathlib.Path(configs.DIRECTORY).glob("*.py"):
    for number, line in enumerate(path.read_text().splitlines(), 1):
      if line.strip().startswith("config.") and " = " in line and "ConfigDict()" not in line.split("#")[0][-20:]:
        assert "#" in line, f"{path.name}:{number}: {line.strip()}"


@pytest.mark.parametrize("config, cwd", [("configs/ppo.py", ROOT), ("dqn", None), ("configs/sac.py", ROOT),
                                         ("td3", None)])
def test_the_card_command_trains(config, cwd, tmp_path):
  """The card's command end to end: from the repository root by path, and by name from another directory."""
  workdir = tmp_path / "run"
  off_policy = ["--config.learning_starts=256", "--config.hidden_sizes=(32, 32)", "--config.batch_size=32"]
  sizes = {"configs/ppo.py": ["--config.num_steps=16"],
           "dqn": ["--config.train_frequency=8", "--config.learning_starts=64"],
           "configs/sac.py": off_policy, "td3": off_policy}[config]
  run = launch(f"--workdir={workdir}", "--config.num_envs=8", *sizes, "--config.total_timesteps=512",
               "--config.eval_episodes=8", config=config, cwd=cwd or str(tmp_path))
  out, err = run.communicate(timeout=300)
  assert run.returncode == 0, err
  assert records(workdir)[-1]["step"] == 512


@pytest.mark.parametrize("override, expected", [("--config.num_envs=1e1", "ppo CartPole-v1 10"),
                                                ("--config.num_envs=8.0", "ppo CartPole-v1 8")])
def test_an_integral_float_is_taken_by_an_integer_field(override, expected, tmp_path):
  """`--config.total_timesteps=1e5` means 100000 (absl alone refused it as not an int)."""
  result = _parse("--config=ppo", override, cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  assert result.stdout.split("\n")[-2] == expected


@pytest.mark.unit
def test_integral_numbers_rewrites_only_integral_floats_of_config_fields():
  from distrl.cli.config_flag import integral_numbers

  argv = ["--config.total_timesteps=1e5", "--config.lr=2.5e-4", "--config.gamma=1.0", "--config.env_name=1e5x",
          "--workdir=1e5", "--config.hidden_sizes=(64.0,)", "--config.seed=3"]
  assert integral_numbers(argv) == ["--config.total_timesteps=100000", "--config.lr=2.5e-4", "--config.gamma=1",
                                    "--config.env_name=1e5x", "--workdir=1e5", "--config.hidden_sizes=(64.0,)",
                                    "--config.seed=3"]
