"""Small runs and what tests compare of a run's files, shared by the test modules."""

import ast
import hashlib
import os
from typing import Any, NamedTuple

import jax

from distrl.configs import ppo as ppo_config
from distrl.rl.state import TrainState
from distrl.runtime import checksums, programs

# The environment made for tests (tests/fast_env.py): for a test that needs some environment, not a particular one.
FAST = "tests.fast_env:make"


class Updated(NamedTuple):
  """What `updates` returns, on the host."""

  state: TrainState  # after the updates, in the global layout
  sums: dict[str, Any]  # the updates' metric sums, {name: (sum, count)}
  initial: TrainState  # before them
  mesh_size: int  # the devices the updates ran on


def updates(config, num_updates: int, devices=None) -> Updated:
  """`num_updates` updates of `config`'s program as the trainer builds it (`programs.build`, then its runner, one
  call) on `devices` (default: every device)."""
  program = programs.build(config, programs.mesh_for(config, devices))
  try:
    runner, initial = program.runner, jax.device_get(program.state)  # the runner donates the state it is given
    state, sums, _ = runner(runner.put(program.state), num_updates)
    state, sums = jax.device_get((runner.get(state), sums))
  finally:
    program.close()
  return Updated(state, sums, initial, program.mesh.size)


def tiny_ppo(num_updates, **fields):
  """PPO on tests/fast_env.py, one environment a device, 16 steps: `num_updates` updates, a record every 2, a
  checkpoint and an evaluation every 4. The learning rate is not annealed, so the programs do not depend on the run's
  length: runs of any length compile the same programs, and all but the first load them from the compilation cache."""
  n = jax.device_count()
  config = ppo_config.get_config()
  config.update(dict(env_name=FAST, anneal_lr=False, num_envs=n, num_steps=16, num_minibatches=2, log_every=2,
                     checkpoint_every=4, eval_every=4, eval_episodes=n, total_timesteps=num_updates * n * 16))
  config.update(fields)
  return config


def tiny_ppo_fields(num_updates, **fields) -> dict:
  """The fields in which `tiny_ppo(num_updates, **fields)` differs from the shipped config."""
  defaults = ppo_config.get_config()
  return {name: value for name, value in tiny_ppo(num_updates, **fields).items() if defaults[name] != value}


def tiny_ppo_flags(num_updates, **fields) -> list[str]:
  """`tiny_ppo(num_updates, **fields)` as the command line's flags (`--config=ppo`)."""
  return [f"--config.{name}={value}" for name, value in tiny_ppo_fields(num_updates, **fields).items()]


def override(config, overrides):
  """`config` with `field=value` strings applied, each value read as its field's type (a tuple or a bool as a
  literal)."""
  for item in overrides:
    field, value = item.split("=", 1)
    literal = isinstance(config[field], (tuple, bool))
    config[field] = ast.literal_eval(value) if literal else type(config[field])(value)
  return config


def files(directory) -> dict[str, str]:
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


def damage(directory):
  """Overwrites every data file of a checkpoint with garbage of the same size."""
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      size = os.path.getsize(path)
      with open(path, "wb") as f:
        f.write(b"\x13" * max(size, 1))


def overwrite_64_bytes(directory) -> str:
  """Overwrites 64 bytes in the middle of the largest data file of a checkpoint, keeping its size (orbax restores
  such a file without a word); returns the file's path relative to the checkpoint."""
  name = max(checksums.data_files(directory), key=lambda name: os.path.getsize(os.path.join(directory, name)))
  path = os.path.join(directory, name)
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    f.seek(size // 2 - 32)
    f.write(b"\x13" * 64)
  assert os.path.getsize(path) == size
  return name
