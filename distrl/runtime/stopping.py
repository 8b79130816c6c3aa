"""Stop requests: SIGTERM, SIGINT (Ctrl-C), SIGHUP (the terminal closed) and a closed stdout.

A request only sets a flag; no handler ever raises, so a signal that lands in the middle of
compilation, of a chunk or of a checkpoint save interrupts none of them. The trainer looks at
the flag while it waits for the compile (`compiling`; with one process a stop there ends the start
at once: nothing was trained) and between chunks (`loop.MAX_CHUNK_SECONDS` bounds how long that
takes), and with several processes every process takes the same decision after the same update
(`agree`): each stops, saves the same checkpoint, and exits 0. A repeated request says what is
under way instead of cutting it short; `kill -9` still ends a process at once (the last complete
checkpoint stays).

`launch` installs the handlers first thing, before anything else is imported, so that a Ctrl-C during
start-up or compilation is a request like any other (this module imports nothing heavy for that reason).
"""

import enum
import os
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Phase(enum.Enum):
  """Where the run is, as the trainer announces it (`StopRequest.enter`): what a repeated request says."""

  STARTING = "starting"  # before the update loop: a stop saves nothing new
  UPDATING = "updating"  # in the update loop: a stop saves a checkpoint after the current chunk
  SAVING = "saving"  # writing the final checkpoint
  ENDING = "ending"  # saved; writing the summary and closing


class StopRequest:
  """The process's stop request: `reason` is None until a signal (its name) or another cause arrives."""

  def __init__(self):
    self.reason: str | None = None
    self.phase = Phase.STARTING
    self.saving: str | None = None  # what is being saved, in Phase.SAVING
    self._previous = {}
    self._said: set[str] = set()

  def install(self) -> "StopRequest":
    """Routes SIGTERM, SIGINT and SIGHUP here (main thread only; elsewhere signals keep their handlers).

    Call it again after `jax.distributed.initialize`, whose preemption notifier takes SIGTERM for itself.
    """
    if threading.current_thread() is threading.main_thread():
      for sig in SIGNALS:
        previous = signal.signal(sig, self._handle)
        self._previous.setdefault(sig, previous)
    return self

  def uninstall(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  def ignore_from_now(self) -> None:
    """Ignores further stop signals: the run is over (saved) and the interpreter is winding down, where a late
    Ctrl-C would otherwise end the process with a traceback or a signal's exit status."""
    if threading.current_thread() is threading.main_thread():
      for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)

  @property
  def installed(self) -> bool:
    return bool(self._previous)

  def enter(self, phase: Phase, saving: str | None = None) -> None:
    """The run has reached `phase` (with Phase.SAVING, `saving` says what is being saved)."""
    self.phase, self.saving = phase, saving

  def request(self, reason: str) -> None:
    if self.reason is None:
      self.reason = reason

  def _handle(self, signum, frame):
    name = signal.Signals(signum).name
    if self.reason is None:
      self.reason = name
      return
    text = f"distrl: {name}: " + {
        Phase.STARTING: f"already stopping ({self.reason}); the run stops before its first update",
        Phase.UPDATING: f"already stopping ({self.reason}); the run saves a checkpoint after the current chunk",
        Phase.SAVING: f"still saving {self.saving}; waiting for it to complete (kill -9 would lose it)",
        Phase.ENDING: f"already stopping ({self.reason}); the run is saved and ending",
    }[self.phase]
    if text not in self._said:  # once each: a key held down is not a wall of lines
      self._said.add(text)
      _say(text)


def _say(text: str) -> None:
  """Writes a line to stderr from a signal handler (os.write: no buffered stream is re-entered)."""
  try:
    os.write(2, (text + "\n").encode())
  except OSError:
    pass


REQUEST = StopRequest()  # the one stop request of this process


REASONS = ("SIGTERM", "SIGINT", "SIGHUP", "closed stdout")  # what a process can be asked to stop by


def agree(reason: str | None, chunk: int) -> tuple[str | None, int]:
  """(reason, chunk) as every process sees them: a stop if any process was asked to (its reason, naming the
  process when it is another), and the smallest chunk any proposes. One all-gather across processes (none with
  one process), taken between chunks."""
  import jax

  if jax.process_count() == 1:
    return reason, chunk
  import numpy as np
  from jax.experimental import multihost_utils

  code = 0 if reason is None else 1 + (REASONS.index(reason) if reason in REASONS else len(REASONS))
  votes = np.asarray(multihost_utils.process_allgather(np.array([code, chunk], np.int32)))
  asked = [p for p in range(len(votes)) if votes[p, 0]]
  if not asked:
    return None, int(votes[:, 1].min())
  if reason is None:
    first = int(votes[asked[0], 0]) - 1
    reason = f"{REASONS[first] if first < len(REASONS) else 'a stop request'} to process {asked[0]}"
  return reason, int(votes[:, 1].min())
