"""Several processes (stand-ins for hosts) with CPU devices and gloo collectives form one mesh."""

import importlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from distrl import sharding
from distrl.runtime import programs, trainer
from distrl.runtime.checkpoint import Checkpoints
from tests.cli import records
from tests.runs import override, overwrite_64_bytes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "multiprocess_worker.py")

# One worker runs the module (--dist=loadgroup), so that its fixture's launch runs once.
pytestmark = [pytest.mark.skipif(jax.device_count() != 8, reason="compares 2 processes x 4 devices with 8 devices"),
              pytest.mark.xdist_group("distributed")]

# Every PPO run here, launched or in-process: tests/fast_env.py, the learning rate not annealed, so that runs of any
# length compile the same programs (loaded from the compilation cache after the first).
PPO = ["env_name=tests.fast_env:make", "anneal_lr=False"]
SMALL = {
    "ppo": ["num_envs=8", "num_steps=32", "total_timesteps=2560", "log_every=5", "eval_episodes=8"],
    "dqn": ["num_envs=8", "train_frequency=8", "buffer_size=800", "batch_size=32", "total_timesteps=1600",
            "learning_starts=400", "target_update_interval=320", "log_every=50", "eval_episodes=8"],
    "sac": ["num_envs=8", "train_frequency=8", "gradient_steps=2", "buffer_size=800", "batch_size=32",
            "hidden_sizes=(32, 32)", "total_timesteps=800", "learning_starts=400", "log_every=50", "eval_episodes=8"],
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
  return override(importlib.import_module(f"distrl.configs.{algo}").get_config(),
                  (PPO if algo == "ppo" else []) + list(overrides))


def test_two_processes_of_four_devices_equal_one_process_of_eight(tmp_path):
  """The replay family (rows and shared batches across processes; SAC's batch noise too), its whole learner: DQN and
  SAC, one after the other in the same two processes (one start of the pair for both), each equal in both processes
  and, to float rounding, to one process of 8 devices. PPO in the test below, from the launcher."""
  port, algos = free_port(), ["dqn", "sac"]

  def command(i):
    runs = [arg for algo in algos for arg in ["--", algo, str(tmp_path / algo), str(tmp_path / f"{algo}-{i}.npz"),
                                              *SMALL[algo]]]
    return [sys.executable, WORKER, str(port), "2", str(i), *runs[1:]]

  workers = [spawn(command(i), devices=4) for i in range(2)]
  for worker in workers:
    out, err = worker.communicate(timeout=300)
    assert worker.returncode == 0, err[-3000:]
  for algo in algos:
    learners = [np.load(tmp_path / f"{algo}-{i}.npz") for i in range(2)]
    reference = trainer.train(config_of(algo, SMALL[algo]), str(tmp_path / f"{algo}-reference"))
    expected = jax.tree.leaves(jax.device_get(reference.state.learner))
    assert len(learners[0].files) == len(expected), algo
    for i, name in enumerate(learners[0].files):
      np.testing.assert_array_equal(learners[0][name], learners[1][name], err_msg=algo)  # identical in both processes
      np.testing.assert_allclose(learners[0][name], expected[i], atol=2e-5, err_msg=algo)  # equal to 8 devices


def launch_two(workdir, *flags, heartbeat=60):
  port = free_port()
  return [spawn([sys.executable, "-m", "distrl.launch", "--config=ppo", *(f"--config.{f}" for f in PPO),
                 f"--workdir={workdir}", f"--coordinator_address=localhost:{port}", "--num_processes=2",
                 f"--process_id={i}", f"--heartbeat_timeout={heartbeat}", *flags], devices=4) for i in range(2)]


def _told(runs, outputs, workdir) -> str:
  """What each process of a failed launch said: exit status, stderr's end, and the other libraries' messages."""
  told = []
  for i, (run, (_, err)) in enumerate(zip(runs, outputs)):
    noise = workdir / f"noise-{i}.log"
    kept = noise.read_text()[-3000:] if noise.exists() else "(none)"
    told.append(f"--- process {i}: exit {run.returncode}\n{err[-2000:]}\n--- its noise-{i}.log:\n{kept}")
  return "\n".join(told)


# The launched 2-process run that the checkpoint tests start from: 10 updates, a record and a checkpoint every 5.
TEN = ["--config.num_envs=8", "--config.num_steps=32", "--config.log_every=5", "--config.checkpoint_every=5",
       "--config.eval_episodes=8"]


@pytest.fixture(scope="module")
def ten_updates(tmp_path_factory):
  """One launch of 2 processes x 4 devices, 10 updates (each test takes a copy of its workdir): (workdir, each
  process's (stdout, stderr))."""
  workdir = tmp_path_factory.mktemp("ten") / "run"
  runs = launch_two(workdir, *TEN, "--config.total_timesteps=2560")
  outputs = [run.communicate(timeout=300) for run in runs]
  assert all(run.returncode == 0 for run in runs), _told(runs, outputs, workdir)
  return workdir, outputs


def test_only_process_zero_logs_and_the_checkpoint_moves_between_process_counts(ten_updates, tmp_path):
  """Of a 2-process run, process 0 alone prints progress and writes records and events; its checkpoint holds what
  one process of 8 devices trains (to float rounding), resumes in one process of 8 devices, and that one's
  checkpoint resumes in two processes in turn."""
  workdir, outputs = tmp_path / "run", ten_updates[1]
  shutil.copytree(ten_updates[0], workdir)
  assert "step 2,560/2,560" in outputs[0][0]
  assert "step" not in outputs[1][0], "process 1 prints no progress"
  assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 2
  assert len(list((workdir / "tb").iterdir())) == 1  # one events file, process 0's
  # Two processes of four devices trained as one process of eight does, to float rounding.
  reference = trainer.train(config_of("ppo", SMALL["ppo"]), str(tmp_path / "reference"))
  saved = Checkpoints(str(workdir / "checkpoints"), keep=3, create=False).restore(10, like=reference.state)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(jax.device_get(saved.learner.params)),
                          jax.tree.leaves(jax.device_get(reference.state.learner.params))):
    np.testing.assert_allclose(a, b, atol=2e-5, err_msg=jax.tree_util.keystr(path))

  # The 2-process checkpoint resumes in one process of 8 devices, and training goes on.
  config = config_of("ppo", [flag.split(".", 1)[1] for flag in TEN] + ["total_timesteps=5120"])
  result = trainer.train(config, str(workdir))
  assert [h["update"] for h in result.history] == [15, 20]
  assert Checkpoints(str(workdir / "checkpoints"), keep=3).latest() == 20

  # ... and two processes resume from that shared checkpoint in turn.
  runs = launch_two(workdir, *TEN, "--config.total_timesteps=7680")  # 30 updates
  outputs = [run.communicate(timeout=300) for run in runs]
  assert all(run.returncode == 0 for run in runs), _told(runs, outputs, workdir)
  assert f"resuming {workdir} from update 20" in outputs[0][0]
  assert [json.loads(line)["update"] for line in (workdir / "metrics.jsonl").read_text().splitlines()] == \
      [5, 10, 15, 20, 25, 30]


