"""The noise filter: what other libraries write to stderr about a failure that distrl states in one line of its
own, kept out of the user's way and never lost.

The entry points switch it on (`distrl.launch`, `distrl.evaluate`): `switch_on(who)` before JAX starts, then
`keep_in(workdir)` once the run's directory is known. A program that only imports distrl filters nothing.

- `DISTRL_RAW_STDERR=1` switches it off: stderr is left as it is (no helper) and every library's log records
  and Python's unraisable exceptions pass as those libraries write them.
- Everything a filter drops is kept, appended, in `WORKDIR/noise.log` (`noise-<process>.log` in a run of several
  processes), under a header naming the filter. Until the workdir exists (or where it cannot be written) it is
  kept in a temporary file, `$TMPDIR/distrl-noise-*.log`, moved into the workdir once it exists.
- A line of ours (`distrl: error: ...`) written after something was dropped ends with where it is:
  `(other libraries' messages: WORKDIR/noise.log)`.

Each filter is an entry of `FILTERS`: the upstream package and versions whose output it drops, what, and why.
`tests/test_noise.py` checks every filter on its sample and that the installed package still holds the text
it matches (`evidence`), so that a new wording fails a test instead of reaching users.

How the stderr filters work. Some of that output comes from C++ threads, where no Python code can intercept
it, so a small helper forked before JAX starts owns fd 2: this process writes to a pipe, the helper passes
each line on, less the noise, and keeps what it drops. It reads a second pipe, on which this process's own
filters (log records, unraisable exceptions) send what they drop and `keep_in` names the file; so one writer
keeps everything, in order. The helper ignores the stop signals, lives exactly as long as the pipe, and ends
when this process ends.

- C++ log lines, and the lines that follow them within a second (they keep their place), are held until it is
  known that they are not the prelude of JAX's distributed client aborting the process
  (`jax-coordination-abort`): then the C++ lines and everything after are dropped and one line of ours says
  what the coordination service reported. A line of ours also drops the C++ lines held just before it
  (`jaxlib-cpp-before-our-line`).
- The pieces of closed-event-loop tracebacks (`tensorstore-closed-event-loop`) and the cached-program lines
  (`jaxlib-cpu-aot-hints`) are dropped as they come.

Everything else passes on unchanged, line by line.
"""

import dataclasses
import logging
import os
import re
import select
import signal
import sys
import tempfile
import threading
import time
import traceback

RAW = "DISTRL_RAW_STDERR"  # set (to anything but "" or "0"): the filter is off


@dataclasses.dataclass(frozen=True)
class Filter:
  """One kind of noise: whose, what is dropped, and the upstream behaviour that makes it noise."""

  name: str  # in noise.log's headers
  upstream: str  # the package and the versions it was seen with
  drops: str
  why: str
  sample: tuple[str, ...]  # what the upstream package wrote (lines; for a log record its message first)
  evidence: tuple[str, ...]  # text the installed `package` holds while it can still write `sample`
  package: str  # the module whose files hold `evidence`


AOT_HINTS = Filter(
    "jaxlib-cpu-aot-hints", "jaxlib 0.9.1-0.10.1 (seen with 0.10.0; 0.10.2 printed none in a check on x86-64)",
    "cpu_aot_loader.cc's E-level line that +prefer-no-gather / +prefer-no-scatter are not supported on the host, "
    "one per program loaded from JAX's persistent compilation cache",
    "the XLA:CPU AOT loader takes LLVM tuning preferences for CPU features the host lacks (jax-ml/jax#38445, "
    "openxla/xla#44565); they never are features, so the line says nothing the user can act on",
    ("E1123 21:00:04.123456   4661 cpu_aot_loader.cc:195] Loading XLA:CPU AOT result. Target machine feature "
     "+prefer-no-gather is not  supported on the host machine. Machine type used for XLA:CPU compilation doesn't "
     "match the machine type for execution. Compile machine features: [+avx2,+prefer-no-gather] vs host machine "
     "features: [+avx2]",),
    ("Loading XLA:CPU AOT result. Target machine feature ", " is not  supported on the host machine.",
     "prefer-no-gather", "prefer-no-scatter"), "jaxlib")
