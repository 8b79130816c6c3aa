"""Compiling off the main thread (distrl/runtime/compiling.py): a stop request ends the wait at once, a compile's
error reaches the caller, and a long compile shows its time (in place on a terminal, at a few points otherwise)."""

import threading
import time

import pytest

from distrl.runtime import compiling, metrics, stopping

pytestmark = pytest.mark.unit


def _wait_for(event: threading.Event):
  return lambda: event.wait(timeout=60)  # a compile that takes until `event` is set


def test_a_stop_request_ends_the_wait_at_once_while_the_compile_goes_on(capsys):
  stop, release = stopping.StopRequest(), threading.Event()
  threading.Timer(0.5, stop.request, args=("a test",)).start()
  started = time.perf_counter()
  compiled = compiling.compile_all([_wait_for(release), lambda: None], what="it", console=metrics.Console(live=False),
                                   stop=stop, stoppable=True)
  waited = time.perf_counter() - started
  alive = any(t.name.startswith("distrl-compile") and t.is_alive() for t in threading.enumerate())
  release.set()
  assert compiled.stopped and 0.5 <= waited < 0.5 + 2 * compiling.POLL_SECONDS and alive
  assert capsys.readouterr().out == ""  # what a stop says is the caller's line


def test_without_stoppable_a_stop_request_waits_for_the_compile(capsys):
  stop = stopping.StopRequest()
  stop.request("a test")
  compiled = compiling.compile_all([lambda: time.sleep(0.3)], what="it", console=metrics.Console(live=False),
                                   stop=stop, stoppable=False)  # several processes: the first call agrees on stops
  assert not compiled.stopped and compiled.seconds >= 0.3
  out = capsys.readouterr().out.splitlines()
  assert out[0] == "stop requested (a test): the processes stop together once compiled, before any update"  # once
  assert len(out) == 2 and out[1].startswith("compiled it in 0.")


def test_a_stop_waits_for_a_compilation_cache_entry_being_written():
  """JAX never rewrites an entry of its persistent cache, so one cut short would fail at every later start."""
  from jax._src import compiler

  assert callable(compiler._cache_write), "the JAX function that writes an entry, which the wait looks for"
  stop = stopping.StopRequest()

  def _cache_write():  # as jax._src.compiler names it
    time.sleep(1.0)

  threading.Timer(0.3, stop.request, args=("a test",)).start()
  started = time.perf_counter()
  compiled = compiling.compile_all([_cache_write], what="it", console=metrics.Console(live=False), stop=stop,
                                   stoppable=True)
  assert compiled.stopped and time.perf_counter() - started >= 1.0


def test_a_request_made_before_the_compile_compiles_nothing():
  stop, ran = stopping.StopRequest(), []
  stop.request("a test")
  compiled = compiling.compile_all([lambda: ran.append(1)], what="it", console=metrics.Console(live=False), stop=stop,
                                   stoppable=True)
  assert compiled.stopped and ran == []


def test_a_compile_error_reaches_the_caller_without_waiting_for_the_others():
  release = threading.Event()

  def fails():
    raise ValueError("no such op")

  started = time.perf_counter()
  with pytest.raises(ValueError, match="no such op"):
    compiling.compile_all([_wait_for(release), fails], what="it", console=metrics.Console(live=False),
                          stop=stopping.StopRequest(), stoppable=True)
  release.set()
  assert time.perf_counter() - started < 5


def test_without_a_terminal_a_long_compile_shows_a_line_at_10_30_and_60_s_then_every_minute(capsys):
  assert [compiling.next_line_at(s, live=False) for s in (10, 10.4, 30, 59.9, 60, 61, 120, 125.5)] == \
      [30, 30, 60, 60, 120, 120, 180, 180]
  progress = compiling.Progress(metrics.Console(live=False), "the update loop")
  for seconds in (0.25, 4.9, 9.9, 10.1, 10.4, 29.8, 30.2, 60.1, 119.9, 120.3):
    progress.show(seconds)
  progress.finish("compiled the update loop in 121.0s")
  assert capsys.readouterr().out.splitlines() == [
      "compiling the update loop: 10s", "compiling the update loop: 30s", "compiling the update loop: 60s",
      "compiling the update loop: 120s", "compiled the update loop in 121.0s"]


def test_on_a_terminal_a_long_compile_is_one_line_redrawn_each_second_then_replaced(capsys):
  progress = compiling.Progress(metrics.Console(live=True), "the update loop")
  for seconds in (0.25, 4.9, 5.1, 5.6, 6.0, 7.3):
    progress.show(seconds)
  progress.finish("compiled the update loop in 7.5s")
  assert capsys.readouterr().out == ("\rcompiling the update loop: 5s\x1b[K\rcompiling the update loop: 6s\x1b[K"
                                     "\rcompiling the update loop: 7s\x1b[K\rcompiled the update loop in 7.5s\x1b[K\n")


def test_a_short_compile_shows_only_its_compiled_line(capsys):
  progress = compiling.Progress(metrics.Console(live=True), "it")
  progress.show(compiling.SHOW_AFTER_SECONDS - 0.1)
  progress.finish("compiled it in 4.9s")
  assert capsys.readouterr().out == "compiled it in 4.9s\n"