def test_a_sweep_with_a_group_of_members_a_process_logs_what_one_process_of_eight_devices_logs(tmp_path):
  """member_groups=2 on 2 processes of 4 devices: each process trains its 2 of the 4 members alone, and the
  per-member metrics and evaluations, split over the processes, are gathered to process 0's log. They equal, to
  float rounding, the same sweep in one process of 8 devices and one group (every device trains every member), and
  the checkpoint holds every member."""
  workdir = tmp_path / "run"
  sweep = {"lr": (3e-3, 3e-4), "gamma": (0.9, 0.99)}
  flags = ["--config.num_envs=8", "--config.num_steps=32", "--config.log_every=5", "--config.eval_every=5",
           "--config.eval_episodes=8", "--config.total_timesteps=2560", "--config.member_groups=2",
           *[f"--config.sweep.{name}=({values[0]}, {values[1]})" for name, values in sweep.items()]]
  runs = launch_two(workdir, *flags)
  outputs = [run.communicate(timeout=300) for run in runs]
  assert all(run.returncode == 0 for run in runs), _told(runs, outputs, workdir)
  config = config_of("ppo", [flag.split(".", 1)[1] for flag in flags[:-3]])  # one group: every device, every member
  config.sweep = sweep
  reference = trainer.train(config, str(tmp_path / "reference"))
  logged = records(workdir)
  assert [r["update"] for r in logged] == [5, 10]
  for got, want in zip(logged, reference.history):
    assert got["loss/total"] == pytest.approx(want["loss/total"], rel=1e-5)
    for m in range(4):
      for name in ("train/episode_return", "eval/return"):
        assert got[f"{name}/member_{m}"] == pytest.approx(want[f"{name}/member_{m}"], rel=1e-5), (name, m)
  assert len({r[f"eval/return/member_{m}"] for r in logged for m in range(4)}) > 1  # members differ
  saved = Checkpoints(str(workdir / "checkpoints"), keep=3, create=False).restore(10, like=reference.state)
  for a, b in zip(jax.tree.leaves(jax.device_get(saved.learner.params)),
                  jax.tree.leaves(jax.device_get(reference.state.learner.params))):
    assert a.shape[0] == 4
    np.testing.assert_allclose(a, b, atol=2e-5)


