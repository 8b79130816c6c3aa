"""This process's stderr, passed on through a small forked helper that keeps other libraries' noise from the user.

Two kinds of output reach stderr from C++ threads, where no Python code of ours can intercept them:

- When a save or a restore fails (a full disk, a damaged checkpoint), tensorstore's reads and writes
  still in flight call back into orbax's event loop, closed by then, and each prints a traceback
  ending in "RuntimeError: Event loop is closed": hundreds of lines for one failure that distrl
  reports in one line of its own, from several threads at once, so that their pieces interleave
  ("    Traceback ...", blank lines). The helper drops those lines, and a header or blank line just
  before a line of ours.
- In a run of several processes, JAX's client aborts the process from C++ the moment it loses the
  coordinator (process 0), when the coordination service finds a process that stopped sending
  heartbeats, or when not every process joined in time: C++ log lines, a stack dump, and no word of
  ours. The helper holds C++ log lines, and the lines that follow them within a second (they keep
  their place), until it knows they are not the prelude of that abort; when the abort comes it drops
  the C++ lines (the program's own pass on) and everything after, and writes the one line of ours
  instead, saying what the service reported. A line of ours ("distrl: error: ...") also drops the
  C++ lines held before it.

- jaxlib 0.10.0 logs a spurious C++ error for every program it loads from the persistent compilation
  cache (see `_BENIGN_CPP`); the helper drops those lines.

Everything else passes on unchanged, line by line. The helper is forked before JAX starts, ignores the
stop signals (it lives exactly as long as the pipe), and ends when this process ends.
"""

import os
import re
import select
import signal
import time

# C++ (absl) log lines; absl's Python logger writes the same prefix, with a .py file, and is not matched
_CPP_LOG = re.compile(r"^[EWF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+\.(?:cc|cpp|c|h|hpp):\d+\]")
_CPP_CONTINUED = ("Additional GRPC error", ":UNKNOWN:", "RPC:", "The tasks have crashed")  # further lines of one
_COORDINATOR_ABORT = ("Terminating process because the JAX distributed service detected fatal errors",
                      "terminate called after throwing")
_UNHEALTHY = "The following tasks are unhealthy (stopped sending heartbeats):"  # then their numbers, one a line
_HOLD_SECONDS = 1.0  # how long C++ log lines, and the lines that follow them, wait for a possible abort
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
      _pass_on(read, who)
    finally:
      os._exit(0)
  os.close(read)
  os.dup2(write, 2)
  os.close(write)


def _pass_on(fd: int, who: str) -> None:
  """Copies `fd` to stderr, less the noise described in the module docstring."""
  held, headers, dying, unhealthy, listing, joining = [], [], False, [], False, False
  deadline = [None]  # when the held lines, if no abort follows, are passed on
  for raw in _lines(fd, deadline):
    if raw is None:  # the hold ran out: those C++ lines were not the prelude of an abort
      _write([r for r, _ in held])
      held, deadline[0] = [], None
      continue
    line = raw.decode(errors="replace")
    cpp = bool(_CPP_LOG.match(line)) or line.startswith(_CPP_CONTINUED) or listing  # a line of a C++ message
    if listing:  # the coordination service names the processes that stopped sending heartbeats, one a line
      listing = not line.startswith("The tasks have crashed")
      unhealthy += re.findall(r"(\d+)\s*$", line) if listing else []
    elif line.rstrip().endswith(_UNHEALTHY):
      listing = True
    joining = joining or "CoordinationService/RegisterTask" in line  # the abort came while joining the run
    if dying:
      continue
    if any(marker in line for marker in _COORDINATOR_ABORT):  # the C++ lines held were its prelude
      _write([r for r, from_cpp in held if not from_cpp])
      held, headers, deadline[0], dying = [], [], None, True
    elif line.startswith("distrl: error: "):  # our one line: the C++ lines and headers held just before it are noise
      _write([r for r, from_cpp in held if not from_cpp] + [raw])
      held, headers, deadline[0] = [], [], None
    elif _CPP_LOG.match(line) and any(benign in line for benign in _BENIGN_CPP):
      pass
    elif line.lstrip().startswith("Traceback (most recent call last)") or not line.strip():
      headers.append(raw)  # a traceback's header, or a blank line: whose? the next line tells
    elif any(part in line for part in _CLOSED_LOOP):
      headers = []  # a closed-event-loop traceback: its header (and blank lines) go with it
    elif cpp or (held and not headers):  # a C++ line, or one within the hold of one (it keeps its place)
      held.append((raw, cpp))
      deadline[0] = deadline[0] or time.monotonic() + _HOLD_SECONDS
    else:
      _write([r for r, _ in held] + headers + [raw])
      held, headers, deadline[0] = [], [], None
  if dying:
    _write([stop_line(who, f"{_why(who, unhealthy, joining)} (JAX's coordination service ended this process)")
            .encode()])
  else:
    _write([r for r, _ in held] + [r for r in headers if r.strip()])


def stop_line(who: str, reason: str) -> str:
  """The one line with which a process of a multi-process run stops ("process 1 of 2"), saying why."""
  return (f"distrl: error: {who} stops: {reason}. Restart every process with the same command to resume from the "
          f"last checkpoint.\n")


def _why(who: str, unhealthy: list[str], joining: bool) -> str:
  """Why JAX's coordination service ended this process, from what it wrote."""
  me = re.match(r"process (\d+) ", who)
  peers = [p for p in dict.fromkeys(unhealthy) if not (me and p == me.group(1))]
  if peers:
    return (f"process {', '.join(peers)} stopped sending heartbeats to the run's coordinator (it died, hung, or was "
            f"stopped)")
  if joining:
    return ("not every process joined the run in time (one did not start, died while starting, or cannot reach the "
            "coordinator)")
  if me and me.group(1) == "0":
    return "another process of the run died or stopped answering"
  return "lost the run's coordinator, process 0"


def _lines(fd: int, deadline: list):
  """The lines read from `fd` until it closes, and None whenever `deadline[0]` passes (before any later line)."""
  pending = b""
  while True:
    wait = None if deadline[0] is None else deadline[0] - time.monotonic()
    if wait is not None and (wait <= 0 or not select.select([fd], [], [], wait)[0]):
      yield None
      continue
    chunk = os.read(fd, 1 << 16)
    if not chunk:
      break
    *lines, pending = (pending + chunk).split(b"\n")
    yield from (line + b"\n" for line in lines)
  if pending:
    yield pending


def _write(lines: list[bytes]) -> None:
  try:
    os.write(2, b"".join(lines))
  except OSError:
    pass