CLOSED_LOOP = Filter(
    "tensorstore-closed-event-loop", "tensorstore 0.1.x under orbax-checkpoint 0.12, Python 3.11 asyncio",
    "the tracebacks ending in 'RuntimeError: Event loop is closed' that tensorstore's threads print, several at "
    "once (their pieces interleave), after a save or a restore failed (a full disk, a damaged checkpoint)",
    "tensorstore's reads and writes still in flight call back into orbax's event loop after orbax closed it, and "
    "call_soon_threadsafe raises on a closed loop (python/asyncio#258): up to 1,621 lines seen for one failure "
    "that distrl reports in one line",
    ("Traceback (most recent call last):",
     '  File "/usr/lib/python3.11/asyncio/base_events.py", line 806, in call_soon_threadsafe',
     "    self._check_closed()",
     '  File "/usr/lib/python3.11/asyncio/base_events.py", line 519, in _check_closed',
     "    raise RuntimeError('Event loop is closed')", "RuntimeError: Event loop is closed"),
    ("Event loop is closed", "def _check_closed("), "asyncio")
COORDINATION_ABORT = Filter(
    "jax-coordination-abort", "jaxlib 0.10.x (JAX's distributed client, xla/pjrt/distributed)",
    "the C++ log lines and stack dump with which JAX's client ends a process of a multi-process run that lost the "
    "coordinator or a peer, or whose peers did not all join; one line of ours says which process to look at",
    "the client aborts from C++ (a fatal log in client.h) before any Python code can act, and jaxlib cannot hand "
    "the event to Python; its text names gRPC calls and statuses, not the process that stopped",
    ("W1130 18:59:25.435268    4661 preemption_sync_manager.cc:147] Failed to retrieve preemption notice from "
     "coordination service: UNAVAILABLE: recvmsg:Connection reset by peer",
     "Additional GRPC error information from remote target coordination_service while calling "
     "/xla.coordination.CoordinationService/GetKeyValue:",
     "F1130 18:59:25.435434    4661 client.h:80] Terminating process because the JAX distributed service detected "
     "fatal errors. absl::Status: UNAVAILABLE: Failed to send RPC to coordination service.",
     "*** Check failure stack trace: ***"),
    ("Terminating process because the JAX distributed service detected fatal errors",
     "The following tasks are unhealthy (stopped sending heartbeats):", "The tasks have crashed",
     "Additional GRPC error information", "/xla.coordination.CoordinationService/RegisterTask",
     "Check failure stack trace"), "jaxlib")
CPP_BEFORE_OURS = Filter(
    "jaxlib-cpp-before-our-line", "jaxlib 0.10.x (JAX's coordination service)",
    "C++ log lines (with their further lines) held within a second before a line of ours, and the traceback "
    "headers and blank lines just before it",
    "the coordination service logs a silent peer at E level just before distrl's watchdog says, in one line, "
    "which process stopped (seen in CI with jaxlib 0.10.2)",
    ("E1130 18:50:53.855378   27126 coordination_service.cc:1549] [10632551767313103259] Use error polling to "
     "propagate the following error to all tasks: UNAVAILABLE: The following tasks are unhealthy (stopped sending "
     "heartbeats):", "1",
     "The tasks have crashed. Check the task logs for an earlier error, or scheduler events (e.g. preemption, "
     "eviction) to debug further. [type.googleapis.com/tensorflow.CoordinationServiceError='']",
     "E1130 18:50:53.855519   27137 coordination_service_agent.cc:289] Polled an error from coordination service "
     "(this can be an error from this or another task)."),
    ("Polled an error from coordination service", "The following tasks are unhealthy (stopped sending heartbeats):",
     "The tasks have crashed"), "jaxlib")
ORBAX_LOGS = Filter(
    "orbax-logs", "orbax-checkpoint 0.12",
    "orbax's own log records (absl logging, from files under orbax/): its failures, with tracebacks, from "
    "background threads",
    "orbax logs a failed save or restore before raising it; distrl turns each into one line of its own (a failed "
    "run naming the checkpoint kept, or a damaged-checkpoint warning)",
    ("[process=0][thread=array_type_handler] Failed to write array: ValueError: NOT_FOUND: Error writing "
     "\"actors.obs/c/0\" in OCDBT database",),
    ("from absl import logging",), "orbax.checkpoint")
