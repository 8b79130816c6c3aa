"""distrl as a Python library (distrl/library.py) and a policy exported out of distrl (distrl/policy.py, the command
distrl/export.py): configs read and checked as the command line reads them, a run trained, stopped and resumed from
Python, its greedy policy loaded, and the exported policy acting as the loaded one in a process without distrl."""

import json
import os
import re
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import distrl
from distrl import policy as distrl_policy
from distrl.runtime import loop, stopping
from tests.cli import ROOT
from tests.runs import tiny_ppo_fields

pytestmark = pytest.mark.xdist_group("library")

# The tests' tiny PPO (`tests.runs.tiny_ppo`: tests/fast_env.py, observations of 2 numbers, 2 actions) of 12 updates,
# smaller layers; with a GRU's memory, 4 updates of one minibatch (one environment a device splits no further).
TINY = tiny_ppo_fields(12, hidden_sizes=(16, 16))
RECURRENT = tiny_ppo_fields(4, hidden_sizes=(16, 16), recurrent="gru", recurrent_size=8, num_minibatches=1)


def _train(workdir, **fields):
  return distrl.train(distrl.get_config("ppo", **fields), workdir=str(workdir), devices=jax.devices()[:1])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """The tiny run, trained to its end through the library: (workdir, result)."""
  workdir = tmp_path_factory.mktemp("library") / "run"
  return str(workdir), _train(workdir, **TINY)


@pytest.fixture(scope="module")
def recurrent_run(tmp_path_factory):
  """The tiny run with a GRU's memory."""
  workdir = tmp_path_factory.mktemp("library") / "recurrent"
  _train(workdir, **RECURRENT)
  return str(workdir)


@pytest.mark.unit
def test_get_config_takes_the_names_and_overrides_of_the_command_line():
  config = distrl.get_config("ppo:Acrobot-v1", total_timesteps=40_000, lr=1e-3, hidden_sizes=[32, 32], anneal_lr=False,
                             env_kwargs={"size": 3}, num_steps=256.0)
  assert (config.env_name, config.total_timesteps, config.lr, config.hidden_sizes) == ("Acrobot-v1", 40_000, 1e-3,
                                                                                        (32, 32))
  assert (config.anneal_lr, config.env_kwargs.to_dict(), config.num_steps) == (False, {"size": 3}, 256)
  assert distrl.get_config(os.path.join(ROOT, "configs", "dqn.py") + ":Acrobot-v1").algo == "dqn"
  with pytest.raises(AttributeError):  # locked, as the launcher's: a field it lacks is a typo
    config.lrr = 1e-3


# The launcher's lines for the same mistakes (tests/test_launch.py runs them from the command line).
@pytest.mark.unit
@pytest.mark.parametrize("name, overrides, message", [
    ("ppo", {"num_env": 8}, "unknown config field 'num_env': did you mean 'num_envs'?"),
    ("sac", {"recurrent": True}, "unknown config field 'recurrent' (a field of the configs of impala, ppo, pqn)"),
    ("ppo", {"lr": "fast"}, "flag --config.lr=fast: could not convert string to float: 'fast'"),
    ("ppo:Pong", {}, "unknown preset 'Pong' for --config=ppo"),
    ("config/ppo.py", {}, "config 'config/ppo.py' is neither a file nor one of distrl's configs"),
])
def test_a_wrong_name_or_override_raises_the_launchers_line(name, overrides, message):
  with pytest.raises(distrl.ConfigError) as error:
    distrl.get_config(name, **overrides)
  assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.unit
def test_a_config_that_cannot_run_raises_and_leaves_no_workdir(tmp_path):
  config = distrl.get_config("ppo", num_envs=8, num_minibatches=3)
  with pytest.raises(distrl.ConfigError, match="num_steps=128 does not divide evenly over num_minibatches=3"):
    distrl.train(config, workdir=str(tmp_path / "run"), devices=jax.devices()[:1])
  assert not (tmp_path / "run").exists()
  with pytest.raises(distrl.ConfigError, match=f"no run in --workdir={tmp_path}"):
    distrl.load_policy(str(tmp_path))


def test_train_returns_the_state_history_and_files_and_a_stop_resumes_to_the_same_end(run, tmp_path, monkeypatch,
                                                                                       capsys):
  """The request arrives after update 5 (one update a call): train returns stopped with update 5 saved; train again
  resumes there and ends where the uninterrupted run (the fixture's) ended, in every bit of the state."""
  workdir, whole = run
  assert not whole.stopped and int(whole.state.update) == 12
  assert [r["update"] for r in whole.history] == [2, 4, 6, 8, 10, 12]
  assert whole.checkpoint == os.path.join(workdir, "checkpoints", "12") and os.path.isdir(whole.checkpoint)
  assert whole.best == os.path.join(workdir, "best") and whole.metrics == os.path.join(workdir, "metrics.jsonl")

  monkeypatch.setattr(loop, "MAX_CHUNK_SECONDS", 0.0)
  agree, calls = stopping.agree, []

  def request_after(reason, chunk):
    calls.append(chunk)
    if len(calls) == 6:
      stopping.REQUEST.request("a test")
    return agree(stopping.REQUEST.reason, chunk)

  monkeypatch.setattr(stopping, "agree", request_after)
  stopped = _train(tmp_path / "run", **TINY)
  monkeypatch.undo()
  assert stopped.stopped and int(stopped.state.update) == 5
  assert stopped.checkpoint == str(tmp_path / "run" / "checkpoints" / "5")
  resumed = _train(tmp_path / "run", **TINY)
  out = capsys.readouterr().out
  assert f"resuming {tmp_path}/run from update 5" in out
  assert "\r" not in out and "\x1b" not in out  # not a terminal (a notebook, a log): plain lines
  assert not resumed.stopped and [r["update"] for r in resumed.history] == [6, 8, 10, 12]
  for a, b in zip(jax.tree.leaves(jax.device_get(resumed.state)), jax.tree.leaves(jax.device_get(whole.state))):
    np.testing.assert_array_equal(a, b)


