"""The host architecture (distrl/architectures/host/) and its environments (distrl/envs/host.py): the batch the learner
receives, the actor's lag, envpool and gymnasium, a user's gymnasium factory, what is refused, and learning."""

import functools
import inspect
import json
import os
import re
import signal
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distrl import envs, sharding
from distrl.errors import ConfigError, RunFailed
from distrl.architectures.host import learner as host_learner
from distrl.envs import host as host_envs
from distrl.runtime import programs, trainer
from distrl.configs import ppo as ppo_config
from distrl.ppo import learner as ppo
from distrl.rl import actor_critic, rollout_learner
from tests import user_code


def _config(**fields):
  """PPO with one environment a device; on the host architecture where `fields` name an environment (a host one)."""
  config = ppo_config.get_config()
  config.architecture = "host" if "env_name" in fields else "compiled"
  config.num_envs = jax.device_count()
  config.num_steps, config.num_minibatches, config.update_epochs = 32, 4, 2
  config.total_timesteps = 100 * config.num_envs * config.num_steps
  config.update(fields)
  return config


def _jax_as_host(program):
  """The program's JAX environment behind the host path's interface, from its initial states: a runner that learns
  from rollouts a host actor collects on the very environments the compiled update steps."""
  env, actors = program.env, program.state.actors
  spec = host_envs.Spec(name=env.name, observation_shape=env.observation_shape, action_space=env.action_space,
                        max_steps=env.max_steps,
                        open_batch=lambda num, seed: host_envs.JaxBatch(env, actors.env_state, actors.obs))
  return host_learner.HostRunner(program.config, program.algorithm, program.sizes, spec, program.mesh, program.state)


def test_host_rollouts_learn_what_the_compiled_update_learns():
  """With lag 0, an actor stepping the JAX environment from the host records what the compiled rollout records (the
  same keys, policy and environments), field by field, and the learner ends each update with the same parameters."""
  config = _config(actor_lag=0)
  program = programs.build(config, sharding.make_mesh())
  compiled, host = program.runner, _jax_as_host(program)
  try:
    host_state = host(host.put(jax.tree.map(jnp.copy, program.state)), 3).state  # donated: a copy
    first = host.actor.versions[:3]
  finally:
    host.close()
  assert first == [(0, 0), (1, 1), (2, 2)]
  compiled_state = compiled(compiled.put(program.state), 3).state
  np.testing.assert_allclose(np.asarray(host_state.actors.obs), np.asarray(compiled_state.actors.obs), atol=1e-6)
  np.testing.assert_array_equal(np.asarray(host_state.actors.key), np.asarray(compiled_state.actors.key))
  for ours, theirs in zip(jax.tree.leaves(host_state.learner.params), jax.tree.leaves(compiled_state.learner.params)):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-4, atol=1e-5)
  assert int(host_state.update) == 3


def test_the_recorded_batch_equals_the_compiled_rollout_field_by_field():
  config = _config(actor_lag=0)
  program = programs.build(config, sharding.make_mesh())
  host = _jax_as_host(program)
  try:
    host._start(host.put(program.state))
    rollout = host.actor.next()
  finally:
    host.close()
  sampler = functools.partial(ppo.behaviour, program.state.learner, config=config, env=program.env)
  expected = jax.jit(lambda s: rollout_learner.collect(s, sampler, config=config, env=program.env))(program.state)
  steps, want = rollout.steps, jax.tree.map(np.asarray, expected.steps)
  assert want.episode_end.sum() > 0  # episodes ended inside the rollout: the resets are compared too
  for field in ("obs", "action", "reward", "terminated", "episode_end", "final_obs"):
    np.testing.assert_allclose(getattr(steps, field), getattr(want, field), atol=1e-6, err_msg=field)
  np.testing.assert_allclose(steps.extras, want.extras, atol=1e-5, err_msg="log_prob")
  ended = want.episode_end.astype(bool)
  np.testing.assert_array_equal(steps.counted, ended)
  np.testing.assert_allclose(steps.episode_return[ended], want.episode_return[ended])
  np.testing.assert_array_equal(steps.episode_length[ended], want.episode_length[ended])
  np.testing.assert_allclose(rollout.last_obs, np.asarray(expected.actors.obs), atol=1e-6)


