"""The two extension points: a user's own environment (`env_name=package.module:factory`) and a user's own
algorithm (`algo=package.module[:attribute]`), with every bad input a user can give them."""

import inspect
import json
import os
import subprocess
import sys
import types

import jax
import numpy as np
import pytest

from distrl.configs import ppo as ppo_config
from distrl import algorithms, architectures, envs, sharding
from distrl.runtime import programs, trainer
from distrl.errors import ConfigError, first_line
from examples import a2c, a2c_config
from tests.cli import ROOT, launch, records
from tests import user_code
from tests.runs import tiny_ppo


def _corridor_flags(devices):
  return ["--config.env_name=examples.corridor:make", f"--config.num_envs={8 * devices}", "--config.num_steps=64",
          "--config.lr=1e-3", f"--config.total_timesteps={30 * 64 * 8 * devices}", "--config.log_every=5",
          "--config.eval_every=30", "--config.eval_episodes=64"]


def test_the_example_environment_learns_from_the_command_line(tmp_path):
  """A uniformly random policy scores 0.53 per episode in the corridor (mean of 19,689 episodes; 0.59 std):
  it wanders into the goal after ~20 steps on average. Walking straight there scores ~0.97. A 64-episode greedy
  evaluation of the random policy has a standard error of ~0.07, so >= 0.9 is five of them above chance;
  30 updates (15,360 steps per device) reached 0.972-0.973 in training and 0.969-0.977 in evaluation for
  seeds 0-2 on 1 and on 8 devices (8 environments a device). One device here: what 8 devices change is tested on
  every algorithm (test_sharding.py) and by learning (test_learning.py)."""
  devices = 1
  run = launch(f"--workdir={tmp_path}", *_corridor_flags(devices), devices=devices)
  out, err = run.communicate(timeout=300)
  assert run.returncode == 0, err
  assert f"training ppo on examples.corridor:make: 30 updates of {512 * devices} steps on {devices} device(s)" in out
  history = records(tmp_path)
  assert history[0]["train/episode_return"] < 0.9  # it started out far from the goal
  assert history[-1]["train/episode_return"] >= 0.9 and history[-1]["eval/return"] >= 0.9, history[-1]


@pytest.mark.parametrize("factory, shape", [("dict_observations", (4,)), ("image_observations", (5, 5, 2))])
def test_pytree_and_image_observations_train(factory, shape, ppo_cfg, tmp_path):
  """Dict observations become one vector ({"flag", "pair", "position"}: 1 + 2 + 1 values, keys in sorted
  order); images keep their shape for a CNN. Either trains."""
  env = envs.make(f"tests.user_code:{factory}")
  assert env.observation_shape == shape
  obs, state = env.reset(jax.random.PRNGKey(0))
  obs, _, _, _, _, info = env.step(jax.random.PRNGKey(1), state, 1)  # position 1
  if factory == "dict_observations":
    np.testing.assert_array_equal(obs, [1.0, 1.0, 2.0, 1.0])  # flag, pair (1, 2), position
    np.testing.assert_array_equal(info["final_observation"], obs)
  n = jax.device_count()
  ppo_cfg.update(dict(env_name=f"tests.user_code:{factory}", num_envs=n, num_steps=8, num_minibatches=2,
                      total_timesteps=2 * n * 8, log_every=2, eval_episodes=n,
                      torso="cnn" if factory == "image_observations" else "mlp"))
  result = trainer.train(ppo_cfg, str(tmp_path))
  assert int(result.state.update) == 2 and np.isfinite(result.history[-1]["loss/total"])