ORBAX_UNRETRIEVED = Filter(
    "orbax-unretrieved-futures", "orbax-checkpoint 0.12, tensorstore 0.1.x",
    "asyncio's 'Task exception was never retrieved' / 'Future exception was never retrieved' records about "
    "orbax's coroutines or tensorstore's futures",
    "after a failed background write, orbax gives up on its other coroutines and tensorstore's futures, and asyncio "
    "reports each failure again when it collects them (seen in 1 full-disk run in 3)",
    ("Task exception was never retrieved",
     "future: <Task finished name='Task-7' coro=<_write_array() done, defined at "
     "/site-packages/orbax/checkpoint/_src/serialization/serialization.py:95> exception=ValueError('OCDBT')>"),
    ("exception was never retrieved",), "asyncio")
ORBAX_UNRAISABLE = Filter(
    "orbax-unraisable", "orbax-checkpoint 0.12, tensorstore 0.1.x",
    "Python's 'Exception ignored in: <coroutine object _read_array_index_and_device_put ...>' reports (a traceback "
    "and TensorStore's whole spec, per array) and closed-event-loop RuntimeErrors raised in tensorstore's callbacks",
    "orbax's reads of a damaged checkpoint raise while being collected, from several threads at once: 500-3,100 "
    "lines seen for one damaged checkpoint, which distrl skips with a one-line warning",
    ("Exception ignored in: <coroutine object _read_array_index_and_device_put at 0x7f3a2c1b8e40>",),
    ("_read_array_index_and_device_put",), "orbax.checkpoint")
JAX_CALLBACK = Filter(
    "jax-callback-traceback", "jax 0.10.x",
    "JAX's log record 'jax.pure_callback failed' / 'jax.io_callback failed' with the traceback of the exception a "
    "host callback (an environment outside JAX) raised",
    "JAX logs the callback's exception, then raises a JaxRuntimeError that carries only its text "
    "(jax-ml/jax#26102); distrl reports that in one line, and the traceback, which finds the failing line of the "
    "environment's code, is kept",
    ("jax.pure_callback failed",),
    ('"jax.pure_callback failed"', '"jax.io_callback failed"'), "jax")

FILTERS = (AOT_HINTS, CLOSED_LOOP, COORDINATION_ABORT, CPP_BEFORE_OURS, ORBAX_LOGS, ORBAX_UNRETRIEVED,
           ORBAX_UNRAISABLE, JAX_CALLBACK)

# C++ (absl) log lines; absl's Python logger writes the same prefix, with a .py file, and is not matched
_CPP_LOG = re.compile(r"^[EWF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+\.(?:cc|cpp|c|h|hpp):\d+\]")
_CPP_CONTINUED = ("Additional GRPC error", ":UNKNOWN:", "RPC:", "The tasks have crashed")  # further lines of one
_COORDINATOR_ABORT = ("Terminating process because the JAX distributed service detected fatal errors",
                      "terminate called after throwing")
_UNHEALTHY = "The following tasks are unhealthy (stopped sending heartbeats):"  # then their numbers, one a line
_HOLD_SECONDS = 1.0  # how long C++ log lines, and the lines that follow them, wait for a possible abort
_CLOSED_LOOP = ("asyncio/base_events.py", "_check_closed()", "Event loop is closed")  # lines of those tracebacks
_AOT_HINTS = ("Target machine feature +prefer-no-gather is not", "Target machine feature +prefer-no-scatter is not")
_ORBAX = (f"{os.sep}orbax{os.sep}", "OCDBT", "tensorstore")  # in a record or a traceback: about orbax's work
_OURS = "distrl: error: "
_KEPT_AT = " (other libraries' messages: {})"  # ends a line of ours once something was kept

_to_helper = None  # this process's end of the pipe to the helper, while the filter is on
_sending = threading.Lock()


def raw() -> bool:
  """Whether the user switched the filter off (DISTRL_RAW_STDERR)."""
  return os.environ.get(RAW, "") not in ("", "0")


