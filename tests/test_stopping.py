"""Stop requests (distrl/runtime/stopping.py): a run asked to stop saves the update it reached and exits 0, and the
same command resumes it bit for bit; signals at any moment of a run stop it cleanly, at once while it compiles."""

import os
import pathlib
import re
import signal
import time

import jax
import numpy as np
import pytest

from distrl.configs import dqn as dqn_config, ppo as ppo_config, rainbow as rainbow_config, sac as sac_config
from distrl.configs import td3 as td3_config
from distrl.runtime import loop, stopping, trainer
from distrl.runtime.checkpoint import Checkpoints
from examples import a2c_config
from tests.cli import launch, read_until, records
from tests.runs import FAST, override, tiny_ppo, tiny_ppo_flags


def _dqn(shipped=dqn_config):
  """Prioritised replay and 3-step returns from update 10; the target network moves every 20 updates; on
  tests/fast_env.py: 30 updates. `shipped`: the config module whose other fields it keeps."""
  config = shipped.get_config()
  config.update(dict(env_name=FAST, num_envs=8, train_frequency=8, buffer_size=800, batch_size=32, learning_starts=80,
                     target_update_interval=160, prioritized=True, n_step=3, total_timesteps=8 * 30, log_every=10,
                     checkpoint_every=1000, eval_every=1000, eval_episodes=8))
  return config


def _a2c():
  n = jax.device_count()
  config = a2c_config.get_config()
  config.update(dict(num_envs=n, num_steps=4, total_timesteps=12 * n * 4, log_every=4, checkpoint_every=1000,
                     eval_every=1000, eval_episodes=n))
  return config


def _off_policy(algo):
  """Learning from iteration 10, 2 gradient steps an iteration (TD3's actor every third), on tests/fast_env.py with
  actions in [-2, 2]: 30 iterations."""
  config = {"sac": sac_config, "td3": td3_config}[algo].get_config()
  config.env_name, config.env_kwargs = FAST, {"continuous": True}
  config.update(dict(num_envs=8, train_frequency=8, gradient_steps=2, batch_size=32, buffer_size=800,
                     learning_starts=80, hidden_sizes=(32, 32), total_timesteps=8 * 30, log_every=10,
                     checkpoint_every=1000, eval_every=1000, eval_episodes=8))
  if algo == "td3":
    config.policy_frequency = 3
  return config


# Each algorithm's whole state resumes: PPO's; DQN's replay buffer, priorities and their running maximum, sampling
# key and target network, with values, with C51's distributions, or as Rainbow (noisy heads, whose noise derives from
# the state's keys); SAC's and TD3's twin critics, targets and temperature; and that of an algorithm from outside
# distrl (examples/a2c.py).
STOPPED = {"ppo": (lambda: tiny_ppo(12, log_every=4, checkpoint_every=1000, eval_every=1000), 6),
           "dqn": (_dqn, 23), "rainbow": (lambda: override(_dqn(rainbow_config), ["num_atoms=11"]), 23),  # C51 in it
           "sac": (lambda: _off_policy("sac"), 17), "td3": (lambda: _off_policy("td3"), 17),
           "a2c": (_a2c, 7)}


@pytest.mark.parametrize("algo", list(STOPPED))
def test_a_stop_request_saves_where_the_run_is_and_the_resumed_run_ends_bit_identical(algo, tmp_path, monkeypatch,
                                                                                     capsys):
  """In-process, the request arriving after update `stop_at` (inside a log interval): the run saves that update and
  returns; run again, it resumes from there and ends as the run never stopped, in every bit of its state."""
  make, stop_at = STOPPED[algo]
  monkeypatch.setattr(loop, "MAX_CHUNK_SECONDS", 0.0)  # one update a call: the request lands after update stop_at
  agree, asked = stopping.agree, []

  def request_after(reason, chunk):
    asked.append(chunk)
    if len(asked) == stop_at + 1:
      stopping.REQUEST.request("a test")
    return agree(stopping.REQUEST.reason, chunk)

  monkeypatch.setattr(stopping, "agree", request_after)
  stopped = trainer.train(make(), str(tmp_path / "run"))
  monkeypatch.undo()
  assert stopped.stopped and int(stopped.state.update) == stop_at
  assert f"stopped by a test: saved update {stop_at} to {tmp_path}/run/checkpoints" in capsys.readouterr().out
  assert Checkpoints(str(tmp_path / "run" / "checkpoints"), keep=3, create=False).latest() == stop_at

  resumed = trainer.train(make(), str(tmp_path / "run"))
  assert f"resuming {tmp_path}/run from update {stop_at}" in capsys.readouterr().out
  reference = trainer.train(make(), str(tmp_path / "reference"))
  assert not resumed.stopped and int(resumed.state.update) == int(reference.state.update)
  state, expected = jax.device_get((resumed.state, reference.state))
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(state), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
  if algo in ("sac", "td3"):  # it trained, and the target critic lags the critic
    assert "loss/critic" in reference.history[-1]
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.learner.critic.params),
                                                        jax.tree.leaves(state.learner.target_critic)))
  if algo in ("dqn", "rainbow"):
    assert "loss/total" in reference.history[-1]  # it trained
    # The target network (last moved at update 20) lags the online network: restoring it mattered.
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.learner.params),
                                                        jax.tree.leaves(state.learner.target_params)))


