"""python -m distrl.plot: curves grouped over seeds, and a real PNG."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from distrl.configs import ppo as ppo_config
from distrl import plot, trainer
from tests.cli import ROOT


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Seeds 0 and 1 of one config, and seed 0 of the same config with another lr."""
  root = tmp_path_factory.mktemp("runs")
  n = jax.device_count()
  made = []
  for name, seed, lr in [("a0", 0, 2.5e-4), ("a1", 1, 2.5e-4), ("b0", 0, 1e-3)]:
    config = ppo_config.get_config()
    config.update(dict(num_envs=n, num_steps=32, total_timesteps=40 * n * 32, log_every=4, seed=seed, lr=lr,
                       eval_episodes=n, eval_every=20))
    trainer.train(config, str(root / name))
    made.append(str(root / name))
  return made


def test_runs_that_differ_only_in_seed_make_one_curve_with_their_spread(runs):
  lines = plot.curves(runs, "train/episode_return")
  assert [c.label for c in lines] == ["ppo CartPole-v1 lr=0.00025 (2 seeds)", "ppo CartPole-v1 lr=0.001 (1 seed)"]
  assert lines[0].runs == runs[:2] and lines[1].runs == runs[2:]
  # The 2-seed curve is the mean of the two runs' records, its band their spread, step by step.
  per_run = []
  for workdir in runs[:2]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      per_run.append([json.loads(line)["train/episode_return"] for line in f])
  np.testing.assert_allclose(lines[0].mean, np.mean(per_run, 0), rtol=1e-6)
  np.testing.assert_allclose(lines[0].std, np.std(per_run, 0), rtol=1e-6)
  assert np.all(lines[1].std == 0)
  assert lines[0].steps[-1] == 40 * jax.device_count() * 32


def test_command_line_writes_a_png_with_the_curves(runs, tmp_path):
  out = tmp_path / "curves.png"
  result = subprocess.run([sys.executable, "-m", "distrl.plot", *runs, f"--out={out}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
  assert result.returncode == 0, result.stderr
  assert "ppo CartPole-v1 lr=0.00025 (2 seeds): final train/episode_return" in result.stdout
  with Image.open(out) as image:
    assert image.format == "PNG" and image.size == (840, 540)
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
  colored = np.abs(pixels - pixels.mean(1, keepdims=True)).max(1) > 40  # not white, grey or black
  assert colored.mean() > 0.002, "the figure has coloured curves"


def test_eval_metric_and_a_directory_that_is_not_a_run(runs, tmp_path):
  lines = plot.curves(runs, "eval/return")
  assert [len(c.steps) for c in lines] == [2, 2]  # evaluations at updates 20 and 40
  with pytest.raises(ValueError, match="is not a distrl run: it has no config.json"):
    plot.curves([str(tmp_path)], "train/episode_return")