@pytest.mark.parametrize("algo, lag, expected", [("ppo", 1, [(0, 0), (1, 0), (2, 1), (3, 2), (4, 3)]),
                                                 ("impala", 3, [(0, 0), (1, 0), (2, 0), (3, 0), (4, 1)])])
def test_acting_runs_lag_updates_behind_and_is_reproducible(algo, lag, expected):
  """actor_lag=L: rollout u acts with the parameters of update max(first, u - L), never older; two runs of the same
  config learn the same parameters to the bit, however the threads interleave."""
  config = _config(env_name="gymnasium:CartPole-v1", actor_lag=lag)
  if algo == "impala":
    from distrl.configs import impala as impala_config
    config = impala_config.get_config()
    config.update(env_name="gymnasium:CartPole-v1", architecture="host", actor_lag=lag, num_envs=jax.device_count(),
                  num_minibatches=2)

  program = programs.build(config, sharding.make_mesh())  # built once: the runs differ in their threads alone
  runner = program.runner

  def run():
    try:  # a new actor thread and environments, from the initial state (a copy: the runner donates it)
      state = runner(runner.put(jax.tree.map(jnp.copy, program.state)), 6).state
      versions = list(runner.actor.versions)
    finally:
      runner.close()
    return state, versions

  try:
    (a, versions), (b, _) = run(), run()
  finally:
    program.close()
  assert versions[:5] == expected
  assert all(0 <= update - version <= lag for update, version in versions)
  for x, y in zip(jax.tree.leaves(a.learner), jax.tree.leaves(b.learner)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_the_learner_on_a_subset_of_devices_learns_what_every_device_learns():
  """learner_devices=(1, 2): the learner's mesh is those local devices (the actor on device 0); a run learns the same
  parameters as on every device, as the compiled path's results do not depend on the device count."""
  if jax.device_count() < 4:
    pytest.skip("needs several devices: run with the default 8 emulated devices")

  def run(**fields):
    program = programs.build(_config(env_name="gymnasium:CartPole-v1", num_envs=8, **fields), sharding.make_mesh())
    try:
      state = program.runner(program.runner.put(program.state), 3).state
    finally:
      program.close()
    return program.mesh, state

  (mesh, subset), (everywhere, reference) = run(learner_devices=(1, 2)), run()
  assert [d.id for d in mesh.devices.flat] == [1, 2] and everywhere.size == jax.device_count()
  assert {d.id for leaf in jax.tree.leaves(subset.learner) for d in leaf.sharding.device_set} == {1, 2}
  for x, y in zip(jax.tree.leaves(subset.learner), jax.tree.leaves(reference.learner)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


@pytest.mark.unit
def test_envpool_and_gymnasium_batches_reset_in_the_same_step():
  """Both suites give the observation to act on next and, where an episode ended, the one before its reset, with the
  episode's return; envpool's Atari counts a game over, not a lost life, as an episode for the statistics."""
  for name in ("envpool:CartPole-v1", "gymnasium:CartPole-v1"):
    spec = envs.make(name, {})
    assert spec.kind == "host" and spec.observation_shape == (4,) and spec.num_actions == 2 and spec.max_steps == 500
    batch = spec.open(4, seed=3)
    batch.reset()
    ends, length = 0, np.zeros(4, int)
    for _ in range(60):
      stepped = batch.step(np.ones(4, np.int32))  # always right: CartPole falls within ~10 steps
      length += 1
      ended = stepped.episode_end
      assert np.all(stepped.terminated == ended)
      np.testing.assert_array_equal(stepped.episode_length[ended], length[ended])
      np.testing.assert_array_equal(stepped.episode_return[ended], length[ended])  # reward 1 a step
      assert np.all(np.abs(stepped.final_obs[ended][:, 2]) > 0.2)  # the pole fell (angle limit 12 degrees)
      assert np.all(np.abs(stepped.obs[ended]) <= 0.05)  # a fresh start
      np.testing.assert_array_equal(stepped.final_obs[~ended], stepped.obs[~ended])
      length[ended], ends = 0, ends + ended.sum()
    batch.close()
    assert ends >= 12, name
  atari = envs.make("envpool:Breakout-v5", {"episodic_life": True})
  assert atari.observation_shape == (84, 84, 4) and atari.observation_dtype == np.uint8


@pytest.mark.unit
@pytest.mark.parametrize("algo", ["ppo", "impala"])
def test_the_atari_presets_are_cleanbas_agent(algo):
  """`<algo>:envpool:Breakout-v5`: envpool takes the presets' Machado settings (the full action set of 18), and the
  agent is the IMPALA CNN on 84x84x4 frames, one torso for both heads."""
  import importlib
  config = importlib.import_module(f"distrl.configs.{algo}").get_config("envpool:Breakout-v5")
  env = envs.make(config.env_name, config.env_kwargs)
  assert env.num_actions == 18 and env.max_steps == 27_000 and env.observation_shape == (84, 84, 4)
  net = actor_critic.network(config, env)
  params = jax.eval_shape(net.init, jax.random.PRNGKey(0), jnp.zeros(env.observation_shape, jnp.uint8))["params"]
  assert set(params) == {"features", "policy_head", "value_head"}
  assert params["features"]["Conv_0"]["kernel"].shape == (3, 3, 4, 16)


@pytest.mark.unit
@pytest.mark.parametrize("name, fields, message", [
    ("envpool:Breakout-v9", {}, "envpool has no 'Breakout-v9'"),
    ("gymnasium:CartPol-v1", {}, "gymnasium:CartPol-v1"),
    ("gymnasium:CartPole-v1", {"algo": "dqn"}, "algo='dqn' cannot run architecture='host' (host environments): it "
                                               "lacks behaviour, learn, MAX_ACTOR_LAG"),
    ("gymnasium:CartPole-v1", {"architecture": "compiled"}, "is a host environment (it steps outside JAX), which "
                                                            "architecture='compiled' does not run: use "
                                                            "--config.architecture=host"),
    ("CartPole-v1", {}, "is a JAX environment, which architecture='host' does not run: use "
                        "--config.architecture=compiled"),
    ("gymnasium:CartPole-v1", {"architecture": "hots"}, "architecture='hots' is not an architecture; choose one of "
                                                        "compiled, host"),
    ("gymnasium:CartPole-v1", {"num_seeds": 2}, "one agent per run"),
    ("gymnasium:CartPole-v1", {"recurrent": "gru"}, "without memory"),
    ("gymnasium:CartPole-v1", {"actor_lag": 3}, "actor_lag=3 is more than ppo corrects for"),
    ("gymnasium:CartPole-v1", {"actor_lag": -1}, "actor_lag=-1 must be a whole number of updates >= 0"),
    ("gymnasium:CartPole-v1", {"torso": "nature"}, "torso='nature' needs Atari frames"),
    ("gymnasium:CartPole-v1", {"learner_devices": (0, 0)}, "learner_devices=(0, 0) must be distinct indices"),
])
def test_what_host_environments_refuse(name, fields, message):
  config = _config(env_name=name)
  if fields.get("algo") == "dqn":
    from distrl.configs import dqn as dqn_config
    config = dqn_config.get_config()
    config.update(env_name=name, num_envs=jax.device_count(), architecture="host")
    fields = {}
  config.update(fields)
  with pytest.raises(ConfigError, match=re.escape(message)):
    programs.build(config, sharding.make_mesh())


def test_a_users_gymnasium_environment_trains_checkpoints_and_resumes_with_fresh_episodes(tmp_path, capsys):
  """`package.module:factory` returning a gymnasium.Env trains through the host path with the trainer's records and
  checkpoints; a resume says that episodes start afresh, and goes on from the saved update."""
  config = _config(env_name="examples.gym_corridor:make", num_steps=16, num_minibatches=2, log_every=5,
                   eval_every=5, checkpoint_every=5, eval_episodes=jax.device_count())
  config.total_timesteps = 10 * config.num_envs * config.num_steps
  workdir = str(tmp_path / "run")
  first = trainer.train(config, workdir)
  assert int(first.state.update) == 10 and [r["update"] for r in first.history] == [5, 10]
  assert all(np.isfinite(r["eval/return"]) for r in first.history)
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r["update"] for r in records] == [5, 10]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10", "5"]
  longer = config.copy_and_resolve_references()
  longer.total_timesteps = 15 * config.num_envs * config.num_steps
  capsys.readouterr()
  second = trainer.train(longer, workdir)
  assert "every environment starts a fresh episode" in capsys.readouterr().out
  assert int(second.state.update) == 15 and [r["update"] for r in second.history] == [15]


@pytest.mark.slow
def test_ppo_solves_gymnasium_cartpole(tmp_path):
  """The gymnasium:CartPole-v1 preset (8 environments), 2e5 of its 5e5 steps (the learning rate annealed over them):
  greedy episodes reach 475 of the 500-step limit; a random policy lasts about 22 steps. The preset's full run
  first evaluates >= 475 at 102,400 steps (benchmarks/RESULTS.md), its first evaluation; this one evaluates there
  and at its end (478.5 and 494 on 8 emulated devices; 1.5e5 steps reached 427 only)."""
  config = ppo_config.get_config("gymnasium:CartPole-v1")
  config.total_timesteps = 200_000
  result = trainer.train(config, str(tmp_path / "run"))
  assert max(r["eval/return"] for r in result.history if "eval/return" in r) >= 475


@pytest.mark.slow
def test_impala_learns_envpool_cartpole_from_rollouts_four_updates_old(tmp_path):
  """impala:envpool:CartPole-v1 with actor_lag=4 (every rollout after the fourth acts with parameters four updates
  older than the learner's; V-trace corrects for it), 1e5 steps: greedy episodes reach 475; random play lasts ~22.
  The 5e5-step run first evaluates >= 475 at 51,200 steps (benchmarks/RESULTS.md); this one evaluates every 25,600
  steps (492.75 at 51,200 on 8 emulated devices)."""
  from distrl.configs import impala as impala_config
  config = impala_config.get_config("envpool:CartPole-v1")
  config.update(actor_lag=4, total_timesteps=100_000)
  history = trainer.train(config, str(tmp_path / "run")).history
  assert max(r["eval/return"] for r in history if "eval/return" in r) >= 475
  assert all(r["impala/approx_kl"] > 0 for r in history)  # the behaviour was not the learner's policy


def test_two_processes_of_two_devices_stop_together_and_resume_with_fresh_episodes(tmp_path):
  """Each process steps its own gymnasium environments and the learners reduce over both; a SIGTERM to process 1
  alone stops both after the same update with a checkpoint; the resume says episodes start afresh and the records
  go on from the saved update."""
  from tests.test_distributed import free_port, spawn, _finish, _wait_for_records
  from tests.cli import records
  workdir = tmp_path / "run"
  flags = ["--config=ppo:gymnasium:CartPole-v1", f"--workdir={workdir}", "--config.num_envs=8",
           "--config.num_steps=32", "--config.log_every=2", "--config.eval_every=4", "--config.checkpoint_every=1000",
           "--config.eval_episodes=4", "--config.total_timesteps=102400"]  # 400 updates: stopped long before

  def launch(*more):
    port = free_port()
    return [spawn([sys.executable, "-m", "distrl.launch", *flags, *more, f"--coordinator_address=localhost:{port}",
                   "--num_processes=2", f"--process_id={i}"], devices=2) for i in range(2)]

  runs = launch()
  _wait_for_records(workdir, 2, runs)
  runs[1].send_signal(signal.SIGTERM)
  seconds, outputs = _finish(runs, timeout=120)
  assert seconds is not None and [code for code, _, _ in outputs] == [0, 0], outputs
  saved = int(outputs[0][1].split("saved update ")[1].split()[0])
  assert saved == records(workdir)[-1]["update"] >= 4

  runs = launch("--config.total_timesteps=" + str((saved + 4) * 256))
  seconds, outputs = _finish(runs, timeout=180)
  assert [code for code, _, _ in outputs] == [0, 0], outputs
  assert f"resuming {workdir} from update {saved}" in outputs[0][1]
  assert "every environment starts a fresh episode" in outputs[0][1]
  updates = [r["update"] for r in records(workdir)]
  assert updates[-1] == saved + 4 and updates == sorted(set(updates))
  assert "eval/return" in records(workdir)[-1]


@pytest.mark.unit
@pytest.mark.parametrize("preset, architecture", [("envpool:CartPole-v1", "host"), ("gymnasium:CartPole-v1", "host"),
                                                  ("CartPole-v1", "compiled")])
def test_a_run_recorded_before_architectures_existed_gets_the_one_it_ran_on(preset, architecture):
  """config.json of a run from before config.architecture: `evaluate` rebuilds it on the architecture it trained on."""
  import ml_collections

  from distrl import configs

  recorded = ml_collections.ConfigDict({k: v for k, v in ppo_config.get_config(preset).items() if k != "architecture"})
  assert configs.with_new_fields(recorded) == ["architecture"]
  assert recorded.architecture == architecture


@pytest.mark.unit
def test_evaluation_names_the_time_limit_only_where_the_environment_declares_one():
  """gymnasium:CartPole-v1 declares 500 steps; the example corridor (a user's factory) declares none, so evaluation
  says distrl's cap is what stops it, not "the 10000-step time limit" of an environment that truncates on its own."""
  from distrl.evaluate import _limit
  assert _limit(envs.make("gymnasium:CartPole-v1", {})) == "each to its end or the 500-step time limit"
  corridor = envs.make("examples.gym_corridor:make", {})
  assert not corridor.declared_limit
  assert _limit(corridor) == "each to its end, at most 10000 steps (the environment declares no time limit)"


def test_a_simulator_that_raises_mid_run_is_named_by_its_file_and_line_and_its_traceback_kept(tmp_path):
  """A user's gymnasium environment whose step raises in update 3 (its 33rd step, 16 a rollout): one line naming
  the exception, the user's file and line, where the traceback is kept and what was saved (update 2, of
  checkpoint_every=2); the traceback is in that file; the same command resumes from it (and fails there again)."""
  config = _config(env_name="tests.user_code:gym_corridor_failing_after", num_steps=16, num_minibatches=2,
                   log_every=1, checkpoint_every=2, eval_every=100, eval_episodes=jax.device_count())
  config.env_kwargs = {"steps": 32}
  workdir = tmp_path / "run"
  with pytest.raises(RunFailed) as failed:
    trainer.train(config, str(workdir))
  kept = workdir / "failures.log"
  line = inspect.getsourcelines(user_code.gym_corridor_failing_after)
  raising = line[1] + next(i for i, text in enumerate(line[0]) if "raise RuntimeError" in text)
  assert str(failed.value) == (
      f"the environment failed at update 3: RuntimeError: the simulator lost its connection (at "
      f"tests/user_code.py:{raising}, in step); traceback: {kept}; the last complete checkpoint is update 2 in "
      f"{workdir / 'checkpoints'}. Fix the cause and run the same command to resume from it")
  text = kept.read_text()
  assert text.startswith("== ") and ", update 3: RuntimeError ==" in text and "tests/user_code.py" in text, text
  assert "gymnasium" in text  # the whole traceback, the library's frames too


@pytest.mark.unit
def test_arguments_with_which_a_simulator_cannot_start_are_refused_before_the_run(tmp_path):
  """`--config.env_kwargs.length=abc`: the corridor is made but cannot reset; one ConfigError naming the user's line,
  raised by programs.build, before trainer.train makes the workdir."""
  config = _config(env_name="examples.gym_corridor:make")
  config.env_kwargs = {"length": "abc"}
  with pytest.raises(ConfigError, match=r"the environment's reset raised \w+Error: .* \(at examples/gym_corridor.py:"
                                        r"\d+, in reset\)"):
    trainer.train(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