def test_sigterm_from_the_command_line_saves_and_the_same_command_resumes_bit_identical(tmp_path):
  # tiny_ppo's 40 updates, a record each: long enough to interrupt the run in its middle (the stop comes at the end
  # of the call after the third record, one update a call here); checkpoints only at the stop and at the end.
  fields = dict(log_every=1, checkpoint_every=10**6, eval_every=10**6)
  sizes = tiny_ppo_flags(40, **fields)
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
  reference = trainer.train(tiny_ppo(40, **fields), str(tmp_path / "reference"))
  checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), keep=3)
  final = checkpoints.restore(40, like=reference.state)
  for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(reference.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_signals_at_every_moment_stop_cleanly_and_lose_nothing(tmp_path):
  """Ctrl-C while compiling, SIGHUP (the terminal closed) inside a long log interval, SIGTERM while a resume
  compiles, stdout closed by `| head`, and Ctrl-C pressed again and again while the final checkpoint saves."""
  # tiny_ppo's programs, run for ever (10^6 updates); no evaluation, checkpoints only where the run stops.
  flags = [f"--workdir={tmp_path}", *tiny_ppo_flags(10**6, eval_every=10**7, checkpoint_every=10**7)]
  checkpoints = lambda: Checkpoints(str(tmp_path / "checkpoints"), keep=3, create=False).saved()

  run = launch(*flags, "--config.log_every=1000000", "--compilation_cache=")  # one log interval for the whole run
  read_until(run, "training ppo")
  run.send_signal(signal.SIGINT)  # while compiling (seconds without a compilation cache), and again
  time.sleep(0.5)
  run.send_signal(signal.SIGINT)
  out, err = run.communicate(timeout=120)
  assert run.returncode == 0 and "Traceback" not in err, err
  assert re.search(r"stopped by SIGINT while (starting|compiling): nothing trained yet, nothing lost", out), out
  assert checkpoints() == []
  # The second SIGINT finds the run stopping, or already gone.
  assert err in ("", "distrl: SIGINT: already stopping (SIGINT); the run stops before its first update\n")

  run = launch(*flags, "--config.log_every=1000000")
  read_until(run, "compiled")
  time.sleep(2.0)
  start = time.time()
  run.send_signal(signal.SIGHUP)  # inside the interval: served within MAX_CHUNK_SECONDS, not at its end
  out, err = run.communicate(timeout=120)
  assert run.returncode == 0 and "Traceback" not in err, err
  assert time.time() - start < loop.MAX_CHUNK_SECONDS + 15
  (record,) = records(tmp_path)  # the record of the updates done, at the stop
  assert f"stopped by SIGHUP: saved update {record['update']} to {tmp_path}/checkpoints" in out
  assert checkpoints() == [record["update"]]
  stopped_at = record["update"]

  run = launch(*flags, "--config.log_every=1000000", "--compilation_cache=")
  read_until(run, "resuming")
  run.send_signal(signal.SIGTERM)  # while the resume compiles
  out, err = run.communicate(timeout=120)
  assert run.returncode == 0 and "Traceback" not in err, err
  assert re.search(rf"stopped by SIGTERM while (starting|compiling): nothing trained since update {stopped_at},", out)
  assert checkpoints() == [stopped_at]

  run = launch(*flags, "--config.log_every=2")
  read_until(run, f"[ppo {FAST}]")  # a reader that reads a progress line, then goes away: `... | head`
  run.stdout.close()
  _, err = run.communicate(timeout=120)
  assert run.returncode == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
  last = records(tmp_path)[-1]["update"]
  assert checkpoints()[-1] == last > stopped_at
  assert "distrl: stdout was closed" in err and f"stopped by closed stdout: saved update {last}" in err, err

  run = launch(*flags, "--config.log_every=2")
  read_until(run, f"[ppo {FAST}]")
  for _ in range(40):  # Ctrl-C, then again and again while it saves
    run.send_signal(signal.SIGINT)
    time.sleep(0.05)
  out, err = run.communicate(timeout=120)
  assert run.returncode == 0 and "Traceback" not in err, err
  final = records(tmp_path)[-1]["update"]
  assert f"stopped by SIGINT: saved update {final}" in out and checkpoints()[-1] == final
  assert not [name for name in os.listdir(tmp_path / "checkpoints") if "tmp" in name], "no save cut short"
  assert "distrl: SIGINT: already stopping" in err or "distrl: SIGINT: still saving" in err
  updates = [r["update"] for r in records(tmp_path)]
  assert updates == sorted(set(updates))


# A run whose compile takes a minute or more (tests/slow_compile.py), with no compilation cache to load it from.
DEEP = ["--config.env_name=tests.slow_compile:deep_walk", "--config.num_envs=8", "--config.num_steps=16",
        "--config.eval_episodes=8", "--config.log_every=2", "--config.checkpoint_every=1000"]
PROGRESS = "compiling the update loop and the evaluation: "


def _interrupt_the_compile(workdir, *flags) -> tuple[list[str], str, float]:
  """Launches a run of depth 2,000 (a compile of 70 s on one device here, minutes on 8) and sends SIGINT at its
  first progress line, 10 s into the compile (stdout is no terminal); returns its lines of stdout, its stderr, and
  how long it took to exit after the signal."""
  run = launch(f"--workdir={workdir}", *DEEP, "--config.env_kwargs.depth=2000", "--compilation_cache=", *flags)
  lines = read_until(run, PROGRESS)
  asked = time.time()
  run.send_signal(signal.SIGINT)
  out, err = run.communicate(timeout=600)
  assert run.returncode == 0, err
  return lines + out.splitlines(keepends=True), err, time.time() - asked


def _files(directory) -> dict[str, bytes]:
  """Every file under `directory` (its path there: its bytes) but the lock, which names the latest start."""
  return {os.path.relpath(os.path.join(parent, name), directory): pathlib.Path(parent, name).read_bytes()
          for parent, _, names in os.walk(directory) for name in names if name != ".lock"}


def _at_ten_seconds(line: str) -> bool:
  """The progress line a compile shows at 10 s, its seconds as they were when it was drawn (11 on a loaded machine)."""
  return re.fullmatch(re.escape(PROGRESS) + r"1[0-4]s\n", line) is not None


def test_ctrl_c_during_a_long_compile_ends_the_run_at_once_and_leaves_no_workdir(tmp_path):
  """Nothing trained, nothing lost: one line and exit 0 within seconds, not at the end of the compile; the workdir
  the start made is gone again."""
  lines, err, took = _interrupt_the_compile(tmp_path / "run", "--config.total_timesteps=1024")
  assert _at_ten_seconds(lines[1]) and lines[2:] == ["stopped by SIGINT while compiling: nothing trained yet, nothing "
                                                     "lost\n"], lines
  assert err == "" and took < 5, (err, took)
  assert not (tmp_path / "run").exists()


def test_ctrl_c_during_the_compile_of_a_resumed_run_leaves_its_checkpoint_and_records_as_they_were(tmp_path):
  """A resume recompiles (here, at a depth that compiles slowly): stopped there, nothing was trained since the
  checkpoint, and every file of the run is as it was before the start."""
  workdir = tmp_path / "run"
  # The run to resume, in-process: the command line's config (DEEP), at depth 1 (a quick compile), 4 updates.
  trainer.train(override(ppo_config.get_config(), [flag.removeprefix("--config.") for flag in DEEP] +
                         ["total_timesteps=512"]), str(workdir))
  before = _files(workdir)
  assert "checkpoints/4/_CHECKPOINT_METADATA" in before and "run.json" in before  # the files compared

  lines, err, took = _interrupt_the_compile(workdir, "--config.total_timesteps=1024")
  assert lines[0].startswith(f"resuming {workdir} from update 4 ") and _at_ten_seconds(lines[-2]) and lines[-1] == \
      "stopped by SIGINT while compiling: nothing trained since update 4, nothing lost\n", lines
  assert err == "" and took < 5, (err, took)
  assert _files(workdir) == before
