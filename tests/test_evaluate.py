"""python -m distrl.evaluate: greedy episodes from a run's checkpoint, and a rendered episode."""

import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from distrl.runtime import programs, trainer
from distrl.runtime.checkpoint import Checkpoints
from tests.cli import ROOT
from tests.runs import tiny_ppo

# Under pytest-xdist this module's tests share a worker, so its module fixture's training runs once.
pytestmark = pytest.mark.xdist_group("evaluate")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A short PPO run with checkpoints at updates 4 and 8, evaluated at both."""
  from distrl.configs import ppo as ppo_config

  workdir = tmp_path_factory.mktemp("run")
  config = ppo_config.get_config()
  n = jax.device_count()
  config.update(dict(num_envs=n, num_steps=32, total_timesteps=8 * n * 32, log_every=4, checkpoint_every=4,
                     eval_episodes=n, eval_every=4))
  result = trainer.train(config, str(workdir))
  return workdir, [h["eval/return"] for h in result.history]


@pytest.fixture(scope="module")
def run(trained):
  return trained[0]


def evaluate(*flags):
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={jax.device_count()}",
         "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
  return subprocess.run([sys.executable, "-m", "distrl.evaluate", *flags], env=env, cwd=ROOT, capture_output=True,
                        text=True, timeout=300)


def test_latest_checkpoint_greedy_episodes_with_mean_and_spread(run):
  out = evaluate(f"--workdir={run}", f"--episodes={2 * jax.device_count()}")
  assert out.returncode == 0, out.stderr
  assert f"{run} at update 8 (ppo on CartPole-v1): {2 * jax.device_count()} greedy episodes" in out.stdout
  mean, std = map(float, re.search(r"return ([\d.]+) ± ([\d.]+)", out.stdout).groups())
  assert 8 <= mean <= 500 and std >= 0  # CartPole returns are episode lengths, 8 at the least


def test_the_best_evaluation_is_kept_as_its_own_checkpoint(trained):
  run, evals = trained  # the evaluations at updates 4 and 8
  best_update = 4 * (1 + evals.index(max(evals)))
  best = Checkpoints(str(run / "best"), keep=1, best_of="eval/return")
  assert best.saved() == [best_update]
  assert best.best() == (best_update, pytest.approx(max(evals)))
  best.close()
  out = evaluate(f"--workdir={run}", "--best")
  assert f"at update {best_update} (best evaluation, ppo" in out.stdout


def test_a_named_checkpoint_and_a_missing_one(run):
  sampled = evaluate(f"--workdir={run}", "--checkpoint=4", "--policy=sampled").stdout
  assert "at update 4 (ppo" in sampled and "greedy" not in sampled
  assert " 16 sampled episodes (actions sampled as in training, " in sampled  # --episodes' default
  missing = evaluate(f"--workdir={run}", "--checkpoint=5")
  assert missing.returncode == 1
  assert missing.stderr.strip() == f"distrl: error: no checkpoint 5 in {run}/checkpoints; saved: 4, 8"


def test_intact_checkpoints_carry_checksums_and_load_as_they_did_without(run, tmp_path, capsys):
  import shutil

  import numpy as np

  from distrl import evaluate
  from distrl.runtime import checksums

  saved = [run / kind / name for kind in ("checkpoints", "best") for name in os.listdir(run / kind)]
  assert len(saved) == 3 and all((step / checksums.CHECKSUMS).exists() for step in saved)
  assert [checksums.difference(str(step)) for step in saved] == [None] * 3
  older = tmp_path / "run"
  shutil.copytree(run, older)
  for step in older.glob(f"*/*/{checksums.CHECKSUMS}"):  # as a distrl without checksums saved them
    step.unlink()
  for best in (False, True):
    _, state, update = evaluate.load_run(str(run), None, best)
    _, unchecked, unchecked_update = evaluate.load_run(str(older), None, best)
    assert update == unchecked_update and update in (4, 8)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(unchecked), strict=True):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert capsys.readouterr().err == "", "no warning about an intact checkpoint"


def test_gif_holds_one_frame_per_step_of_the_episode(run, tmp_path):
  out = evaluate(f"--workdir={run}", f"--gif={tmp_path / 'episode.gif'}")
  assert out.returncode == 0, out.stderr
  length = int(re.search(r"wrote a (\d+)-step episode", out.stdout).group(1))
  with Image.open(tmp_path / "episode.gif") as gif:
    assert gif.format == "GIF"
    assert gif.n_frames == length + 1  # the reset state, then one frame per step


def test_the_gifs_last_frame_is_the_state_the_episode_ended_in(run):
  from distrl import evaluate, sharding
  from distrl.cli import render

  program, state, _ = evaluate.load_run(str(run), None)
  states, _ = render.play(program, sharding.to_host(state.learner), 0)
  # CartPole counts its steps: the reset state is at 0, and the episode's last state at its length (not the next
  # episode's reset state, at 0 again).
  assert [int(s.time) for s in states] == list(range(len(states)))


def test_a_run_whose_evaluation_episodes_do_not_split_over_every_device_is_evaluated_on_fewer(run, tmp_path):
  import json
  import shutil

  copy = tmp_path / "run"
  shutil.copytree(run, copy)
  config = json.loads((copy / "config.json").read_text())
  config["eval_episodes"] = 1  # trained with one per device: on several devices, build would refuse it
  (copy / "config.json").write_text(json.dumps(config))
  out = evaluate(f"--workdir={copy}", "--episodes=4")
  assert out.returncode == 0, out.stderr
  assert "at update 8 (ppo on CartPole-v1): 4 greedy episodes" in out.stdout


def test_a_directory_without_a_run_is_one_line(tmp_path):
  out = evaluate(f"--workdir={tmp_path}")
  assert out.returncode == 1
  assert out.stderr.strip() == f"distrl: error: no run in --workdir={tmp_path}: {tmp_path}/config.json is missing"


def test_a_sampled_evaluation_follows_from_its_key_alone_on_any_device_count():
  """eval_policy="sampled" evaluates the policy as it trains: the same key gives the same episodes on one device and
  on every device (evaluation environment i and its actions draw from the key and i), another key other episodes,
  and the greedy policy others again."""
  config = tiny_ppo(4, eval_episodes=8)

  def returns(policy, devices, seed):
    config.eval_policy = policy
    program = programs.build(config, programs.mesh_for(config, devices))
    try:
      return jax.device_get(program.evaluator(8)(program.state.learner, jax.random.PRNGKey(seed)))["return"]
    finally:
      program.close()

  sampled = returns("sampled", None, 0)
  np.testing.assert_allclose(returns("sampled", jax.devices()[:1], 0), sampled, rtol=1e-6)
  assert not np.allclose(returns("sampled", None, 1), sampled)
  assert not np.allclose(returns("greedy", None, 0), sampled)
