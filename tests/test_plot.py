"""python -m distrl.plot: curves grouped over seeds (each counted once), bands within the runs' range, labels by
what differs, and a real PNG."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from distrl import plot
from distrl.runtime import trainer
from distrl.configs import dqn as dqn_config
from distrl.configs import ppo as ppo_config
from tests.cli import ROOT

# Under pytest-xdist this module's tests share a worker, so its module fixture's training runs once.
pytestmark = pytest.mark.xdist_group("plot")


def _fake_run(directory, config, returns_per_seed, steps=(100, 200, 300)):
  """A run directory as distrl writes it, with the returns given (one list per agent of `config`)."""
  os.makedirs(directory)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(json.loads(config.to_json_best_effort()), f)
  with open(os.path.join(directory, "metrics.jsonl"), "w") as f:
    for i, step in enumerate(steps):
      record = {"step": step, "update": i + 1}
      if len(returns_per_seed) == 1:
        record["train/episode_return"] = returns_per_seed[0][i]
      else:
        record.update({f"train/episode_return/seed_{config.seed + s}": r[i] for s, r in enumerate(returns_per_seed)})
        record["train/episode_return"] = float(np.mean([r[i] for r in returns_per_seed]))
      f.write(json.dumps(record) + "\n")
  return str(directory)


@pytest.mark.unit
def test_each_seed_counts_once_and_the_band_spans_the_seeds(tmp_path):
  config = ppo_config.get_config()
  config.num_seeds = 3  # seeds 0, 1, 2
  many = _fake_run(tmp_path / "3seeds", config, [[10, 400, 500], [20, 500, 500], [30, 500, 500]])
  single = _fake_run(tmp_path / "seed0", ppo_config.get_config(), [[10, 400, 500]])  # seed 0 again
  shown = plot.figure([many, single], "train/episode_return")
  (curve,) = shown.curves
  assert curve.seeds == [0, 1, 2] and curve.label == "ppo CartPole-v1 (3 seeds)"
  assert shown.notes == [f"seed 0 of ppo on CartPole-v1 is in both {many} and {single}: counted once, from {many}"]
  np.testing.assert_allclose(curve.mean, [20, (400 + 500 + 500) / 3, 500])
  np.testing.assert_allclose(curve.low, [10, 400, 500])
  np.testing.assert_allclose(curve.high, [30, 500, 500])  # never above CartPole's 500 ...
  assert (curve.mean + curve.std)[1] > 500  # ... where a band of one standard deviation would go


@pytest.mark.unit
def test_a_run_still_training_is_marked(tmp_path):
  """A workdir whose lock a run holds (as the trainer's Workdir.lock takes it) is marked as training; once the lock
  is let go, or where a run never took one, the same curve is final."""
  from distrl.runtime.workdir import Workdir

  run = _fake_run(tmp_path / "run", ppo_config.get_config(), [[10, 400, 500]])
  holder = Workdir(run, primary=True)
  assert holder.lock() is None
  try:
    (curve,) = plot.curves([run], "train/episode_return")
    assert curve.label == "ppo CartPole-v1 (1 seed, still training)" and curve.training == [run]
  finally:
    holder.unlock()
  (curve,) = plot.curves([run], "train/episode_return")
  assert curve.label == "ppo CartPole-v1 (1 seed)" and curve.training == []


@pytest.mark.unit
def test_a_last_line_cut_short_is_left_out_and_another_bad_line_is_named(tmp_path):
  run = _fake_run(tmp_path / "run", ppo_config.get_config(), [[10, 400, 500]])
  text = (tmp_path / "run" / "metrics.jsonl").read_text()
  (tmp_path / "run" / "metrics.jsonl").write_text(text[:-20])  # killed while writing its last record
  (curve,) = plot.curves([run], "train/episode_return")
  np.testing.assert_allclose(curve.mean, [10, 400])
  lines = text.splitlines()
  (tmp_path / "run" / "metrics.jsonl").write_text("\n".join([lines[0], "{oops", lines[2]]) + "\n")
  with pytest.raises(ValueError, match=r"run/metrics.jsonl: line 2 is not a record$"):
    plot.curves([run], "train/episode_return")


@pytest.mark.unit
def test_labels_name_what_differs_among_curves_of_one_algorithm(tmp_path):
  base = ppo_config.get_config()
  faster = ppo_config.get_config()
  faster.lr, faster.log_every = 1e-3, 7  # log_every does not change learning: it labels nothing
  dqn = dqn_config.get_config()
  runs = [_fake_run(tmp_path / "a", base, [[1, 2, 3]]), _fake_run(tmp_path / "b", faster, [[1, 2, 3]]),
          _fake_run(tmp_path / "c", dqn, [[1, 2, 3]])]
  shown = plot.figure(runs, "train/episode_return")
  assert shown.title == "train/episode_return: CartPole-v1"
  assert [c.label for c in shown.curves] == ["ppo lr=0.00025 (1 seed)", "ppo lr=0.001 (1 seed)", "dqn (1 seed)"]


@pytest.mark.unit
def test_a_label_shows_at_most_three_fields(tmp_path):
  configs = []
  for i in range(2):
    config = ppo_config.get_config()
    config.update(dict(lr=1e-3 * (i + 1), gamma=0.9 + 0.01 * i, clip_eps=0.1 * (i + 1), ent_coef=0.01 * i,
                       vf_coef=0.5 + i))
    configs.append(_fake_run(tmp_path / str(i), config, [[1, 2, 3]]))
  labels = [c.label for c in plot.curves(configs, "train/episode_return")]
  assert labels == ["clip_eps=0.1 ent_coef=0 gamma=0.9 +2 more (1 seed)",
                    "clip_eps=0.2 ent_coef=0.01 gamma=0.91 +2 more (1 seed)"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Seeds 0 and 1 of one config, and seed 0 of the same config with another lr: real runs."""
  root = tmp_path_factory.mktemp("runs")
  n = jax.device_count()
  made = []
  for name, seed, lr in [("a0", 0, 2.5e-4), ("a1", 1, 2.5e-4), ("b0", 0, 1e-3)]:
    config = ppo_config.get_config()
    config.update(dict(num_envs=n, num_steps=32, total_timesteps=8 * n * 32, log_every=2, seed=seed, lr=lr,
                       eval_episodes=n, eval_every=4))
    trainer.train(config, str(root / name))
    made.append(str(root / name))
  return made


def test_real_runs_make_one_curve_per_config_from_their_records(runs):
  lines = plot.curves(runs, "train/episode_return")
  assert [c.label for c in lines] == ["lr=0.00025 (2 seeds)", "lr=0.001 (1 seed)"]
  assert lines[0].runs == runs[:2] and lines[1].runs == runs[2:]
  per_run = []
  for workdir in runs[:2]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      per_run.append([json.loads(line)["train/episode_return"] for line in f])
  np.testing.assert_allclose(lines[0].mean, np.mean(per_run, 0), rtol=1e-6)
  np.testing.assert_allclose(lines[0].high, np.max(per_run, 0), rtol=1e-6)
  assert lines[0].steps[-1] == 8 * jax.device_count() * 32
  evals = plot.curves(runs, "eval/return")
  assert [len(c.steps) for c in evals] == [2, 2]  # evaluations at updates 4 and 8


def test_command_line_writes_a_png_with_a_title_and_the_curves(runs, tmp_path):
  out = tmp_path / "new" / "dir" / "curves.png"  # directories that do not exist yet
  result = subprocess.run([sys.executable, "-m", "distrl.plot", *runs, f"--out={out}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith("train/episode_return: ppo on CartPole-v1\n  lr=0.00025 (2 seeds): final ")
  with Image.open(out) as image:
    assert image.format == "PNG" and image.size == (840, 600)  # 7 x (4.5 + 0.25 a curve) inches at 120 dpi
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
  colored = np.abs(pixels - pixels.mean(1, keepdims=True)).max(1) > 40  # not white, grey or black
  assert colored.mean() > 0.002, "the figure has coloured curves"


def test_a_directory_that_is_not_a_run_is_one_line(tmp_path):
  result = subprocess.run([sys.executable, "-m", "distrl.plot", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
  assert result.returncode == 1
  assert result.stderr.strip() == f"distrl: error: {tmp_path} is not a distrl run: it has no config.json"


def test_out_names_the_file_written_or_is_refused_in_one_line(runs, tmp_path):
  def plot_to(out):
    return subprocess.run([sys.executable, "-m", "distrl.plot", *runs, f"--out={out}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})

  result = plot_to(tmp_path / "curves")  # no format: matplotlib writes a PNG beside, and that is the one said
  assert result.returncode == 0 and result.stdout.endswith(f"wrote {tmp_path / 'curves.png'}\n")
  assert (tmp_path / "curves.png").exists()
  for out, what in [(tmp_path, "is a directory"), ("", "is empty")]:
    result = plot_to(out)
    assert result.returncode == 1
    assert result.stderr == f"distrl: error: --out={str(out)!r} {what}: name the figure's file (.png, .pdf or .svg)\n"
  assert sorted(os.listdir(tmp_path)) == ["curves.png"]  # nothing else written


@pytest.mark.unit
def test_the_legend_covers_no_curve_and_member_groups_labels_none(tmp_path):
  """Three runs whose configs differ in lr and in member_groups (how a run is split over devices, not what it
  learns): the labels name lr alone, and the legend lies outside the axes (it was drawn over the curves)."""
  runs = []
  for i, (lr, groups) in enumerate([(1e-3, 1), (3e-4, 4), (1e-4, 2)]):
    config = ppo_config.get_config()
    config.update(dict(lr=lr, member_groups=groups))
    runs.append(_fake_run(tmp_path / str(i), config, [[1, 2, 3]]))
  shown = plot.figure(runs, "train/episode_return")
  assert [c.label for c in shown.curves] == ["lr=0.001 (1 seed)", "lr=0.0003 (1 seed)", "lr=0.0001 (1 seed)"]
  fig = plot.matplotlib_figure(shown, "train/episode_return")
  fig.canvas.draw()
  (legend,), (ax,) = fig.legends, fig.axes
  assert not legend.get_window_extent().overlaps(ax.get_window_extent())
