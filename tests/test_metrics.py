"""Metrics (distrl/runtime/metrics.py): the live progress line."""

import subprocess
import sys

import pytest

from distrl.runtime import metrics

pytestmark = pytest.mark.unit


def _writer(name="ppo Breakout-MinAtar"):
  writer = metrics.Writer.__new__(metrics.Writer)
  writer.total_steps, writer.name, writer._since = 499_712, name, None
  return writer


SCALARS = {"train/episode_return": 36.25, "eval/return": 41.0, "perf/sps": 2560.4, "loss/total": 0.1234,
           "loss/policy": -0.01, "loss/value": 0.25, "loss/entropy": 1.02}


@pytest.mark.parametrize("width", [40, 80, 100, 120, 200])
def test_the_progress_line_drops_fields_in_order_of_importance_to_fit(width, monkeypatch):
  monkeypatch.setenv("COLUMNS", str(width))
  line = _writer()._line(225_280, SCALARS, bar=True)
  assert len(line) <= width - 1, line
  shown = [field in line for field in ("return 36.25", "2,560 steps/s", "ETA", "eval 41", "loss", "pi", "ent")]
  assert shown == sorted(shown, reverse=True), (line, shown)  # a prefix of the fields, most important first
  assert shown[:3] == [True, True, True] or width < 80  # README: return, steps/s and time left, at 80 columns
  assert all(shown) == (width >= 200)
  assert line.count("█") + line.count("░") == (20 if width >= 120 else 10 if width >= 100 else 0)
  assert ("45% 225k/500k" if width < 100 else "45% 225,280/499,712") in line


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_progress_line_keeps_its_layout_from_record_to_record(width, monkeypatch):
  """Returns of other widths, an evaluation or none: the bar and the counts stay where they were."""
  monkeypatch.setenv("COLUMNS", str(width))
  writer = _writer()
  lines = [writer._line(225_280, {**SCALARS, "train/episode_return": value}, bar=True) for value in (5.0, -1234.567)]
  lines.append(writer._line(225_280, {k: v for k, v in SCALARS.items() if k != "eval/return"}, bar=True))
  assert len({line.split(" | ")[0] for line in lines}) == 1, lines


def test_step_counts_in_five_characters():
  assert [metrics._count(n) for n in (9_216, 19_968, 225_280, 999_600, 12_345_678, 20_000_000_000)] == \
      ["9,216", "20k", "225k", "1M", "12.3M", "20G"]


FILL_AND_WRITE = """
import sys
from distrl.runtime import metrics
writer = metrics.Writer(sys.argv[1], total_steps=10**9, name="ppo CartPole-v1", console=metrics.Console(enabled=False))
with open(sys.argv[1] + "/filler", "wb", buffering=0) as f:  # the disk, full
  try:
    while True:
      f.write(bytes(4096))
  except OSError:
    pass
try:
  for update in range(1, 10**4):
    writer.write(step=update, update=update, time=0.0, scalars={"train/episode_return": 1.0 * update})
except OSError as error:
  print(error.strerror, "|", error.filename)
try:
  writer.close()
except OSError:
  pass
"""


def test_a_full_disk_fails_a_write_of_the_logs_once_and_names_the_file(tmp_path):
  """metrics.jsonl or the TensorBoard events file, whichever the full disk hits first: an OSError naming it from
  `write`, in the writing thread, and nothing printed after it (no writer thread's or exit handler's traceback)."""
  disk = tmp_path / "disk"
  disk.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode:
    pytest.skip("mounting a small tmpfs is not allowed here")
  try:
    done = subprocess.run([sys.executable, "-c", FILL_AND_WRITE, str(disk)], capture_output=True, text=True,
                          timeout=120)
  finally:
    subprocess.run(["umount", str(disk)], check=True)
  assert done.returncode == 0 and done.stderr == "", done.stderr
  assert done.stdout in (f"No space left on device | {disk / 'metrics.jsonl'}\n",
                         f"No space left on device | {disk / 'tb'}\n"), done.stdout


@pytest.mark.unit
def test_the_summary_names_the_sampled_policy_where_greedy_evaluation_is_far_below_training(tmp_path, capsys):
  """MiniGrid through navix: training scored 0.99 while every greedy episode looped to the time limit at 0. The gap
  is more than half the larger magnitude: 0.99 vs 0 and -150 vs -400 are; 480 vs 500 and -300 vs -150 are not."""
  assert metrics.far_below(0.0, 0.99) and metrics.far_below(-400.0, -150.0)
  assert not metrics.far_below(480.0, 500.0) and not metrics.far_below(-300.0, -150.0)
  assert not metrics.far_below(500.0, 200.0)  # evaluation above training
  writer = metrics.Writer(str(tmp_path), total_steps=100, name="ppo MiniGrid", console=metrics.Console(live=False))
  history = [{"step": 100, "update": 1, "train/episode_return": 0.99, "eval/return": 0.0}]
  said = []
  for greedy in (True, False):
    writer.summary(history, seconds=1.0, compile_seconds=1.0, workdir="runs/grid", checkpoint=None, best=None,
                   greedy=greedy)
    said.append(capsys.readouterr().out)
  writer.close()
  assert "python -m distrl.evaluate --workdir=runs/grid --policy=sampled\n" in said[0]
  assert "--policy=sampled" not in said[1]  # already evaluated as it samples
  assert max(len(line) for line in said[0].splitlines()) <= 80