def test_a_checkpoint_unlike_its_checksums_is_set_aside_once_and_both_processes_resume_from_the_one_before(
    ten_updates, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(ten_updates[0], workdir)
  directory = workdir / "checkpoints"
  changed = overwrite_64_bytes(str(directory / "10"))  # process 0 checks it, and both take its word

  runs = launch_two(workdir, *TEN, "--config.total_timesteps=3840")  # 15 updates
  outputs = [run.communicate(timeout=300) for run in runs]
  assert all(run.returncode == 0 for run in runs), _told(runs, outputs, workdir)
  [aside] = [name for name in os.listdir(directory) if name.startswith("10.corrupt-")]
  assert [line for line in outputs[0][0].splitlines() if "damaged" in line] == \
      [f"warning: checkpoint {directory}/10 is damaged ({changed} differs from its checksum); moved it to "
       f"{directory}/{aside} and trying the one before"]
  assert f"resuming {workdir} from update 5 " in outputs[0][0] and "damaged" not in outputs[1][0]
  assert sorted(os.listdir(directory)) == sorted(["5", "10", "15", aside])
  assert [r["update"] for r in records(workdir)] == [5, 10, 15]


def _wait_for_records(workdir, count, runs, timeout=180):
  deadline = time.time() + timeout
  while time.time() < deadline and all(run.poll() is None for run in runs) and len(records(workdir)) < count:
    time.sleep(0.05)
  assert len(records(workdir)) >= count, "the run never got that far"


def _finish(runs, timeout):
  """(returncode, stdout, stderr) of each process, and the seconds until the last ended (None: it hung)."""
  start, outputs = time.time(), []
  for run in runs:
    try:
      out, err = run.communicate(timeout=max(1.0, timeout - (time.time() - start)))
    except subprocess.TimeoutExpired:
      run.send_signal(signal.SIGCONT)
      run.kill()
      out, err = run.communicate()
      return None, outputs + [(run.returncode, out, err)]
    outputs.append((run.returncode, out, err))
  return time.time() - start, outputs


STOP_TRIALS = int(os.environ.get("DISTRL_STOP_TRIALS", "1"))  # per case; the stress runs use 7 and 10
LOCAL_SH = os.path.join(ROOT, "launch", "local.sh")


def _process(script, workdir, index):
  """The pid of process `index` of the run that launch/local.sh (`script`) started in `workdir` (its child, not the
  filter of its stderr that the process forked)."""
  pattern = f"distrl.launch .*--workdir={workdir} .*--process_id={index}( |$)"
  pids = subprocess.run(["pgrep", "-P", str(script.pid), "-f", pattern], capture_output=True, text=True).stdout.split()
  assert len(pids) == 1, f"process {index}: {pids}"
  return int(pids[0])


def test_a_stop_request_to_any_process_is_agreed_and_the_run_resumes_bit_exactly(tmp_path):
  """launch/local.sh, 2 processes x 4 devices: SIGTERM to process 1 only, to process 0 only, and to both up to two
  chunks apart (one process, chosen at random, then the script, which passes it to both: the script's own trap),
  STOP_TRIALS times each, one after the other in one workdir: every time both processes stop after the same update
  and save it, and the script exits 0 within a bound (a scheduler would otherwise take the job for failed); the next
  trial resumes from there.
  The last one's checkpoint equals, bit for bit, that of the same 2-process run never stopped (launched directly,
  up to the same update: the learning rate is constant, so a run's length changes none of its updates)."""
  flags = ["--config.num_envs=8", "--config.num_steps=32", "--config.log_every=2", "--config.eval_every=1000000",
           "--config.checkpoint_every=1000000", "--config.eval_episodes=8"]
  cases = ["process 1", "process 0", "both"] * STOP_TRIALS
  total = f"--config.total_timesteps={(len(cases) * 10 + 10) * 256}"
  env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
  rng = random.Random(0)
  workdir, saved = tmp_path / "stopped", 0
  for trial, case in enumerate(cases):
    env["DISTRL_PORT"] = str(free_port())
    script = subprocess.Popen(["bash", LOCAL_SH, "2", "4", "--config=ppo", *(f"--config.{f}" for f in PPO), *flags,
                               f"--workdir={workdir}", total], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    _wait_for_records(workdir, len(records(workdir)) + 2, [script])
    if case == "both":
      chunk = max(0.05, np.median(np.diff([r["time"] for r in records(workdir)][-3:])))
      os.kill(_process(script, workdir, rng.randrange(2)), signal.SIGTERM)
      time.sleep(rng.uniform(0, 2 * chunk))
      os.kill(script.pid, signal.SIGTERM)
    else:
      os.kill(_process(script, workdir, int(case[-1])), signal.SIGTERM)
    seconds, [(code, out, err)] = _finish([script], timeout=60)
    log = (workdir / "process-1.log").read_text()
    told = f"trial {trial} (SIGTERM to {case}): exit {code}\n{out}\n{err}\n--- process-1.log:\n{log[-2000:]}"
    assert seconds is not None, f"hung: {told}"
    assert code == 0, told  # local.sh exits with the first non-zero status of its processes
    assert "stopped by SIGTERM" in out and "Traceback" not in err + log, told
    assert int(out.split("saved update ")[1].split()[0]) > saved, told  # it went on from the last stop
    saved = int(out.split("saved update ")[1].split()[0])
    assert Checkpoints(str(workdir / "checkpoints"), keep=3, create=False).latest() == saved, told
  updates = [r["update"] for r in records(workdir)]
  assert updates == sorted(set(updates)) and updates[-1] == saved
  straight = tmp_path / "straight"
  reference = launch_two(straight, *flags, f"--config.total_timesteps={saved * 256}")
  assert all(code == 0 for code, _, _ in _finish(reference, timeout=300)[1])
  config = config_of("ppo", [f.split(".", 1)[1] for f in flags])
  like = programs.build(config, sharding.make_mesh()).state
  stopped = Checkpoints(str(workdir / "checkpoints"), keep=3, create=False).restore(saved, like=like)
  reference = Checkpoints(str(straight / "checkpoints"), keep=3, create=False).restore(saved, like=like)
  for a, b in zip(jax.tree.leaves(stopped), jax.tree.leaves(reference)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("case", ["kill process 1", "stop process 0"])
def test_a_lost_or_hung_process_ends_the_other_with_one_line_in_bounded_time(case, tmp_path):
  """A peer killed (-9), the coordinator (process 0) hung (SIGSTOP): the other process ends within
  --heartbeat_timeout (5 s here) plus a second or two, non-zero, with one line of ours on stderr. (A lost peer and a
  hung coordinator are the two ends: the survivor learns of a death from its connection, of a hang only from missed
  heartbeats, and the coordinator's loss takes the key-value store with it; the other two pairings passed alike.)"""
  runs = launch_two(tmp_path / "run", "--config.num_envs=8", "--config.num_steps=32", "--config.eval_episodes=8",
                    "--config.total_timesteps=50000000", "--config.log_every=1", heartbeat=5)
  _wait_for_records(tmp_path / "run", 2, runs)
  action, _, victim = case.split()[0], None, int(case[-1])
  runs[victim].send_signal(signal.SIGKILL if action == "kill" else signal.SIGSTOP)
  survivor = runs[1 - victim]
  start = time.time()
  try:
    _, err = survivor.communicate(timeout=60)
  except subprocess.TimeoutExpired:
    survivor.kill()
    pytest.fail(f"process {1 - victim} hung after process {victim} was {action}ed")
  finally:
    runs[victim].send_signal(signal.SIGCONT)
    runs[victim].kill()
    runs[victim].communicate()
  assert survivor.returncode != 0
  assert time.time() - start < 5 + 10
  assert err.startswith(f"distrl: error: process {1 - victim} of 2 stops:") and len(err.strip().splitlines()) == 1, err


