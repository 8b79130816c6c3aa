"""Resuming (distrl/runtime/resume.py): a run killed with kill -9 resumes bit for bit, without a stale lock; what a
resume may change (a longer run, the device count) and what it refuses (another seed, algorithm or array shapes).

One resume scenario per way a run stops, each ending bit-identical to the same run never stopped: kill -9 here; a
stop request in-process and SIGTERM from the command line in test_stopping.py; a stop agreed by several processes in
test_distributed.py.
"""

import importlib
import json
import os
import random
import signal
import time
import types

import jax
import numpy as np
import pytest

from distrl.errors import ConfigError
from distrl.runtime import resume, trainer
from distrl.runtime.checkpoint import Checkpoints
from tests.cli import launch, records, timeless
from tests.runs import FAST, files, tiny_ppo, tiny_ppo_fields

# Long enough (a few seconds) to be killed in its middle, with a checkpoint every 2 chunks: the programs of
# tests/runs.py's tiny_ppo, which other tests compile too. What each algorithm keeps in its state (a replay buffer,
# priorities, a target network, an algorithm from outside distrl) resumes bit for bit in test_stopping.py, in-process;
# this is the kill.
KILLED = tiny_ppo_fields(30, log_every=1, checkpoint_every=2, eval_every=1000)


# A recurrent agent's memory (one row per environment) is killed mid-episode with the rest of its state: an episode of
# tests/fast_env.py ends with probability 1/8 a step, so at any kill most environments are inside one, their memory
# not zeros. Two environments a device: minibatches take whole environments.
MEMORY = {"recurrent": "gru", "recurrent_size": 16, "num_envs": 2 * jax.device_count(),
          "total_timesteps": 2 * jax.device_count() * 16 * 30}
# SAC's state: twin critic, its targets, the temperature, and a replay buffer that is half full when the run ends
# (240 of 480 slots of every row), so less at the kill. 240 iterations of 2 gradient steps, learning from the 20th
# (before any kill), a record every 10.
SAC_ITERATIONS = 240
REPLAY = {"num_envs": 8, "total_timesteps": 8 * SAC_ITERATIONS, "buffer_size": 2 * 8 * SAC_ITERATIONS,
          "learning_starts": 8 * 20, "gradient_steps": 2, "batch_size": 32, "hidden_sizes": (32, 32), "log_every": 10,
          "checkpoint_every": 20, "eval_every": 100_000, "eval_episodes": 8}


@pytest.mark.parametrize("algo,fields", [("ppo", KILLED), ("ppo", {**KILLED, **MEMORY}), ("sac", REPLAY)],
                         ids=["feed-forward", "recurrent", "sac-half-full-replay"])
def test_kill_9_at_a_random_chunk_leaves_no_stale_lock_and_the_resumed_run_ends_bit_identical(tmp_path, algo, fields):
  workdir = tmp_path / "run"
  flags = [f"--workdir={workdir}", *(f"--config.{k}={v}" for k, v in fields.items())]
  kill_after = random.randint(3, 12)  # chunks logged before the kill
  print(f"killing after {kill_after} logged chunks")
  run = launch(*flags, config=algo)
  deadline = time.time() + 180
  while time.time() < deadline and run.poll() is None and len(records(workdir)) < kill_after:
    time.sleep(0.01)
  run.send_signal(signal.SIGSTOP)  # held where it is, its lock with it, until the kill
  assert run.poll() is None, "the run finished before it could be killed"

  # A second launcher on the same workdir is refused in one line and changes nothing.
  config_before = (workdir / "config.json").read_bytes()
  second = launch(*flags, config=algo)
  _, err = second.communicate(timeout=120)
  assert second.returncode == 1
  assert err.startswith(f"distrl: error: --workdir={workdir} is in use by another run (pid {run.pid} on ")
  assert len(err.strip().splitlines()) == 1
  assert (workdir / "config.json").read_bytes() == config_before

  run.send_signal(signal.SIGKILL)
  run.communicate(timeout=60)
  assert run.returncode == -signal.SIGKILL

  resumed = launch(*flags, config=algo)  # the kernel dropped the killed run's lock with it
  out, err = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, err
  assert "resuming" in out or "training" in out  # no checkpoint yet is possible for an early kill
  config = importlib.import_module(f"distrl.configs.{algo}").get_config()
  config.update(fields)
  every = config.log_every
  config.checkpoint_every = 10**6  # the same updates and records, saved only at the end: its state is compared
  reference = trainer.train(config, str(tmp_path / "reference"))
  updates = int(reference.state.update)
  assert [r["update"] for r in records(workdir)] == list(range(every, updates + 1, every)), \
      "metrics continue with no repeats or gaps"
  final = Checkpoints(str(workdir / "checkpoints"), keep=3).restore(updates, like=reference.state)
  for x, y in zip(jax.tree.leaves(jax.device_get(final)), jax.tree.leaves(jax.device_get(reference.state))):
    np.testing.assert_array_equal(x, y)
  if "recurrent" in fields:
    assert np.mean(np.any(np.asarray(final.actors.memory) != 0, axis=-1)) > 0.5, "most memory rows mid-episode"
  if algo == "sac":  # the second half of every replay row was never written
    filled = np.any(np.asarray(final.actors.replay.obs) != 0, axis=-1)
    assert filled[:, :SAC_ITERATIONS].all() and not filled[:, SAC_ITERATIONS:].any()
  # The records too, every bit: a resumed session's first interval is split into calls (one update first) that
  # the uninterrupted run's is not, and its sums are the same float32 additions all the same.
  assert timeless(records(workdir)) == timeless(records(tmp_path / "reference"))


