"""Metrics (distrl/runtime/metrics.py): the live progress line."""

import pytest

from distrl.runtime import metrics

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("width", [40, 80, 120, 200])
def test_the_progress_line_drops_fields_in_order_of_importance_to_fit(width, monkeypatch):
  monkeypatch.setenv("COLUMNS", str(width))
  writer = metrics.Writer.__new__(metrics.Writer)
  writer.total_steps, writer.name, writer._since = 499_712, "ppo Breakout-MinAtar", None
  scalars = {"train/episode_return": 36.25, "eval/return": 41.0, "perf/sps": 2560.4, "loss/total": 0.1234,
             "loss/policy": -0.01, "loss/value": 0.25, "loss/entropy": 1.02}
  line = writer._line(225_280, scalars, bar=True)
  assert len(line) <= width - 1, line
  shown = [field in line for field in ("return 36.25", "eval 41", "ETA", "█", "steps/s", "loss", "pi", "ent")]
  assert shown == sorted(shown, reverse=True), (line, shown)  # a prefix of the fields, most important first
  assert shown[:3] == [True, True, True] or width < 80
  assert all(shown) == (width >= 200)
