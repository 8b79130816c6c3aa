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


class Console:
  """This process's stdout: messages on lines of their own, and (on a terminal) one live line redrawn in place.

  If stdout goes away (`distrl.launch ... | head`), further output is dropped and `on_closed` is called
  once: the run is not killed by its next log line.
  """

  def __init__(self, *, enabled: bool = True, live: bool | None = None, on_closed=lambda: None):
    self.enabled, self._on_closed = enabled, on_closed
    self.live = sys.stdout.isatty() if live is None else live
    self._open_line = False  # a live line is on screen without its newline

  def print(self, text: str) -> None:
    """A message of its own line (ends a live line first)."""
    self._write(("\n" if self._open_line else "") + text + "\n")
    self._open_line = False

  def redraw(self, text: str) -> None:
    """Replaces the live line (on a terminal), or prints `text` as a line of its own."""
    if not self.live:
      return self.print(text)
    self._write("\r" + text + "\x1b[K")  # redraw, clear what was longer
    self._open_line = True

  def end(self) -> None:
    if self._open_line:
      self._write("\n")
      self._open_line = False

  def _write(self, text: str) -> None:
    if not self.enabled:
      return
    try:
      sys.stdout.write(text)
      sys.stdout.flush()
    except (BrokenPipeError, ValueError):  # the reader went away (or stdout was closed)
      self.enabled = False
      try:  # Python would otherwise fail again flushing stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
      except (OSError, ValueError):
        pass
      self._on_closed()


class Writer:
  """Writes one record per log interval to stdout, tensorboard and metrics.jsonl (appending on resume).

  On a terminal, stdout shows one live progress line; otherwise (CI, a log file) one plain line per
  record (see `Console`).
  """

  def __init__(self, workdir: str, *, total_steps: int, name: str, console: Console, primary: bool = True,
               resume_step: int = 0):
    self.total_steps, self.name, self.console, self.primary = total_steps, name, console, primary
    if primary:
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      # purge_step: TensorBoard drops events a crashed run logged past the checkpoint it resumes from.
      self._tb = SummaryWriter(os.path.join(workdir, "tb"), purge_step=resume_step or None)

  def write(self, *, step: int, update: int, time: float, scalars: dict[str, float]) -> None:
    """One record (process 0 only); OSError if metrics.jsonl cannot be written (a full disk)."""
    if not self.primary:
      return
    record = {"step": step, "update": update, "time": round(time, 3), **scalars}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    for name, value in scalars.items():
      self._tb.add_scalar(name, value, step)
    self._tb.flush()
    self.console.redraw(self._line(step, scalars, bar=self.console.live))

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
    self.console.end()
    if self.primary:
      self._jsonl.close()
      self._tb.close()