def test_resume_refuses_another_seed_and_says_what_a_longer_run_changes(tmp_path, capsys):
  trainer.train(tiny_ppo(4, anneal_lr=True), str(tmp_path))
  before = files(tmp_path)
  with pytest.raises(ConfigError, match=f"{tmp_path} is the run of seed 0; it cannot go on as seed 3"):
    trainer.train(tiny_ppo(8, anneal_lr=True, seed=3), str(tmp_path))
  with pytest.raises(ConfigError, match=f"^{tmp_path} holds a run of ppo on {FAST}, not dqn on {FAST}"):
    from distrl.configs import dqn as dqn_config
    other = dqn_config.get_config()
    other.update(dict(env_name=FAST, num_envs=jax.device_count(), train_frequency=jax.device_count(),
                      eval_episodes=jax.device_count()))
    trainer.train(other, str(tmp_path))
  assert files(tmp_path) == before

  # A longer run: the annealed learning rate now spans the new length (and says so) ...
  capsys.readouterr()
  config = tiny_ppo(8, anneal_lr=True)
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
  config = tiny_ppo(4, num_envs=2, eval_episodes=2)
  trainer.train(config, str(tmp_path), devices=jax.devices()[:1])
  capsys.readouterr()
  trainer.train(tiny_ppo(8, num_envs=2, eval_episodes=2), str(tmp_path), devices=jax.devices()[:2])
  assert "on 2 device(s) in 1 process(es) (it ran on 1 device(s) in 1 process(es) before)" in capsys.readouterr().out


def test_resuming_with_other_shapes_is_refused_and_changes_nothing(tmp_path):
  trainer.train(tiny_ppo(10, log_every=5, checkpoint_every=5, eval_every=1000), str(tmp_path))
  before = {p: os.path.getmtime(tmp_path / p) for p in ("config.json", "metrics.jsonl")}
  listing = sorted(os.listdir(tmp_path / "checkpoints"))
  with pytest.raises(ConfigError) as error:
    trainer.train(tiny_ppo(20, log_every=5, checkpoint_every=5, eval_every=1000, hidden_sizes=(32, 32)), str(tmp_path))
  assert "holds arrays of other shapes" in str(error.value)
  assert str(error.value).startswith(f"fields that differ from {tmp_path}/config.json: hidden_sizes: [64, 64] -> "
                                     f"[32, 32], ")  # leading with what differs
  assert "; the checkpoint " in str(error.value)
  # Another environment (or algorithm): the cause leads, in one short line.
  with pytest.raises(ConfigError) as error:
    trainer.train(tiny_ppo(20, log_every=5, checkpoint_every=5, eval_every=1000, env_name="Acrobot-v1"), str(tmp_path))
  assert str(error.value) == (f"{tmp_path} holds a run of ppo on {FAST}, not ppo on Acrobot-v1 (env_name: "
                              f"'{FAST}' -> 'Acrobot-v1'); resume it with its own config, or use another --workdir")
  assert {p: os.path.getmtime(tmp_path / p) for p in before} == before
  assert sorted(os.listdir(tmp_path / "checkpoints")) == listing


# The start's line (resume.announce): what a start trains, said before compiling.

def _program(total_timesteps, num_updates, steps_per_update):
  config = types.SimpleNamespace(algo="ppo", env_name="Breakout-MinAtar", total_timesteps=total_timesteps)
  sizes = types.SimpleNamespace(num_updates=num_updates, steps_per_update=steps_per_update)
  return types.SimpleNamespace(config=config, sizes=sizes, mesh=types.SimpleNamespace(size=1),
                               total_steps=num_updates * steps_per_update)


def _said(program):
  lines = []
  plan = resume.Plan(state=None, restored=None, history=[], changes={}, last_start=None, finished=False)
  resume.announce(plan, program, types.SimpleNamespace(path="runs/x"), 1, lines.append)
  return lines


@pytest.mark.unit
def test_a_budget_rounded_down_to_whole_updates_is_said():
  assert _said(_program(20_000, 2, 8_192)) == [
      "training ppo on Breakout-MinAtar: 2 updates of 8192 steps (16,384 steps: total_timesteps=20,000 rounded down to "
      "whole updates) on 1 device(s); workdir runs/x"]


@pytest.mark.unit
def test_a_whole_budget_says_only_what_is_trained():
  assert _said(_program(16_384, 2, 8_192)) == [
      "training ppo on Breakout-MinAtar: 2 updates of 8192 steps on 1 device(s); workdir runs/x"]
