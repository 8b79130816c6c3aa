"""This process's stderr, passed on through a small forked helper that keeps other libraries' noise from the user.

Two kinds of output reach stderr from C++ threads, where no Python code of ours can intercept them:

- When a save or a restore fails (a full disk, a damaged checkpoint), tensorstore's reads and writes
  still in flight call back into orbax's event loop, closed by then, and each prints a traceback
  ending in "RuntimeError: Event loop is closed": hundreds of lines for one failure that distrl
  reports in one line of its own. The helper drops those lines.
- In a run of several processes, JAX's client aborts the process from C++ the moment it loses the
  coordinator (process 0): C++ log lines, a stack dump, and no word of ours. The helper holds C++ log
  lines until it knows they are not the prelude of that abort; when the abort comes it drops them and
  everything after, and writes the one line of ours instead.

- jaxlib 0.10.0 logs a spurious C++ error for every program it loads from the persistent compilation
  cache (see `_BENIGN_CPP`); the helper drops those lines.

Everything else passes on unchanged, line by line. The helper is forked before JAX starts, ignores the
stop signals (it lives exactly as long as the pipe), and ends when this process ends.
"""

import os
import re
import signal

_CPP_LOG = re.compile(r"^[EWF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\]")  # C++ (absl) log lines
_CPP_CONTINUED = ("Additional GRPC error", ":UNKNOWN:", "RPC:")
_COORDINATOR_ABORT = ("Terminating process because the JAX distributed service detected fatal errors",
                      "terminate called after throwing")
_CLOSED_LOOP = ("asyncio/base_events.py", "_check_closed()", "Event loop is closed")  # lines of those tracebacks
# jaxlib 0.10.0 loading a compiled program from the persistent cache complains that the tuning hints
# "+prefer-no-gather" / "+prefer-no-scatter" are not features of the host: they never are, the load works.
_BENIGN_CPP = ("Target machine feature +prefer-no-gather is not", "Target machine feature +prefer-no-scatter is not")


def guard(who: str) -> None:
  """Routes this process's stderr through the helper; `who` names this process in its line ("process 1 of 2")."""
  read, write = os.pipe()
  if os.fork() == 0:
    os.close(write)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
      signal.signal(sig, signal.SIG_IGN)
    try:
      _pass_on(os.fdopen(read, "rb"), who)
    finally:
      os._exit(0)
  os.close(read)
  os.dup2(write, 2)
  os.close(write)


def _pass_on(stream, who: str) -> None:
  """Copies `stream` to stderr, less the noise described in the module docstring."""
  held_log, held_headers, dying = [], [], False
  for raw in stream:
    line = raw.decode(errors="replace")
    if dying:
      continue
    if any(marker in line for marker in _COORDINATOR_ABORT):
      dying = True
    elif _CPP_LOG.match(line) and any(benign in line for benign in _BENIGN_CPP):
      pass
    elif _CPP_LOG.match(line) or line.startswith(_CPP_CONTINUED):
      held_log.append(raw)
    elif line.startswith("Traceback (most recent call last)"):  # whose? its next line tells
      held_headers.append(raw)
    elif any(part in line for part in _CLOSED_LOOP):
      held_headers = []  # a closed-event-loop traceback: its header goes with it
    else:
      _write(held_log + held_headers + [raw])
      held_log, held_headers = [], []
  if dying:
    _write([(f"distrl: error: {who} stops: lost the run's coordinator, process 0 (JAX's coordination service "
             f"ended this process). Restart every process with the same command to resume from the last "
             f"checkpoint.\n").encode()])
  else:
    _write(held_log + held_headers)


def _write(lines: list[bytes]) -> None:
  try:
    os.write(2, b"".join(lines))
  except OSError:
    pass
