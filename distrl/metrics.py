"""Metric writers: a progress line on stdout, tensorboardX, and WORKDIR/metrics.jsonl."""

import json
import math
import os
import sys

import numpy as np

from tensorboardX import SummaryWriter

SHOWN = (  # (metric, label) in the stdout line; every metric goes to tensorboard and jsonl
    ("train/episode_return", "return"), ("loss/total", "loss"), ("loss/policy", "pi"),
    ("loss/value", "v"), ("loss/entropy", "ent"), ("eval/return", "eval"),
)


PER_AGENT = ("train/episode_return", "train/episode_length", "eval/return", "eval/length")


def summarize(sums: dict, first_seed: int = 0) -> dict[str, float]:
  """{name: (sum, count)} from a chunk -> {name: mean}; a metric with no samples is left out.

  With several agents (`config.num_seeds`) sums and counts are shaped (S,): `name` is then the
  mean over the agents of each agent's mean, and the metrics of `PER_AGENT` are also given for
  each agent as `name/seed_<its seed>`, counting seeds from `first_seed`.
  """
  scalars = {}
  for name, (total, count) in sums.items():
    total, count = np.atleast_1d(total).astype(np.float64), np.atleast_1d(count).astype(np.float64)
    seen = count > 0
    if not seen.any():
      continue
    means = total[seen] / count[seen]
    scalars[name] = float(means.mean())
    if len(count) > 1 and name in PER_AGENT:
      scalars.update({f"{name}/seed_{first_seed + i}": float(m) for i, m in zip(np.flatnonzero(seen), means)})
  return scalars


def _duration(seconds: float) -> str:
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Writer:
  """Writes one record per log interval to stdout, tensorboard and metrics.jsonl (appending on resume).

  On a terminal, stdout shows one live progress bar, redrawn in place; otherwise (CI, a log file)
  one plain line per record. Other messages go through `print`, which keeps the two apart.
  """

  def __init__(self, workdir: str, *, total_steps: int, name: str, enabled: bool = True, resume_step: int = 0,
               live: bool | None = None):
    self.total_steps, self.name, self.enabled = total_steps, name, enabled
    self.live = sys.stdout.isatty() if live is None else live
    self._open_line = False  # a live bar is on screen without its newline
    if enabled:
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      # purge_step: TensorBoard drops events a crashed run logged past the checkpoint it resumes from.
      self._tb = SummaryWriter(os.path.join(workdir, "tb"), purge_step=resume_step or None)

  def write(self, *, step: int, update: int, time: float, scalars: dict[str, float]) -> None:
    if not self.enabled:
      return
    record = {"step": step, "update": update, "time": round(time, 3), **scalars}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    for name, value in scalars.items():
      self._tb.add_scalar(name, value, step)
    self._tb.flush()
    if self.live:
      sys.stdout.write("\r" + self._line(step, scalars, bar=True) + "\x1b[K")  # redraw, clear what was longer
      sys.stdout.flush()
      self._open_line = True
    else:
      print(self._line(step, scalars), flush=True)

  def print(self, text: str) -> None:
    """A message of its own line (ends a live bar first)."""
    if not self.enabled:
      return
    if self._open_line:
      sys.stdout.write("\n")
      self._open_line = False
    print(text, flush=True)

  def _line(self, step: int, scalars: dict[str, float], bar: bool = False) -> str:
    sps = scalars.get("perf/sps", 0.0)
    eta = _duration((self.total_steps - step) / sps) if sps > 0 else "?"
    done = step / self.total_steps
    if bar:
      filled = int(round(20 * done))
      head = f"[{self.name}] {'█' * filled}{'░' * (20 - filled)} {100 * done:3.0f}% {step:,}/{self.total_steps:,}"
    else:
      head = f"[{self.name}] step {step:,}/{self.total_steps:,} ({100 * done:.0f}%)"
    parts = [head, f"{sps:,.0f} steps/s"]
    parts += [f"{label} {scalars[key]:.4g}" for key, label in SHOWN if key in scalars and math.isfinite(scalars[key])]
    return " | ".join(parts + [f"ETA {eta}"])

  def close(self) -> None:
    if self.enabled:
      if self._open_line:
        sys.stdout.write("\n")
        sys.stdout.flush()
      self._jsonl.close()
      self._tb.close()