# Run in a process that never imports distrl: the exported policies with JAX and numpy alone, as README.md shows.
_LOAD = textwrap.dedent("""
    import sys
    import jax
    import numpy as np

    out, inputs = sys.argv[1], np.load(sys.argv[2])
    exported = jax.export.deserialize(open(f"{out}/plain/policy.jax", "rb").read())
    params = dict(np.load(f"{out}/plain/params.npz"))
    actions = {"plain": exported.call(params, inputs["obs"])}

    exported = jax.export.deserialize(open(f"{out}/recurrent/policy.jax", "rb").read())
    initial = jax.export.deserialize(open(f"{out}/recurrent/initial_memory.jax", "rb").read())
    params = dict(np.load(f"{out}/recurrent/params.npz"))
    memory = initial.call(inputs["obs"])
    actions["first"], memory = exported.call(params, inputs["obs"], memory)
    actions["second"], memory = exported.call(params, inputs["next"], memory)
    assert "distrl" not in sys.modules, "the policy loaded distrl"
    np.savez(f"{out}/actions.npz", memory=memory, platforms=np.array(exported.platforms),
             **{k: np.asarray(v) for k, v in actions.items()})
""")


def test_the_exported_policy_acts_as_load_policy_in_a_process_without_distrl(run, recurrent_run, tmp_path):
  rng = np.random.default_rng(0)
  obs, after = (rng.uniform(-1, 1, (5, 2)).astype(np.float32) for _ in range(2))
  plain, recurrent = distrl.load_policy(run[0]), distrl.load_policy(recurrent_run)
  assert not plain.has_memory and recurrent.has_memory
  expected = {"plain": plain(obs), "first": recurrent(obs), "second": recurrent(after)}
  memory = np.asarray(recurrent.memory)  # a GRU's: one array (B, recurrent_size)
  for name, workdir in (("plain", run[0]), ("recurrent", recurrent_run)):
    distrl_policy.write(str(tmp_path / name), distrl_policy.export(distrl_policy.restore(workdir), ("cpu", "cuda")))
  with open(tmp_path / "plain" / "about.json") as f:
    about = json.load(f)
  assert (about["update"], about["observation_shape"], about["memory"]) == (12, [2], False)
  np.savez(tmp_path / "inputs.npz", obs=obs, next=after)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  done = subprocess.run([sys.executable, "-c", _LOAD, str(tmp_path), str(tmp_path / "inputs.npz")], cwd=tmp_path,
                        env=env, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  got = np.load(tmp_path / "actions.npz")
  assert list(got["platforms"]) == ["cpu", "cuda"]
  for name, actions in expected.items():
    np.testing.assert_array_equal(got[name], actions, err_msg=name)
  np.testing.assert_allclose(got["memory"], memory, rtol=1e-6, atol=1e-6)

  # The loaded policy's memory goes on row by row; reset(done) starts only the rows that ended.
  recurrent.reset(np.array([True, False, False, True, False]))
  fresh = distrl.load_policy(recurrent_run)
  fresh(obs)
  reset = np.asarray(recurrent.memory)
  np.testing.assert_array_equal(reset[[0, 3]], np.zeros_like(memory[[0, 3]]))
  np.testing.assert_array_equal(reset[[1, 2, 4]], memory[[1, 2, 4]])
  assert not np.array_equal(np.asarray(fresh.memory), memory)
  # What it cannot take is one line: a mask of another length or a scalar, observations that are not numbers.
  for done, wrong in (([True, False], "(2,) (bool)"), (True, "() (bool)")):
    with pytest.raises(distrl.ConfigError, match=re.escape(f"takes booleans (B,) for the 5 rows of the last call, "
                                                           f"not of shape {wrong}")):
      recurrent.reset(done)
  with pytest.raises(distrl.ConfigError, match="observations 'hello' are not numbers of float32"):
    plain("hello")


def test_the_export_command_refuses_wrong_input_in_one_line(run, tmp_path):
  """No workdir, a workdir without checkpoints, an --out that exists (left as it was): one line and exit 1."""
  (tmp_path / "taken").write_text("a user's file")
  (tmp_path / "unsaved").mkdir()
  with open(os.path.join(run[0], "config.json")) as f, open(tmp_path / "unsaved" / "config.json", "w") as copy:
    copy.write(f.read())
  cases = [([f"--workdir={tmp_path / 'nope'}", f"--out={tmp_path / 'p1'}"], f"no run in --workdir={tmp_path / 'nope'}"),
           ([f"--workdir={run[0]}", f"--out={tmp_path / 'taken'}"], f"--out={tmp_path / 'taken'} exists"),
           ([f"--workdir={tmp_path / 'unsaved'}", f"--out={tmp_path / 'p2'}"],
            f"no checkpoint in {tmp_path / 'unsaved' / 'checkpoints'}")]
  for flags, message in cases:
    done = subprocess.run([sys.executable, "-m", "distrl.export", *flags], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and done.stderr.startswith(f"distrl: error: {message}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
  assert (tmp_path / "taken").read_text() == "a user's file"
  assert not (tmp_path / "p1").exists() and not (tmp_path / "p2").exists()
