"""config.num_seeds: S agents in one program, each equal to the single-seed run of its seed."""

import jax
import numpy as np
import pytest

from distrl.configs import dqn as dqn_config
from distrl.configs import ppo as ppo_config
from distrl import plot, sharding
from distrl.runtime import programs, trainer
from distrl.runtime.checkpoint import Checkpoints
from distrl.errors import ConfigError
from tests.runs import FAST
from tests.test_evaluate import evaluate

# Under pytest-xdist this module's tests share a worker, so its module fixture's training runs once.
pytestmark = pytest.mark.xdist_group("seeds")


def _ppo(seed, num_seeds):
  """PPO on tests/fast_env.py, 8 updates (test_sweep.py's sizes: its programs compile once for both)."""
  n = jax.device_count()
  config = ppo_config.get_config()
  config.update(dict(env_name=FAST, anneal_lr=False, num_envs=n, num_steps=32, total_timesteps=8 * n * 32,
                     log_every=4, seed=seed, num_seeds=num_seeds, eval_episodes=n, eval_every=4, checkpoint_every=4))
  return config


def _dqn(seed, num_seeds):
  n = jax.device_count()
  config = dqn_config.get_config()
  config.update(dict(env_name=FAST, num_envs=n, train_frequency=n, buffer_size=64 * n, batch_size=8 * n,
                     learning_starts=16 * n, total_timesteps=48 * n, target_update_interval=8 * n,
                     exploration_steps=24 * n, log_every=16, eval_every=48, checkpoint_every=48, eval_episodes=n,
                     seed=seed, num_seeds=num_seeds))
  return config


@pytest.fixture(scope="module")
def ppo_runs(tmp_path_factory):
  """Seeds 3 and 4 as one 2-agent run, and each as a run of its own."""
  root = tmp_path_factory.mktemp("seeds")
  multi = trainer.train(_ppo(3, 2), str(root / "multi"))
  singles = [trainer.train(_ppo(seed, 1), str(root / f"seed{seed}")) for seed in (3, 4)]
  return root, multi, singles


def _assert_agent_equals_run(multi_params, index, single_params):
  for a, b in zip(jax.tree.leaves(multi_params), jax.tree.leaves(single_params)):
    np.testing.assert_allclose(np.asarray(a)[index], np.asarray(b), atol=1e-6)


def test_each_agent_equals_the_single_seed_run_of_its_seed(ppo_runs):
  _, multi, singles = ppo_runs
  for i, single in enumerate(singles):
    _assert_agent_equals_run(multi.state.learner.params, i, single.state.learner.params)
    _assert_agent_equals_run(multi.state.actors.obs.swapaxes(0, 1), i, single.state.actors.obs)
    for record, reference in zip(multi.history, single.history):
      for name in ("train/episode_return", "eval/return", "eval/length"):
        assert record[f"{name}/seed_{3 + i}"] == pytest.approx(reference[name], rel=1e-5), name
  # ... and the two agents are different agents.
  first, second = (np.asarray(x) for x in jax.tree.leaves(multi.state.learner.params)[-1])
  assert not np.allclose(first, second)
  assert singles[0].history[-1]["eval/return"] != singles[1].history[-1]["eval/return"]


def test_what_holds_exactly_initial_states_and_random_streams(ppo_runs):
  """README's statement: each agent starts exactly as its single-seed twin and draws exactly its random streams
  (the per-environment keys are derived by splitting alone, never from floats); only arithmetic rounds apart."""
  _, multi, singles = ppo_runs
  initial_multi = jax.device_get(programs.build(_ppo(3, 2), sharding.make_mesh()).state)
  for i, seed in enumerate((3, 4)):
    initial = jax.device_get(programs.build(_ppo(seed, 1), sharding.make_mesh()).state)
    for a, b in zip(jax.tree.leaves(initial_multi.learner), jax.tree.leaves(initial.learner)):
      np.testing.assert_array_equal(np.asarray(a)[i], np.asarray(b))
    for a, b in zip(jax.tree.leaves(initial_multi.actors), jax.tree.leaves(initial.actors)):
      np.testing.assert_array_equal(np.asarray(a)[:, i], np.asarray(b))
    np.testing.assert_array_equal(np.asarray(multi.state.actors.key)[:, i], np.asarray(singles[i].state.actors.key))