def switch_on(who: str) -> None:
  """Routes this process's stderr through the helper and installs the log filters, unless `raw()`. Call it before
  JAX starts; `who` names this process in its stop line ("process 1 of 2") and in noise.log."""
  global _to_helper
  if raw() or _to_helper is not None:
    return
  read, write = os.pipe()
  control_read, control_write = os.pipe()
  if os.fork() == 0:
    os.close(write)
    os.close(control_write)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
      signal.signal(sig, signal.SIG_IGN)
    try:
      _pass_on(read, control_read, _Kept(who), who)
    finally:
      os._exit(0)
  os.close(read)
  os.close(control_read)
  os.dup2(write, 2)
  os.close(write)
  _to_helper = control_write
  for logger, matches in _LOG_FILTERS.items():
    logging.getLogger(logger).addFilter(_Dropping(matches))
  sys.unraisablehook = _UnraisableHook(sys.unraisablehook)


def keep_in(workdir: str, process: int | None = None) -> None:
  """What the filter dropped so far, and drops from now on, go to WORKDIR/noise.log (`noise-<process>.log` for
  process `process` of a run of several), appended; once the directory exists. Nothing when the filter is off."""
  if _to_helper is None or "://" in workdir:  # an object store (gs://) cannot be appended to: the temporary file
    return
  _send(b"K", os.path.join(workdir, "noise.log" if process is None else f"noise-{process}.log").encode())


def dropping(record: logging.LogRecord) -> Filter | None:
  """The filter that drops this log record once the filter is on (by its logger's name), or None."""
  matches = _LOG_FILTERS.get(record.name)
  return matches(record) if matches else None


def stop_line(who: str, reason: str) -> str:
  """The one line with which a process of a multi-process run stops ("process 1 of 2"), saying why."""
  return (f"distrl: error: {who} stops: {reason}. Restart every process with the same command to resume from the "
          f"last checkpoint.\n")


def _from_orbax(record: logging.LogRecord) -> Filter | None:
  return ORBAX_LOGS if f"{os.sep}orbax{os.sep}" in record.pathname else None


def _about_orbax(record: logging.LogRecord) -> Filter | None:
  """asyncio's records about orbax's or tensorstore's work (by message, or by the traceback attached)."""
  frames = traceback.extract_tb(record.exc_info[2]) if record.exc_info and record.exc_info[2] is not None else []
  if any(marker in record.getMessage() for marker in _ORBAX) or \
      any(marker in frame.filename for frame in frames for marker in _ORBAX):
    return ORBAX_UNRETRIEVED
  return None


def _callback_failed(record: logging.LogRecord) -> Filter | None:
  return JAX_CALLBACK if record.getMessage().endswith("callback failed") else None


_LOG_FILTERS = {"absl": _from_orbax, "asyncio": _about_orbax, "jax._src.callback": _callback_failed}
_FORMAT = logging.Formatter("%(levelname)s %(asctime)s %(name)s %(pathname)s:%(lineno)d] %(message)s")


class _Dropping(logging.Filter):
  """Drops the records `matches` names a filter for, and sends them to the helper."""

  def __init__(self, matches):
    super().__init__()
    self.matches = matches

  def filter(self, record: logging.LogRecord) -> bool:
    kind = self.matches(record)
    if kind is None:
      return True
    _drop(kind, _FORMAT.format(record) + "\n")
    return False


def dropping_unraisable(unraisable) -> Filter | None:
  """ORBAX_UNRAISABLE for what Python says of orbax's reads that raised while being collected and of tensorstore's
  callbacks into orbax's closed event loop; None for anything else."""
  frames = traceback.extract_tb(unraisable.exc_traceback) if unraisable.exc_traceback else []
  closed_loop = isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed"
  if closed_loop or any(marker in frame.filename for frame in frames for marker in _ORBAX):
    return ORBAX_UNRAISABLE
  return None


class _UnraisableHook:
  """sys.unraisablehook: drops what `dropping_unraisable` names (sent to the helper), passes the rest to `previous`."""

  def __init__(self, previous):
    self.previous = previous

  def __call__(self, unraisable) -> None:
    kind = dropping_unraisable(unraisable)
    if kind is None:
      return self.previous(unraisable)
    try:
      where = f"{unraisable.err_msg or 'Exception ignored in'}: {unraisable.object!r}\n"
      _drop(kind, where + "".join(traceback.format_exception(unraisable.exc_type, unraisable.exc_value,
                                                             unraisable.exc_traceback)))
    except Exception:  # an object whose repr fails, or the interpreter shutting down: Python's own report
      self.previous(unraisable)


