"""Compiling a start's programs while the main thread stays free: a stop request ends the wait at once, and a long
compile says that it is compiling and for how long.

XLA compiles in C++, where Python's signal handlers cannot run: a Ctrl-C that lands in a compile of the main thread
waits for its end, minutes for Craftax. So each program compiles in a thread of its own (XLA releases the GIL; on a
CPU the programs take different cores) and the main thread waits in steps of `POLL_SECONDS`, between which the stop
handler runs. Before the first update nothing is trained, so a stop request may end the wait with the threads still
compiling (where the caller allows it: with several processes a stop is agreed after the compile, `stopping.agree`);
they cannot be cancelled, so a process that stops there leaves without waiting for them (`os._exit`).
"""

import concurrent.futures
import dataclasses
import math
import sys
import threading
import time
from typing import Callable

from distrl.runtime import metrics, stopping

SHOW_AFTER_SECONDS = 5  # a shorter compile shows nothing but its "compiled ..." line
PLAIN_LINES_AT = (10, 30, 60)  # without a terminal: a line at these seconds of a compile, then one every minute
POLL_SECONDS = 0.25  # how often the wait looks at the stop request and the clock
CACHE_WRITE_SECONDS = 10.0  # the longest a stop waits for a thread writing JAX's compilation cache (`_cache_writes`)


@dataclasses.dataclass
class Compiled:
  seconds: float  # from the start of the compile to its end, or to the stop request (0: it came before)
  stopped: bool  # a stop request ended the wait: the programs may still be compiling, in threads nobody waits for


def compile_all(compiles: list[Callable[[], object]], *, what: str, console: metrics.Console,
                stop: stopping.StopRequest, stoppable: bool) -> Compiled:
  """Runs each of `compiles` in a thread of its own and waits for all, showing the time on `console` once it exceeds
  `SHOW_AFTER_SECONDS` (`Progress`), then says "compiled WHAT in ...". A compile's error is raised here. With
  `stoppable`, a stop request (one already made included) ends the wait at once."""
  started = time.perf_counter()
  asked = lambda: stoppable and stop.reason is not None
  if asked():  # before anything compiles: nothing to leave behind
    return Compiled(seconds=0.0, stopped=True)
  workers: set[int] = set()

  def in_thread(compile_one: Callable[[], object]) -> object:
    workers.add(threading.get_ident())
    return compile_one()

  progress = Progress(console, what)
  acknowledged = False  # a stop request that cannot end the wait has been answered
  pool = concurrent.futures.ThreadPoolExecutor(len(compiles), thread_name_prefix="distrl-compile")
  try:
    pending = {pool.submit(in_thread, compile_one) for compile_one in compiles}
    while not asked():
      if stop.reason is not None and not acknowledged:
        console.print(f"stop requested ({stop.reason}): the processes stop together once compiled, before any "
                      f"update")
        acknowledged = True
      if not pending:
        seconds = time.perf_counter() - started
        progress.finish(f"compiled {what} in {seconds:.1f}s")
        return Compiled(seconds=seconds, stopped=False)
      done, pending = concurrent.futures.wait(pending, timeout=POLL_SECONDS,
                                              return_when=concurrent.futures.FIRST_EXCEPTION)
      for future in done:
        future.result()  # a compile's error, raised here
      progress.show(time.perf_counter() - started)
    _cache_writes(workers, timeout=CACHE_WRITE_SECONDS)
    return Compiled(seconds=time.perf_counter() - started, stopped=True)
  finally:
    pool.shutdown(wait=False)


class Progress:
  """"compiling WHAT: 12s" on a console once a compile has taken `SHOW_AFTER_SECONDS`: on a terminal one line redrawn
  in place every second, otherwise a line at each of `PLAIN_LINES_AT` seconds and then one every minute."""

  def __init__(self, console: metrics.Console, what: str):
    self.console, self.what = console, what
    self._due = SHOW_AFTER_SECONDS if console.live else PLAIN_LINES_AT[0]
    self._drawn = False  # a line has been shown

  def show(self, seconds: float) -> None:
    if seconds >= self._due:
      self.console.redraw(f"compiling {self.what}: {int(seconds)}s")
      self._due, self._drawn = next_line_at(seconds, live=self.console.live), True

  def finish(self, line: str) -> None:
    """`line` in place of the live line (on a terminal, where one was drawn), else as a line of its own."""
    if self._drawn and self.console.live:
      self.console.redraw(line)
      self.console.end()
    else:
      self.console.print(line)


def next_line_at(seconds: float, *, live: bool) -> int:
  """When the next progress line is due after one at `seconds` into a compile: each second on a terminal; otherwise
  the next of `PLAIN_LINES_AT`, then each whole minute."""
  if live:
    return math.floor(seconds) + 1
  return next((mark for mark in PLAIN_LINES_AT if mark > seconds), 60 * (math.floor(seconds / 60) + 1))


def _cache_writes(threads: set[int], *, timeout: float) -> None:
  """Waits (at most `timeout` seconds) while one of `threads` writes an entry of JAX's persistent compilation cache:
  JAX writes it in place and never rewrites an existing entry, so an entry cut short by `os._exit` would be read, fail
  and be compiled again at every later start."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline and any(_inside(frame, "_cache_write") for ident, frame in
                                             sys._current_frames().items() if ident in threads):
    time.sleep(0.05)


def _inside(frame, function: str) -> bool:
  """Whether a thread whose innermost frame is `frame` is inside a call of a function named `function`."""
  while frame is not None:
    if frame.f_code.co_name == function:
      return True
    frame = frame.f_back
  return False