def test_logs_give_each_seed_and_their_mean(ppo_runs):
  _, multi, _ = ppo_runs
  for record in multi.history:
    for name in ("train/episode_return", "eval/return"):
      assert record[name] == pytest.approx((record[f"{name}/seed_3"] + record[f"{name}/seed_4"]) / 2)
    assert "loss/total" in record and "loss/total/seed_3" not in record  # other metrics: the mean


def test_checkpoints_hold_every_agent(ppo_runs):
  root, multi, _ = ppo_runs
  config = _ppo(3, 2)
  checkpoints = Checkpoints(str(root / "multi" / "checkpoints"), keep=3)
  try:
    like = programs.build(config, sharding.make_mesh()).state
    state = checkpoints.restore(checkpoints.latest(), like=like)
  finally:
    checkpoints.close()
  kernel = jax.tree.leaves(state.learner.params)[-1]
  assert kernel.shape[0] == 2
  assert state.actors.obs.shape[:2] == (jax.device_count(), 2)  # environments first: split over devices
  _assert_agent_equals_run(state.learner.params, slice(None), multi.state.learner.params)


def test_plot_and_evaluate_treat_the_agents_as_seeds(ppo_runs):
  root, _, _ = ppo_runs
  (curve,) = plot.curves([str(root / "multi")], "train/episode_return")
  assert curve.label == f"ppo {FAST} (2 seeds)"
  (pooled,) = plot.curves([str(root / "seed3"), str(root / "seed4")], "train/episode_return")
  np.testing.assert_allclose(curve.mean, pooled.mean, rtol=1e-5)
  np.testing.assert_allclose(curve.std, pooled.std, rtol=1e-4, atol=1e-6)

  result = evaluate(f"--workdir={root / 'multi'}", f"--episodes={jax.device_count()}")
  assert result.returncode == 0, result.stderr
  single = evaluate(f"--workdir={root / 'seed4'}", f"--episodes={jax.device_count()}")
  line = next(line for line in single.stdout.splitlines() if line.startswith("return"))
  assert f"seed 4: {line}" in result.stdout
  assert "for each of 2 agents" in result.stdout and "all agents: return" in result.stdout


def test_dqn_agents_equal_their_single_seed_runs(tmp_path):
  multi = trainer.train(_dqn(0, 2), str(tmp_path / "multi"))
  single = trainer.train(_dqn(1, 1), str(tmp_path / "single"))
  assert single.history[-1]["loss/total"] > 0  # it trained
  _assert_agent_equals_run(multi.state.learner.params, 1, single.state.learner.params)
  _assert_agent_equals_run(multi.state.learner.target_params, 1, single.state.learner.target_params)


@pytest.mark.unit
def test_num_seeds_must_be_positive(tmp_path):
  with pytest.raises(ConfigError, match="num_seeds=0 must be a positive number"):
    trainer.train(_ppo(0, 0), str(tmp_path))


def test_recurrent_agents_equal_their_single_seed_runs_memory_and_evaluation_included(tmp_path):
  def config(seed, num_seeds):
    config = _ppo(seed, num_seeds)
    config.update(dict(recurrent="gru", recurrent_size=16, num_envs=2 * jax.device_count(), num_minibatches=2))
    return config

  multi = trainer.train(config(3, 2), str(tmp_path / "multi"))
  single = trainer.train(config(4, 1), str(tmp_path / "single"))
  _assert_agent_equals_run(multi.state.learner.params, 1, single.state.learner.params)
  _assert_agent_equals_run(multi.state.actors.memory.swapaxes(0, 1), 1, single.state.actors.memory)
  assert np.max(np.abs(single.state.actors.memory)) > 0  # mid-episode memory, carried
  for record, reference in zip(multi.history, single.history):
    assert record["eval/return/seed_4"] == pytest.approx(reference["eval/return"], rel=1e-5)