def _drop(kind: Filter, text: str) -> None:
  _send(b"D", kind.name.encode() + b"\0" + text.encode(errors="replace"))


def _send(what: bytes, payload: bytes) -> None:
  """One message to the helper: its kind (b"D": dropped text, b"K": the file to keep it in), length, payload."""
  message = what + len(payload).to_bytes(4, "big") + payload
  with _sending:
    try:
      while message:
        message = message[os.write(_to_helper, message):]
    except OSError:  # the helper is gone
      pass


class _Kept:
  """Where the helper keeps what it drops: the workdir's file once named and present, else a temporary file."""

  def __init__(self, who: str):
    self.who, self.pid = who, os.getppid()  # the process whose stderr this is
    self.target = None  # WORKDIR/noise.log, once `keep_in` named it
    self.temp = None  # the temporary file, while it holds something
    self.path = None  # the file that holds what was kept, once something was
    self.named = False  # a line of ours named the temporary file: it stays there
    self.section = None  # the filter of the last header written

  def keep(self, kind: Filter, lines: list[bytes]) -> None:
    text = b"".join(lines)
    if not text.strip():
      return
    if kind != self.section:
      text = (f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {self.who} (pid {self.pid}): dropped by {kind.name} "
              f"({kind.upstream})\n").encode() + text
      self.section = kind
    text += b"" if text.endswith(b"\n") else b"\n"
    self._settle()
    if self.temp is None and self._ready() and self._append(self.target, text):
      self.path = self.target
    elif self._append(self._temp(), text):
      self.path = self.temp

  def keep_in(self, target: str) -> None:
    self.target = target
    self._settle()

  def where(self) -> str | None:
    """The file that holds what was kept, for a line of ours to name (None: nothing was kept)."""
    self._settle()
    self.named = self.named or (self.path is not None and self.path == self.temp)
    return self.path

  def _ready(self) -> bool:
    """Whether the workdir's file can take the text: named, its directory there, and no line named the temporary."""
    return self.target is not None and not self.named and os.path.isdir(os.path.dirname(self.target) or ".")

  def _settle(self) -> None:
    """Moves the temporary file's text to the end of the workdir's file, once that is ready."""
    if self.temp is None or not self._ready():
      return
    try:
      with open(self.temp, "rb") as f:
        text = f.read()
      if self._append(self.target, text):
        os.remove(self.temp)
        self.temp, self.path = None, self.target
    except OSError:
      pass

  def _temp(self) -> str | None:
    if self.temp is None:
      try:
        fd, self.temp = tempfile.mkstemp(prefix="distrl-noise-", suffix=".log")
        os.close(fd)
      except OSError:  # no writable temporary directory: what is dropped is lost, the user's lines are not
        return None
    return self.temp

  @staticmethod
  def _append(path: str | None, text: bytes) -> bool:
    if path is None:
      return False
    try:
      with open(path, "ab") as f:
        f.write(text)
      return True
    except OSError:  # a full disk, a workdir that cannot be written
      return False


class _Messages:
  """Reads the messages of `_send` from the pipe `fd` (non-blocking) and hands them to `kept`."""

  def __init__(self, fd: int, kept: _Kept):
    self.fd, self.kept, self.pending, self.open = fd, kept, b"", True
    os.set_blocking(fd, False)

  def read(self) -> None:
    while self.open:
      try:
        chunk = os.read(self.fd, 1 << 16)
      except BlockingIOError:
        break
      self.open = bool(chunk)
      self.pending += chunk
    while len(self.pending) >= 5 and len(self.pending) >= 5 + int.from_bytes(self.pending[1:5], "big"):
      end = 5 + int.from_bytes(self.pending[1:5], "big")
      what, payload, self.pending = self.pending[:1], self.pending[5:end], self.pending[end:]
      if what == b"K":
        self.kept.keep_in(payload.decode(errors="replace"))
      else:
        name, text = payload.split(b"\0", 1)
        self.kept.keep(next(f for f in FILTERS if f.name == name.decode()), [text])


