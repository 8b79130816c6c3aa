"""Metric writers: a progress line on stdout, tensorboardX, WORKDIR/metrics.jsonl, and the experiment trackers a config
asks for (`distrl.runtime.trackers`)."""

import contextlib
import json
import math
import os
import shutil
import sys
import time as clock

import numpy as np

from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.summary import scalar

from distrl.runtime.trackers import Trackers

# The progress line's fields, most important first: a narrow terminal shows a prefix of them.
LOSSES = (("loss/total", "loss"), ("loss/policy", "pi"), ("loss/value", "v"), ("loss/entropy", "ent"))


PER_AGENT = ("train/episode_return", "train/episode_length", "eval/return", "eval/length")


def summarize(sums: dict, labels: list[str] = ("",)) -> dict[str, float]:
  """{name: (sum, count)} from a chunk -> {name: mean}; a metric with no samples is left out.

  With several agents (`config.num_seeds`, a sweep's members) sums and counts are shaped (A,): `name` is then the
  mean over the agents of each agent's mean, and the metrics of `PER_AGENT` are also given for each agent as
  `name/<its label>` (`seeds.labels`: seed_<s>, member_<m>, member_<m>/seed_<s>).
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
      scalars.update({f"{name}/{labels[i]}": float(m) for i, m in zip(np.flatnonzero(seen), means)})
  return scalars


def _count(steps: int) -> str:
  """A step count in at most 5 characters: 9,216, 225k, 1.5M, 20G."""
  if steps < 10_000:
    return f"{steps:,}"
  for scale, suffix in ((1e3, "k"), (1e6, "M")):
    if steps < 999.5 * scale:
      return f"{steps / scale:.3g}{suffix}"
  return f"{steps / 1e9:.3g}G"


def _duration(seconds: float) -> str:
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def far_below(evaluated: float, trained: float) -> bool:
  """Whether an evaluation's return is below the training return by more than half the larger's magnitude (MiniGrid's
  greedy policy looping to the time limit at 0 while training scores 0.99, say)."""
  return trained - evaluated > 0.5 * max(abs(trained), abs(evaluated))


class Console:
  """This process's stdout: messages on lines of their own, and (on a terminal) one live line redrawn in place.

  If stdout goes away (`distrl.launch ... | head`), `on_closed` is called once (the run is not killed by its next
  log line: the trainer stops with a checkpoint) and the messages that follow, the stop's included, go to stderr.
  """

  def __init__(self, *, enabled: bool = True, live: bool | None = None, on_closed=lambda: None):
    self.enabled, self._on_closed = enabled, on_closed
    self.live = sys.stdout.isatty() if live is None else live
    self._stream = sys.stdout
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
      self._stream.write(text)
      self._stream.flush()
    except (BrokenPipeError, ValueError, OSError):  # the reader went away (or the stream was closed)
      if self._stream is sys.stderr:
        self.enabled = False
        return
      try:  # Python would otherwise fail again flushing stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
      except (OSError, ValueError):
        pass
      self._stream, self.live, self._open_line = sys.stderr, False, False
      self.print("distrl: stdout was closed: the run stops after this update with a checkpoint; what it says "
                 "goes here")
      self._on_closed()


@contextlib.contextmanager
def _naming(path: str):
  """An OSError inside, raised again with `path` as its filename (a write error of a file object names none)."""
  try:
    yield
  except OSError as error:
    raise OSError(error.errno, error.strerror, error.filename or path) from None


def _events_file(directory: str, resume_step: int) -> EventsWriter:
  """A new TensorBoard events file in `directory`, written in this thread: a write that fails (a full disk) raises
  here, where the trainer says it in one line (tensorboardX's SummaryWriter writes from a thread of its own and
  flushes again at exit, each failure a traceback). On resume, a session-start event at `resume_step` makes
  TensorBoard drop the events a crashed run logged past the checkpoint it resumes from (SummaryWriter's
  purge_step)."""
  os.makedirs(directory, exist_ok=True)
  events = EventsWriter(os.path.join(directory, "events"))
  if resume_step:
    events.write_event(Event(wall_time=clock.time(), step=resume_step, session_log=SessionLog(status=SessionLog.START)))
  return events


class Writer:
  """Writes one record per log interval to stdout, tensorboard and metrics.jsonl (appending on resume), then to the
  trackers (W&B, MLflow) the run opened, if any.

  On a terminal, stdout shows one live progress line; otherwise (CI, a log file) one plain line per
  record (see `Console`).
  """

  def __init__(self, workdir: str, *, total_steps: int, name: str, console: Console, primary: bool = True,
               resume_step: int = 0, trackers: Trackers | None = None):
    self.total_steps, self.name, self.console, self.primary = total_steps, name, console, primary
    self._trackers = trackers or Trackers([], console.print)
    self._since = None
    if primary:
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      self._tb_dir = os.path.join(workdir, "tb")
      self._tb = _events_file(self._tb_dir, resume_step)

  def write(self, *, step: int, update: int, time: float, scalars: dict[str, float]) -> None:
    """One record (process 0 only); an OSError naming the file that could not be written (a full disk)."""
    if not self.primary:
      return
    record = {"step": step, "update": update, "time": round(time, 3), **scalars}
    with _naming(self._jsonl.name):
      self._jsonl.write(json.dumps(record) + "\n")
      self._jsonl.flush()
    with _naming(self._tb_dir):
      now = clock.time()
      for name, value in scalars.items():
        self._tb.write_event(Event(wall_time=now, step=step, summary=scalar(name, value)))
      self._tb.flush()
    self._trackers.log(record)  # after the run's own files: a tracker's failure is one warning, never theirs
    self.console.redraw(self._line(step, scalars, bar=self.console.live))

  def _line(self, step: int, scalars: dict[str, float], bar: bool = False) -> str:
    """The progress line: on a terminal fitted to its width, otherwise every field.

    On a terminal the fields come in order of importance (return, steps/s, time left, evaluation, losses) while
    they fit; the bar's width (20 cells from 120 columns, 10 from 100, none below) and the step counts' form
    (225k/500k below 100 columns) depend on the width alone, so the line keeps its layout from record to record."""
    if self._since is None:  # the ETA's rate: steps per second since this process's first record, all included
      self._since = (clock.perf_counter(), step)
    sps = scalars.get("perf/sps", 0.0)
    elapsed = clock.perf_counter() - self._since[0]
    rate = (step - self._since[1]) / elapsed if elapsed > 1.0 and step > self._since[1] else sps
    eta = f"ETA {_duration((self.total_steps - step) / rate)}" if rate > 0 else "ETA ?"
    done = step / self.total_steps
    value = lambda key, label: f"{label} {scalars[key]:.4g}" if key in scalars and math.isfinite(scalars[key]) else None
    speed = f"{sps:,.0f} steps/s"
    ret, evaluation = value("train/episode_return", "return"), value("eval/return", "eval")
    losses = [value(k, label) for k, label in LOSSES]
    if not bar:
      return " | ".join(f for f in [f"[{self.name}] step {step:,}/{self.total_steps:,} ({100 * done:.0f}%)", speed,
                                    ret, evaluation, *losses, eta] if f)
    width = self.width()
    columns = width + 1
    cells = 20 if columns >= 120 else 10 if columns >= 100 else 0
    short = _count if columns < 100 else "{:,}".format
    count = f"{100 * done:3.0f}% {short(step)}/{short(self.total_steps)}"
    name = f"[{self.name}]"
    if len(name) + 1 + len(count) > width:  # a very narrow terminal: the name gives way
      name = name[:max(4, width - len(count) - 2)] + "…"
    filled = int(round(cells * done))
    graphic = f"{'█' * filled}{'░' * (cells - filled)} " if cells else ""
    line = f"{name} {graphic}{count}"
    for field in filter(None, [ret, speed, eta, evaluation, *losses]):
      if len(line) + 3 + len(field) > width:
        break  # the fields after it matter less: none of them in its place
      line += " | " + field
    return line

  @staticmethod
  def width() -> int:
    """The terminal's width less one column (a line that fills the last column wraps on some terminals)."""
    return max(20, shutil.get_terminal_size(fallback=(80, 24)).columns - 1)

  def summary(self, history: list[dict], *, seconds: float, compile_seconds: float, workdir: str,
              checkpoint: str | None, best: tuple[int, float] | None, greedy: bool = True) -> None:
    """The end of a run in a few short lines: returns, time, where the checkpoint is and how to evaluate it (and,
    where a greedy evaluation is far below what the agent scores as it trains, how to evaluate it as it trains)."""
    if not history:
      return
    last = history[-1]
    trained = [r["train/episode_return"] for r in history if "train/episode_return" in r]
    lines = [f"[{self.name}] {last['step']:,} of {self.total_steps:,} steps; this session {_duration(seconds)} "
             f"(compile {compile_seconds:.1f}s)"]
    returns = []
    if trained:
      returns.append(f"return {trained[-1]:.4g} (best {max(trained):.4g})")
    if "eval/return" in last or best is not None:
      best_text = f"best {best[1]:.4g} at update {best[0]}" if best else ""
      if "eval/return" in last:
        returns.append(f"eval {last['eval/return']:.4g}" + (f" ({best_text})" if best else ""))
      else:  # stopped between evaluations
        returns.append(f"eval {best_text}")
    if returns:
      lines.append("  " + "; ".join(returns))
    if greedy and trained and "eval/return" in last and far_below(last["eval/return"], trained[-1]):
      lines += ["  greedy evaluation scores far below training; the policy as it trains:",
                f"  python -m distrl.evaluate --workdir={workdir} --policy=sampled",
                "  (and --config.eval_policy=sampled evaluates it so in training, best/ too)"]
    if checkpoint:
      lines.append(f"  checkpoint {checkpoint}")
    lines.append(f"  evaluate it: python -m distrl.evaluate --workdir={workdir}" + (" --best" if best else ""))
    for line in lines:
      self.console.print(line)

  def close(self, failed: bool = False) -> None:
    """Ends the trackers' runs (as failed where the run `failed`) and closes both files (each is closed even where
    its last flush fails); the first failure of a file is raised."""
    self._trackers.close(failed)
    self.console.end()
    if self.primary:
      failures = []
      for file in (self._jsonl, self._tb):
        try:
          file.close()
        except OSError as error:
          failures.append(error)
      if failures:
        raise failures[0]