BAD_ENVS = [
    ("tests.user_broken:make", {}, "cannot import tests.user_broken (ModuleNotFoundError: No module named "
                                   "'a_simulator_that_is_not_installed')"),
    ("no_such_package.envs:make", {}, "cannot import no_such_package.envs (ModuleNotFoundError"),
    ("tests.user_code:nothing", {}, "module tests.user_code has no attribute 'nothing'"),
    ("tests.user_code:not_callable", {}, "is not a function returning (env, env_params) or a gymnasium.Env but a int"),
    ("tests.user_code:raises", {}, "the factory raised RuntimeError: the simulator failed to start"),
    ("tests.user_code:not_a_pair", {},
     "the factory returned Walk, neither (env, env_params) of a JAX environment nor a gymnasium.Env"),
    ("tests.user_code:step_raises", {}, "step(key, state, action, params) failed: ValueError: the simulator's table "
                                        "has no row 7 (at tests/user_code.py:"),
    ("tests.user_code:corridor_of", {"lenght": 3}, "env_kwargs {'lenght': 3} do not fit tests.user_code:corridor_of: "
                                                   "got an unexpected keyword argument 'lenght'"),
    ("examples.corridor", {}, "names no factory: use package.module:factory, e.g. examples.corridor:make"),
    ("tests.user_code:old_api", {}, "step returns 5 values (obs, state, reward, done, info), the API of gymnax < 1.0"),
    ("tests.user_code:matrix_actions", {}, "is neither Discrete(n) nor a Box of one axis"),
    ("tests.user_code:no_observation", {}, "observations must be real-valued arrays or pytrees of them"),
    ("tests.user_code:no_time_limit", {}, "env_params (dict) has no max_steps_in_episode"),
    ("tests.user_code:time_limit_of", {"steps": 0}, "env_params.max_steps_in_episode=0 must be a positive whole"),
    ("tests.user_code:time_limit_of", {"steps": -5}, "env_params.max_steps_in_episode=-5 must be a positive whole"),
    ("tests.user_code:time_limit_of", {"steps": 2.5}, "env_params.max_steps_in_episode=2.5 must be a positive whole"),
    ("tests.user_code:no_actions", {}, "the action space is Discrete(0); it needs at least one action"),
    ("CartPole-v1", {"length": 3}, "env_kwargs {'length': 3} do not fit CartPole-v1"),
]


@pytest.mark.unit
@pytest.mark.parametrize("name, kwargs, message", BAD_ENVS, ids=[f"{n}-{k}" for n, k, _ in BAD_ENVS])
def test_a_bad_environment_is_one_clear_error_and_writes_nothing(name, kwargs, message, ppo_cfg, tmp_path):
  ppo_cfg.env_name, ppo_cfg.env_kwargs = name, kwargs
  with pytest.raises(ConfigError) as error:
    trainer.train(ppo_cfg, str(tmp_path / "run"))
  assert message in str(error.value)
  assert "\n" not in str(error.value)
  assert not (tmp_path / "run").exists()


@pytest.mark.unit
@pytest.mark.parametrize("algo, message", [
    ("tests.user_code:incomplete_algorithm", "is not an algorithm: it lacks update, act of the contract"),
    ("tests.user_broken", "algo='tests.user_broken': cannot import tests.user_broken (ModuleNotFoundError"),
    ("examples.a2c:nope", "module examples.a2c has no attribute 'nope'"),
    ("a3c", "algo='a3c' is not an algorithm; choose one of ppo, dqn, pqn, sac, td3, impala"),
    ("tests.user_code:update_without_sizes", "algo='tests.user_code:update_without_sizes': its update(state, config, "
                                             "env) cannot be called as the contract's update(state, *, config, env, "
                                             "sizes)"),
    ("tests.user_code:sizes_of_a_number", "sizes() returned int, not sizes with num_updates and steps_per_update"),
])
def test_a_bad_algorithm_is_one_clear_error_and_writes_nothing(algo, message, ppo_cfg, tmp_path):
  ppo_cfg.algo = algo
  with pytest.raises(ConfigError) as error:
    trainer.train(ppo_cfg, str(tmp_path / "run"))
  assert message in str(error.value)
  assert not (tmp_path / "run").exists()