def _pass_on(fd: int, messages_fd: int, kept: _Kept, who: str) -> None:
  """Copies `fd` to stderr, less the noise described in the module docstring, which goes to `kept`."""
  held, headers, dying, unhealthy, listing, joining = [], [], False, [], False, False
  deadline = [None]  # when the held lines, if no abort follows, are passed on
  for raw_line in _lines(fd, _Messages(messages_fd, kept), deadline):
    if raw_line is None:  # the hold ran out: those C++ lines were not the prelude of an abort
      _write([r for r, _ in held])
      held, deadline[0] = [], None
      continue
    line = raw_line.decode(errors="replace")
    cpp = bool(_CPP_LOG.match(line)) or line.startswith(_CPP_CONTINUED) or listing  # a line of a C++ message
    if listing:  # the coordination service names the processes that stopped sending heartbeats, one a line
      listing = not line.startswith("The tasks have crashed")
      unhealthy += re.findall(r"(\d+)\s*$", line) if listing else []
    elif line.rstrip().endswith(_UNHEALTHY):
      listing = True
    joining = joining or "CoordinationService/RegisterTask" in line  # the abort came while joining the run
    if dying:
      kept.keep(COORDINATION_ABORT, [raw_line])
    elif any(marker in line for marker in _COORDINATOR_ABORT):  # the C++ lines held were its prelude
      _write([r for r, from_cpp in held if not from_cpp])
      kept.keep(COORDINATION_ABORT, [r for r, from_cpp in held if from_cpp] + headers + [raw_line])
      held, headers, deadline[0], dying = [], [], None, True
    elif line.startswith(_OURS):  # our one line: the C++ lines and headers held just before it are noise
      _write([r for r, from_cpp in held if not from_cpp])
      kept.keep(CPP_BEFORE_OURS, [r for r, from_cpp in held if from_cpp] + headers)
      _write([_naming(raw_line, kept)])
      held, headers, deadline[0] = [], [], None
    elif _CPP_LOG.match(line) and any(hint in line for hint in _AOT_HINTS):
      kept.keep(AOT_HINTS, [raw_line])
    elif line.lstrip().startswith("Traceback (most recent call last)") or not line.strip():
      headers.append(raw_line)  # a traceback's header, or a blank line: whose? the next line tells
    elif any(part in line for part in _CLOSED_LOOP):
      kept.keep(CLOSED_LOOP, headers + [raw_line])  # a closed-event-loop traceback: its header goes with it
      headers = []
    elif cpp or (held and not headers):  # a C++ line, or one within the hold of one (it keeps its place)
      held.append((raw_line, cpp))
      deadline[0] = deadline[0] or time.monotonic() + _HOLD_SECONDS
    else:
      _write([r for r, _ in held] + headers + [raw_line])
      held, headers, deadline[0] = [], [], None
  if dying:
    line = stop_line(who, f"{_why(who, unhealthy, joining)} (JAX's coordination service ended this process)")
    _write([_naming(line.encode(), kept)])
  else:
    _write([r for r, _ in held] + [r for r in headers if r.strip()])


def _naming(line: bytes, kept: _Kept) -> bytes:
  """A line of ours, ending with where the dropped text is kept, if any was."""
  where = kept.where()
  if where is None:
    return line
  body = line.rstrip(b"\n")
  return body + _KEPT_AT.format(where).encode() + line[len(body):]


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


def _lines(fd: int, messages: _Messages, deadline: list):
  """The lines read from `fd` until it closes, and None whenever `deadline[0]` passes (before any later line).
  Messages from this process are read first whenever both pipes have something: they were sent before."""
  pending = b""
  while True:
    wait = None if deadline[0] is None else deadline[0] - time.monotonic()
    if wait is not None and wait <= 0:
      yield None
      continue
    ready = select.select([fd] + ([messages.fd] if messages.open else []), [], [], wait)[0]
    if not ready:
      yield None
      continue
    messages.read()
    if fd not in ready:
      continue
    chunk = os.read(fd, 1 << 16)
    if not chunk:
      break
    *lines, pending = (pending + chunk).split(b"\n")
    yield from (line + b"\n" for line in lines)
  messages.read()
  if pending:
    yield pending


def _write(lines: list[bytes]) -> None:
  try:
    os.write(2, b"".join(lines))
  except OSError:
    pass
