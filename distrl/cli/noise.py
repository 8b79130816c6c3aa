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

Each filter is an entry of `FILTERS`: whose output it drops, what, and why. `tests/test_noise.py` makes the
upstream code write each (a host callback that raises, orbax saving to a full disk and reading a damaged
checkpoint, JAX's distributed runtime losing a process), so that a new wording, or noise no longer written, fails a
test.

Log records and unraisable exceptions are filtered in this process (a filter on the upstream logger, and
`sys.unraisablehook`). JAX's distributed runtime writes from C++ threads and then aborts the process, where no
Python code runs: for it, a small helper forked before JAX starts owns fd 2. This process writes to a pipe; the
helper passes each line on unchanged but the runtime's, and after the runtime's abort writes one line of ours
saying what it reported. It reads a second pipe, on which this process's own filters send what they drop and
`keep_in` names the file; so one writer keeps everything, in order. The helper ignores the stop signals, lives
exactly as long as the pipe, and ends when this process ends. In a run of several processes, Gloo (the CPU
collectives) writes a line to stdout from C++ each time a set of devices first connects, at the first collective
of each compiled program: `route_stdout` then sends fd 1, where C and C++ code write, through the helper too, which
keeps those lines and passes the rest on; Python's own `sys.stdout` keeps writing where it wrote, held back by
nothing.
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

from absl import logging as absl_logging  # before a filter goes on "absl": that logger must be absl's own class

RAW = "DISTRL_RAW_STDERR"  # set (to anything but "" or "0"): the filter is off


@dataclasses.dataclass(frozen=True)
class Filter:
  """One kind of noise: whose, what is dropped, and the upstream behaviour that makes it noise."""

  name: str  # in noise.log's headers
  upstream: str  # the package and the versions whose output it drops
  drops: str
  why: str


JAX_CALLBACK = Filter(
    "jax-callback-traceback", "jax 0.10",
    "JAX's log record 'jax.pure_callback failed' / 'jax.io_callback failed' with the traceback of the exception a "
    "host callback (an environment outside JAX) raised",
    "JAX logs the callback's exception, then raises a JaxRuntimeError that carries only its text "
    "(jax-ml/jax#26102); distrl reports that in one line, and the traceback, which finds the failing line of the "
    "environment's code, is kept")
ORBAX_LOGS = Filter(
    "orbax-logs", "orbax-checkpoint 0.12",
    "orbax's own log records (absl logging, from files under orbax/): its failures, with tracebacks, from "
    "background threads",
    "orbax logs a failed save or restore before raising it; distrl turns each into one line of its own (a failed "
    "run naming the checkpoint kept, or a damaged-checkpoint warning)")
ORBAX_ABANDONED = Filter(
    "orbax-abandoned-work", "orbax-checkpoint 0.12, tensorstore 0.1",
    "what Python and asyncio report of the work orbax leaves in flight after a failure: 'Event loop is closed' "
    "raised in tensorstore's callbacks, 'Exception ignored in: <coroutine object ...>' from orbax's reads, "
    "asyncio's '... exception was never retrieved' about orbax's futures",
    "orbax closes the event loop of its coroutines once one has failed, without cancelling the others "
    "(asyncio_utils.run_sync): tensorstore's callbacks then find the loop closed, and what was left is reported as "
    "it is collected, from several threads: hundreds of lines for one full disk or damaged checkpoint")
JAX_DISTRIBUTED = Filter(
    "jax-distributed-runtime", "jaxlib 0.10 (xla/pjrt/distributed)",
    "the C++ log lines of JAX's coordination service and client (coordination_service*.cc, "
    "preemption_sync_manager.cc, client.h), and everything after the client's fatal 'Terminating process' line (its "
    "stack dump)",
    "when a process of the run dies, hangs or never joins, the service logs it and every client aborts from C++ "
    "before any Python code can act, in terms of gRPC calls and statuses; one line of ours says which process to "
    "look at")

GLOO_CONNECTED = Filter(
    "gloo-connected", "jaxlib 0.10 (gloo, the CPU collectives of a run of several processes)",
    "Gloo's '[Gloo] Rank R is connected to N peer ranks. Expected number of connected peer ranks is : N' line, which "
    "it writes to stdout from C++ as the processes' CPU devices connect",
    "it says that the processes joined, in the middle of distrl's own lines, which say so already (the start's "
    "'N device(s)' and the processes of run.json)")

FILTERS = (JAX_CALLBACK, ORBAX_LOGS, ORBAX_ABANDONED, JAX_DISTRIBUTED, GLOO_CONNECTED)

# A C++ log line (absl's prefix: level, date, time, thread, file:line) of JAX's distributed runtime
_RUNTIME_LOG = re.compile(r"[EWF]\d{4} [\d:.]+\s+\d+ (?:coordination_\w+\.cc|preemption_\w+\.cc|client\.h):\d+\] ")
_ABORT = "Terminating process because the JAX distributed service detected fatal errors"
_UNHEALTHY = "The following tasks are unhealthy (stopped sending heartbeats):"  # then their numbers, one a line
_CONTINUED = ("Additional GRPC error information", ":UNKNOWN:", "The tasks have crashed")  # lines of one message
# Gloo's line, or a line of it with parts of others': the devices of a process connect from several threads, whose
# lines' parts (C++'s `<<`) interleave; each line ends with one's "Expected ...: N" and its newline.
_GLOO_CONNECTED = re.compile(r"\[Gloo\] Rank |Expected number of connected peer ranks is : ")
_GLOO_REST = re.compile(rb"\d*\s*")
_ORBAX = f"{os.sep}orbax{os.sep}"
_OURS = "distrl: error: "
_KEPT_AT = " (other libraries' messages: {})"  # ends a line of ours once something was kept
_FORMAT = logging.Formatter("%(levelname)s %(asctime)s %(name)s %(pathname)s:%(lineno)d] %(message)s")

_to_helper = None  # this process's end of the pipe to the helper, while the filter is on
_stdout_pipe = None  # the end of the helper's stdout pipe that `route_stdout` puts on fd 1, until it does
_sending = threading.Lock()


def raw() -> bool:
  """Whether the user switched the filter off (DISTRL_RAW_STDERR)."""
  return os.environ.get(RAW, "") not in ("", "0")


def switch_on(who: str) -> None:
  """Routes this process's stderr through the helper and installs the log filters, unless `raw()`. Call it before
  JAX starts; `who` names this process in its stop line ("process 1 of 2") and in noise.log."""
  global _to_helper, _stdout_pipe
  if raw() or _to_helper is not None:
    return
  read, write = os.pipe()
  control_read, control_write = os.pipe()
  stdout_read, stdout_write = os.pipe()
  if os.fork() == 0:
    for fd in (write, control_write, stdout_write):
      os.close(fd)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
      signal.signal(sig, signal.SIG_IGN)
    try:
      kept = _Kept(who)
      _pass_on(read, _Messages(control_read, kept), _Stdout(stdout_read, kept), kept, who)
    finally:
      os._exit(0)
  for fd in (read, control_read, stdout_read):
    os.close(fd)
  os.dup2(write, 2)
  os.close(write)
  _to_helper, _stdout_pipe = control_write, stdout_write
  for logger in (absl_logging.get_absl_logger(), logging.getLogger("asyncio"), logging.getLogger("jax._src.callback")):
    logger.addFilter(_passes)
  sys.unraisablehook = _unraisable_hook(sys.unraisablehook)


def route_stdout() -> None:
  """From now on, fd 1 (where C and C++ code write past Python) goes through the helper, which keeps Gloo's lines
  and passes the rest on; `sys.stdout` becomes a stream on a copy of the old fd 1, so that what Python prints goes
  where it went, unbuffered by the helper and a terminal still. Nothing when the filter is off."""
  global _stdout_pipe
  if _stdout_pipe is None:
    return
  old = sys.stdout
  old.flush()
  sys.stdout = os.fdopen(os.dup(1), "w", buffering=1 if old.line_buffering else -1, encoding=old.encoding,
                         errors=old.errors)
  os.dup2(_stdout_pipe, 1)
  os.close(_stdout_pipe)
  _stdout_pipe = None


def keep_in(workdir: str, process: int | None = None) -> None:
  """What the filter dropped so far, and drops from now on, go to WORKDIR/noise.log (`noise-<process>.log` for
  process `process` of a run of several), appended; once the directory exists. Nothing when the filter is off."""
  if _to_helper is None or "://" in workdir:  # an object store (gs://) cannot be appended to: the temporary file
    return
  _send(b"K", os.path.join(workdir, "noise.log" if process is None else f"noise-{process}.log").encode())


def stop_line(who: str, reason: str) -> str:
  """The one line with which a process of a multi-process run stops ("process 1 of 2"), saying why."""
  return (f"distrl: error: {who} stops: {reason}. Restart every process with the same command to resume from the "
          f"last checkpoint.\n")


def _dropping(record: logging.LogRecord) -> Filter | None:
  """The filter that drops this log record, or None."""
  if record.name == "absl" and _ORBAX in record.pathname:
    return ORBAX_LOGS
  if record.name == "asyncio" and record.exc_info and _orbax_work(record.exc_info[1], record.exc_info[2]):
    return ORBAX_ABANDONED
  if record.name == "jax._src.callback" and record.getMessage().endswith("callback failed"):
    return JAX_CALLBACK
  return None


def _orbax_work(error: BaseException | None, trace) -> bool:
  """Whether an exception comes from work orbax left in flight: raised through orbax's files, by tensorstore in
  orbax's OCDBT store, or in a callback of tensorstore's into orbax's closed event loop (the last two from C++,
  with no frame of orbax's)."""
  closed = isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
  return closed or "OCDBT" in str(error) or any(_ORBAX in frame.filename for frame in traceback.extract_tb(trace))


def _passes(record: logging.LogRecord) -> bool:
  """The log filter: a record that `_dropping` names a filter for goes to the helper instead of the handlers."""
  kind = _dropping(record)
  if kind is not None:
    _drop(kind, _FORMAT.format(record) + "\n")
  return kind is None


def _unraisable_hook(previous):
  """sys.unraisablehook: what Python would say of an exception from orbax's work that could not be raised goes to the
  helper; the rest to `previous`."""

  def hook(unraisable) -> None:
    if not _orbax_work(unraisable.exc_value, unraisable.exc_traceback):
      return previous(unraisable)
    try:
      where = f"{unraisable.err_msg or 'Exception ignored in'}: {unraisable.object!r}\n"
      _drop(ORBAX_ABANDONED, where + "".join(traceback.format_exception(unraisable.exc_type, unraisable.exc_value,
                                                             unraisable.exc_traceback)))
    except Exception:  # an object whose repr fails, or the interpreter shutting down: Python's own report
      previous(unraisable)

  return hook


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

  def keep(self, kind: Filter, text: bytes) -> None:
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


class _Pipe:
  """A pipe the helper reads without blocking, for `kept`: `chunks` yields what is there and notes its end."""

  def __init__(self, fd: int, kept: _Kept):
    self.fd, self.kept, self.pending, self.open = fd, kept, b"", True
    os.set_blocking(fd, False)

  def chunks(self):
    while self.open:
      try:
        chunk = os.read(self.fd, 1 << 16)
      except BlockingIOError:
        return
      self.open = bool(chunk)
      yield chunk


class _Messages(_Pipe):
  """Reads the messages of `_send` and hands them to `kept`."""

  def read(self) -> None:
    for chunk in self.chunks():
      self.pending += chunk
    while len(self.pending) >= 5 and len(self.pending) >= 5 + int.from_bytes(self.pending[1:5], "big"):
      end = 5 + int.from_bytes(self.pending[1:5], "big")
      what, payload, self.pending = self.pending[:1], self.pending[5:end], self.pending[end:]
      if what == b"K":
        self.kept.keep_in(payload.decode(errors="replace"))
      else:
        name, text = payload.split(b"\0", 1)
        self.kept.keep(next(f for f in FILTERS if f.name == name.decode()), text)


class _Stdout(_Pipe):
  """Reads what C and C++ code write to this process's fd 1 once `route_stdout` sent it here and writes it, line by
  line, to the helper's fd 1 (the user's stdout), but Gloo's lines, which go to `kept`."""

  after_gloo = False  # the last line was Gloo's

  def read(self) -> None:
    for chunk in self.chunks():
      lines = (self.pending + chunk).splitlines(keepends=True)
      self.pending = lines.pop() if lines and self.open and not lines[-1].endswith(b"\n") else b""
      for line in lines:
        rest = self.after_gloo and _GLOO_REST.fullmatch(line)  # its number or newline, after another's newline
        self.after_gloo = bool(rest or _GLOO_CONNECTED.search(line.decode(errors="replace")))
        if self.after_gloo:
          self.kept.keep(GLOO_CONNECTED, line)
        else:
          _write(line, 1)


def _pass_on(fd: int, messages: _Messages, stdout: _Stdout, kept: _Kept, who: str) -> None:
  """Copies `fd` to stderr but JAX's distributed runtime's lines, which go to `kept`; after its abort, one line."""
  dying, runtime, listing, unhealthy, joining = False, False, False, [], False
  for raw_line in _lines(fd, messages, stdout):
    line = raw_line.decode(errors="replace")
    number = re.fullmatch(r"(\d+)\s*", line) if listing else None  # a process that stopped sending heartbeats
    unhealthy += [number.group(1)] if number else []
    dying = dying or _ABORT in line
    runtime = dying or bool(_RUNTIME_LOG.match(line)) or (runtime and bool(number or line.startswith(_CONTINUED)))
    listing = bool(number) or line.rstrip().endswith(_UNHEALTHY)
    joining = joining or "CoordinationService/RegisterTask" in line  # the abort came while joining the run
    if runtime:
      kept.keep(JAX_DISTRIBUTED, raw_line)
    else:
      _write(_naming(raw_line, kept) if line.startswith(_OURS) else raw_line)
  if dying:
    line = stop_line(who, f"{_why(who, unhealthy, joining)} (JAX's coordination service ended this process)")
    _write(_naming(line.encode(), kept))


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


def _lines(fd: int, messages: _Messages, stdout: _Stdout):
  """The lines read from `fd` until it closes; what the other pipes bring is handled as it comes. Messages from this
  process are read first whenever both pipes have something: they were sent before."""
  pending = b""
  while True:
    others = [other.fd for other in (messages, stdout) if other.open]
    ready = select.select([fd] + others, [], [])[0]
    messages.read()
    stdout.read()
    if fd not in ready:
      continue
    chunk = os.read(fd, 1 << 16)
    if not chunk:
      stdout.read()  # what this process wrote last; not waiting for a child that still holds fd 1
      break
    *lines, pending = (pending + chunk).split(b"\n")
    yield from (line + b"\n" for line in lines)
  messages.read()
  if pending:
    yield pending


def _write(text: bytes, fd: int = 2) -> None:
  try:
    while text:
      text = text[os.write(fd, text):]
  except OSError:  # the reader went away
    pass