def test_bad_user_code_from_the_command_line_is_one_line_and_a_nonzero_exit(tmp_path):
  for flags, message in [(["--config.env_name=tests.user_code:raises"], "the simulator failed to start"),
                         (["--config.algo=tests.user_code:incomplete_algorithm"], "lacks update, act")]:
    run = launch(f"--workdir={tmp_path / 'run'}", f"--config.num_envs={jax.device_count()}", *flags)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 1
    assert err.startswith("distrl: error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_an_environment_failing_mid_run_is_one_line_and_a_nonzero_exit(tmp_path):
  """A host callback of the environment raises in the first update: the exception, not JAX's traceback, which is kept
  in WORKDIR/noise.log with the traceback into the environment's code (the line names the file)."""
  run = launch(f"--workdir={tmp_path / 'run'}", f"--config.num_envs={jax.device_count()}",
               "--config.env_name=tests.user_code:fails_mid_run")
  out, err = run.communicate(timeout=120)
  assert run.returncode == 1, out
  kept = tmp_path / "run" / "noise.log"
  raising = inspect.getsourcelines(user_code._host_observation)
  line = raising[1] + next(i for i, text in enumerate(raising[0]) if "raise RuntimeError" in text)
  assert err == ("distrl: error: updates 1..1 failed: RuntimeError: the simulator lost its connection (at "
                 f"tests/user_code.py:{line}, in _host_observation); nothing was saved (no checkpoint was complete "
                 f"yet). Fix the cause and the same command starts the run again (other libraries' messages: "
                 f"{kept})\n")
  text = kept.read_text()
  assert "jax.pure_callback failed" in text and "tests/user_code.py" in text, text


@pytest.mark.unit
def test_a_shipped_config_pointed_at_another_algorithm_is_refused():
  config = ppo_config.get_config()
  config.algo = "dqn"
  with pytest.raises(ConfigError, match=r"algo='dqn' reads fields this config lacks \(adam_eps, batch_size, "
                                        r"buffer_size, distributional, double_dqn and \d+ more\); start from its own "
                                        r"config: --config=dqn"):
    programs.build(config, sharding.make_mesh())


@pytest.mark.unit
@pytest.mark.parametrize("widths", [(0,), (64, -1)])
def test_hidden_sizes_must_be_positive_widths(widths):
  config = ppo_config.get_config()
  config.hidden_sizes = widths
  with pytest.raises(ConfigError, match=r"must list positive layer widths"):
    programs.check_run_config(config, 1)


@pytest.mark.unit
def test_a_config_without_the_run_fields_is_refused():
  config = a2c_config.get_config()
  del config["eval_episodes"]
  with pytest.raises(ConfigError, match=r"the config lacks eval_episodes \(every config has algo, "):
    programs.build(config, sharding.make_mesh())


def test_an_algorithm_registered_by_name_or_named_by_path_is_the_same_algorithm(tmp_path, monkeypatch):
  monkeypatch.setattr(algorithms, "_REGISTRY", dict(algorithms._REGISTRY))  # the name leaves with the test
  n = jax.device_count()
  config = a2c_config.get_config()
  config.update(dict(num_envs=n, num_steps=4, total_timesteps=6 * n * 4, log_every=3, eval_episodes=n))
  by_path = trainer.train(config, str(tmp_path / "path"))
  algorithms.register("my-a2c", a2c)
  assert "my-a2c" in algorithms.names()
  config.algo = "my-a2c"
  by_name = trainer.train(config, str(tmp_path / "name"))
  for a, b in zip(jax.tree.leaves(by_path.state), jax.tree.leaves(by_name.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert by_path.history[-1]["loss/policy"] == by_name.history[-1]["loss/policy"]
  with pytest.raises(ConfigError, match="it lacks sizes, init, update, act of the contract"):
    algorithms.register("broken", object())


def test_an_architecture_registered_by_name_trains_and_resumes_through_the_trainer(tmp_path, monkeypatch, capsys):
  """A third architecture is a module and one registry line: one that hands the compiled architecture's runner out
  behind a wrapper trains and resumes through the unchanged trainer, which calls only the runner's interface (every
  update goes through the wrapper), says its RESUME_NOTE, and learns the compiled architecture's parameters."""
  compiled, calls = architectures.get("compiled"), []

  class Counting:
    def __init__(self, inner):
      self.inner = inner

    def __getattr__(self, name):
      return getattr(self.inner, name)

    def __call__(self, state, num_updates, totals=None):
      calls.append(num_updates)
      return self.inner(state, num_updates, totals)

  counting = types.SimpleNamespace(ENV_KIND="jax", HOOKS=(), FIELDS=(), RESUME_NOTE="counting: nothing to restore",
                                   check=compiled.check, mesh=compiled.mesh, evaluator=compiled.evaluator,
                                   runner=lambda **parts: Counting(compiled.runner(**parts)))
  monkeypatch.setattr(architectures, "_REGISTRY", dict(architectures._REGISTRY))
  architectures.register("counting", counting)
  config = tiny_ppo(8, anneal_lr=False)  # a constant step size: the first half's run is the whole run's first half
  reference = trainer.train(config, str(tmp_path / "compiled"))
  config.architecture, config.total_timesteps = "counting", config.total_timesteps // 2
  trainer.train(config, str(tmp_path / "counting"))
  config.total_timesteps *= 2
  capsys.readouterr()
  result = trainer.train(config, str(tmp_path / "counting"))
  assert "counting: nothing to restore" in capsys.readouterr().out
  assert sum(calls) == 8
  for a, b in zip(jax.tree.leaves(reference.state), jax.tree.leaves(result.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(ConfigError, match="architecture='broken' lacks ENV_KIND, HOOKS"):
    architectures.register("broken", types.SimpleNamespace())


@pytest.mark.unit
def test_an_optional_hook_that_cannot_be_called_as_its_protocol_says_is_refused():
  """algorithms.check reads the optional hooks too: a present `initial_memory` of the wrong signature is one line."""
  broken = types.SimpleNamespace(**{name: getattr(a2c, name) for name in algorithms.CONTRACT},
                                 initial_memory=lambda num: None)
  with pytest.raises(ConfigError, match=r"its initial_memory cannot be called as WithMemory.initial_memory"):
    algorithms.register("broken-memory", broken)
  assert "broken-memory" not in algorithms.names()


@pytest.fixture(scope="module")
def a2c_launched_elsewhere(tmp_path_factory):
  """The example algorithm's run from its own config file (`--config=.../examples/a2c_config.py`), launched from a
  directory that is not the repository's with nothing of it on PYTHONPATH, on every device the tests have: 300
  updates of 16 environments x 8 steps. -> (that directory, the workdir, the launch's exit status, stdout, stderr)."""
  elsewhere = tmp_path_factory.mktemp("elsewhere")
  n = jax.device_count()
  run = launch(f"--workdir={elsewhere / 'run'}", f"--config.eval_episodes={n}",
               f"--config.total_timesteps={300 * 8 * 16}", config="examples/a2c_config.py", cwd=str(elsewhere),
               env_extra={"PYTHONPATH": ""})
  out, err = run.communicate(timeout=300)
  return elsewhere, elsewhere / "run", run.returncode, out, err


@pytest.mark.xdist_group("a2c_launched_elsewhere")  # one worker runs the fixture's launch for both tests
def test_the_a2c_example_learns_cartpole_through_the_launcher(a2c_launched_elsewhere):
  """The example algorithm, from its own config file, on every device the tests have. A random policy lasts
  ~22 steps on CartPole; 300 updates of 16 environments x 8 steps (38,400 steps) reach a mean of 85 over
  updates 201-300 (the default run goes on to 500 by 500k steps); 50 is more than twice chance."""
  _, workdir, returncode, out, err = a2c_launched_elsewhere
  assert returncode == 0, err
  assert "training examples.a2c on CartPole-v1" in out
  history = records(workdir)
  assert [r["update"] for r in history] == [100, 200, 300]
  assert history[-1]["train/episode_return"] > 50, [r["train/episode_return"] for r in history]
  with open(workdir / "config.json") as f:
    assert json.load(f)["algo"] == "examples.a2c"


@pytest.mark.xdist_group("a2c_launched_elsewhere")
def test_a_config_file_finds_its_code_from_another_directory(a2c_launched_elsewhere):
  """`--config=.../examples/a2c_config.py` from a directory that is not the repository's, with nothing of it on
  PYTHONPATH: `examples.a2c` imports beside its config. `evaluate`, which has only the workdir, says in one line
  how to make it importable, and evaluates once it is."""
  elsewhere, workdir, returncode, _, err = a2c_launched_elsewhere
  assert returncode == 0, err
  outside = {"PYTHONPATH": ""}
  evaluate = [sys.executable, "-m", "distrl.evaluate", f"--workdir={workdir}", "--episodes=8"]
  told = subprocess.run(evaluate, cwd=elsewhere, env={**os.environ, **outside}, capture_output=True, text=True)
  assert told.returncode == 1 and told.stderr == (
      "distrl: error: algo='examples.a2c': cannot import examples.a2c (ModuleNotFoundError: No module named "
      "'examples'); run from the directory that holds examples, or add that directory to PYTHONPATH\n")
  assert subprocess.run(evaluate, cwd=ROOT, capture_output=True, text=True).returncode == 0


@pytest.mark.unit
def test_an_exceptions_first_line_in_one_line_messages():
  """What every one-line message quotes of an exception: its first line, its type's name where it has no text."""
  error = ValueError("  bad shape\n  Traceback detail\n")
  assert first_line(error) == "bad shape"
  assert first_line(error, with_type=True) == "ValueError: bad shape"
  assert first_line(KeyError()) == "KeyError"
  assert first_line(OSError(""), with_type=True) == "OSError"
