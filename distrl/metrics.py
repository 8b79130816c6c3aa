"""Metric writers: a progress line on stdout, tensorboardX, and WORKDIR/metrics.jsonl."""

import json
import math
import os

from tensorboardX import SummaryWriter

SHOWN = (  # (metric, label) in the stdout line; every metric goes to tensorboard and jsonl
    ("train/episode_return", "return"), ("loss/total", "loss"), ("loss/policy", "pi"),
    ("loss/value", "v"), ("loss/entropy", "ent"), ("eval/episode_return", "eval"),
)


def summarize(sums: dict) -> dict[str, float]:
  """{name: (sum, count)} from a chunk -> {name: mean}; a metric with no samples is left out."""
  return {name: float(total) / float(count) for name, (total, count) in sums.items() if count > 0}


def _duration(seconds: float) -> str:
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Writer:
  """Writes one record per log interval to stdout, tensorboard and metrics.jsonl (appending on resume)."""

  def __init__(self, workdir: str, *, total_steps: int, name: str, enabled: bool = True, resume_step: int = 0):
    self.total_steps, self.name, self.enabled = total_steps, name, enabled
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
    print(self._line(step, scalars), flush=True)

  def _line(self, step: int, scalars: dict[str, float]) -> str:
    sps = scalars.get("perf/sps", 0.0)
    eta = _duration((self.total_steps - step) / sps) if sps > 0 else "?"
    parts = [f"[{self.name}] step {step:,}/{self.total_steps:,} ({100 * step / self.total_steps:.0f}%)",
             f"{sps:,.0f} steps/s"]
    parts += [f"{label} {scalars[key]:.4g}" for key, label in SHOWN if key in scalars and math.isfinite(scalars[key])]
    return " | ".join(parts + [f"ETA {eta}"])

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb.close()
