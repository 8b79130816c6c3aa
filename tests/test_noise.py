"""distrl.cli.noise: what a process's stderr shows the user when other libraries write to it, and where what it
drops is kept.

Most cases run a small process that switches the filter on and writes, line by line, what jaxlib writes in the
situation (the C++ lines copied from real runs), then ends as jaxlib ends it. Each filter is also checked
against the installed libraries: that they still hold the text it matches, and, where cheap, that they really
write it."""

import asyncio
import logging
import mmap
import os
import re
import subprocess
import sys
import textwrap
import traceback
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distrl.cli import noise
from tests.cli import ROOT

# Process 0 (it runs the coordination service) when process 1 was stopped (SIGSTOP) and the service
# noticed before distrl's watchdog did: jaxlib 0.10.2's lines, the stack dump shortened.
UNHEALTHY = [
    "E1130 18:50:53.855378   27126 coordination_service.cc:1549] [10632551767313103259] Use error polling to "
    "propagate the following error to all tasks: UNAVAILABLE: The following tasks are unhealthy (stopped sending "
    "heartbeats):",
    "1",
    "The tasks have crashed. Check the task logs for an earlier error, or scheduler events (e.g. preemption, "
    "eviction) to debug further. [type.googleapis.com/tensorflow.CoordinationServiceError='']",
    "E1130 18:50:53.855519   27137 coordination_service_agent.cc:289] Polled an error from coordination service "
    "(this can be an error from this or another task).",
]
TERMINATING = [
    "F1130 18:50:53.855749   27137 client.h:80] Terminating process because the JAX distributed service detected "
    "fatal errors. This most likely indicates that another task died; see the other task logs for more details. "
    "absl::Status: UNAVAILABLE: The following tasks are unhealthy (stopped sending heartbeats):",
    "1",
    "The tasks have crashed. Check the task logs for an earlier error, or scheduler events (e.g. preemption, "
    "eviction) to debug further.",
    "",
    "RPC: /xla.coordination.CoordinationService/PollForError [type.googleapis.com/tensorflow.CoordinationServiceError="
    "'']",
    "*** Check failure stack trace: ***",
    "    @     0x7faab5e40634  absl::lts_20260107::log_internal::LogMessage::SendToLog()",
]
# Process 1 when process 0 was killed: the client's lines before it aborts.
COORDINATOR_GONE = [
    "W1130 18:59:25.435268    4661 preemption_sync_manager.cc:147] Failed to retrieve preemption notice from "
    "coordination service: UNAVAILABLE: recvmsg:Connection reset by peer",
    "Additional GRPC error information from remote target coordination_service while calling "
    "/xla.coordination.CoordinationService/GetKeyValue:",
    "F1130 18:59:25.435434    4661 client.h:80] Terminating process because the JAX distributed service detected "
    "fatal errors. absl::Status: UNAVAILABLE: Failed to send RPC to coordination service.",
    "*** Check failure stack trace: ***",
]
WARNING = ["W1130 19:00:00.000000    4661 some_library.cc:12] a warning of two lines:", "its second line"]


KEPT_AT = re.compile(r" \(other libraries' messages: (.+)\)$")


@pytest.fixture(autouse=True)
def _temporary_files_in(tmp_path, monkeypatch):
  """The helper's temporary file (what it drops before a workdir is known) goes to the test's directory."""
  monkeypatch.setenv("TMPDIR", str(tmp_path))
  monkeypatch.delenv(noise.RAW, raising=False)


def guarded(who, *steps, abort=False, env=None, prelude=""):
  """Runs a process whose stderr goes through the helper: each step is a list of lines (written at once), a number
  of seconds to wait, a path (`noise.keep_in` it) or ("mkdir", path); `abort` ends it as jaxlib's fatal log does.
  Returns its stderr as the user sees it."""
  script = textwrap.dedent(f"""
      import os, sys, time
      from distrl.cli import noise
      noise.switch_on({who!r})
      """) + textwrap.dedent(prelude) + textwrap.dedent(f"""
      for step in {list(steps)!r}:
        if isinstance(step, list):
          sys.stderr.write("".join(line + "\\n" for line in step)); sys.stderr.flush()
        elif isinstance(step, str):
          noise.keep_in(step)
        elif isinstance(step, tuple):
          os.makedirs(step[1])
        else:
          time.sleep(step)
      os.abort() if {abort} else sys.exit(0)""")
  result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": ROOT, **(env or {})})
  assert result.returncode != 0 if abort else result.returncode == 0, result
  return result.stderr


def kept(err):
  """(stderr without the end of its last line that names where the dropped text is, that text)."""
  lines = err.splitlines()
  where = KEPT_AT.search(lines[-1])
  assert where, f"the last line names no file: {err!r}"
  with open(where.group(1)) as f:
    return "\n".join(lines[:-1] + [lines[-1][:where.start()]]) + "\n", f.read()


def test_the_service_ending_a_process_for_a_silent_peer_reads_as_one_line_naming_the_peer(tmp_path):
  err = guarded("process 0 of 2", UNHEALTHY, TERMINATING, abort=True)
  line, text = kept(err)
  assert line == ("distrl: error: process 0 of 2 stops: process 1 stopped sending heartbeats to the run's "
                  "coordinator (it died, hung, or was stopped) (JAX's coordination service ended this process). "
                  "Restart every process with the same command to resume from the last checkpoint.\n")
  assert all(dropped in text for dropped in UNHEALTHY + TERMINATING), text  # before the workdir: a temporary file
  assert KEPT_AT.search(err.strip()).group(1).startswith(str(tmp_path / "distrl-noise-"))


def test_losing_the_coordinator_reads_as_one_line():
  err = guarded("process 1 of 2", COORDINATOR_GONE, abort=True)
  assert err.startswith("distrl: error: process 1 of 2 stops: lost the run's coordinator, process 0 (") and \
      len(err.splitlines()) == 1, err
  assert all(dropped in kept(err)[1] for dropped in COORDINATOR_GONE)


def test_cpp_lines_held_for_an_abort_that_does_not_come_are_passed_on_whole_and_in_order():
  # quiet after the C++ lines: they pass on once the hold ends, before the abort that comes later
  err = guarded("process 1 of 2", COORDINATOR_GONE[:1], 1.5, COORDINATOR_GONE[2:], abort=True)
  assert err.splitlines()[0] == COORDINATOR_GONE[0] and len(err.splitlines()) == 2, err
  assert err.splitlines()[1].startswith("distrl: error: process 1 of 2 stops: lost the run's coordinator")
  # the program writing on without a pause: the hold still ends a second after the C++ line
  err = guarded("process 1 of 2", COORDINATOR_GONE[:1], *[["the program goes on"], 0.3] * 7, COORDINATOR_GONE[2:],
                abort=True)
  assert err.splitlines()[:8] == COORDINATOR_GONE[:1] + ["the program goes on"] * 7, err
  assert len(err.splitlines()) == 9 and err.splitlines()[8].startswith("distrl: error: process 1 of 2 stops: "), err
  # a multi-line C++ message followed by output of the program's own: all of it, in order
  err = guarded("distrl.evaluate", UNHEALTHY, 1.5, ["the program goes on"])
  assert err.splitlines() == UNHEALTHY + ["the program goes on"]
  err = guarded("distrl.evaluate", WARNING, ["the program goes on"])
  assert err.splitlines() == WARNING + ["the program goes on"]


def test_a_line_of_ours_drops_the_cpp_lines_just_before_it():
  line = "distrl: error: process 0 of 2 stops: process 1 has been silent for 5s (it died, hung, or was stopped)."
  ours, text = kept(guarded("process 0 of 2", UNHEALTHY, [line]))
  assert ours == line + "\n" and all(dropped in text for dropped in UNHEALTHY)


def test_the_programs_own_lines_among_held_ones_are_never_dropped():
  # absl's Python logger writes the C++ prefix with a .py file: a line of the program, not held
  absl = "W1130 19:00:00.000000 140234 probeenv.py:12] a warning of the user's own"
  line = "distrl: error: env_name='probeenv:make': step(key, state, action, params) failed: ValueError: boom"
  assert guarded("this process", [absl, "probeenv: about to raise"], [line]).splitlines() == \
      [absl, "probeenv: about to raise", line]  # nothing dropped: the line names no file
  # the program's lines within a C++ line's hold pass on when an abort or a line of ours drops the C++ lines
  err = guarded("process 1 of 2", COORDINATOR_GONE[:1], ["the program's own line"], COORDINATOR_GONE[2:], abort=True)
  assert err.splitlines()[0] == "the program's own line" and len(err.splitlines()) == 2, err
  err = guarded("process 0 of 2", WARNING[:1], ["the program's own line"], [line])
  assert kept(err) == ("the program's own line\n" + line + "\n", kept(err)[1])
  assert WARNING[0] in kept(err)[1] and "the program's own line" not in kept(err)[1]


def test_cpp_lines_held_before_an_abort_stay_dropped_however_slowly_the_process_dies():
  err = guarded("process 1 of 2", COORDINATOR_GONE[:2], 0.8, COORDINATOR_GONE[2:], 0.6, abort=True)
  assert err.startswith("distrl: error: process 1 of 2 stops: lost the run's coordinator") and \
      len(err.splitlines()) == 1, err
  err = guarded("process 0 of 2", UNHEALTHY, 0.9, TERMINATING, 0.3, abort=True)
  assert err.startswith("distrl: error: process 0 of 2 stops: process 1 stopped sending heartbeats") and \
      len(err.splitlines()) == 1, err


def test_the_line_says_what_the_service_reported_when_it_named_no_process():
  joining = ["F1130 20:10:42.297853    2141 client.h:80] Terminating process because the JAX distributed service "
             "detected fatal errors. absl::Status: DEADLINE_EXCEEDED: Deadline Exceeded", "",
             "RPC: /xla.coordination.CoordinationService/RegisterTask", "*** Check failure stack trace: ***"]
  assert guarded("process 0 of 2", joining, abort=True).startswith(
      "distrl: error: process 0 of 2 stops: not every process joined the run in time (one did not start, died while "
      "starting, or cannot reach the coordinator) (JAX's coordination service ended this process).")
  heartbeat = ["F1130 18:59:31.053698    4695 client.h:80] Terminating process because the JAX distributed service "
               "detected fatal errors. absl::Status: DEADLINE_EXCEEDED: Deadline Exceeded", "",
               "RPC: /xla.coordination.CoordinationService/Heartbeat"]
  assert guarded("process 0 of 2", heartbeat, abort=True).startswith(
      "distrl: error: process 0 of 2 stops: another process of the run died or stopped answering (")
  assert guarded("process 1 of 2", heartbeat, abort=True).startswith(
      "distrl: error: process 1 of 2 stops: lost the run's coordinator, process 0 (")


def test_interleaved_pieces_of_closed_event_loop_tracebacks_are_dropped_and_blank_lines_otherwise_kept():
  """Tracebacks printed by several threads at once after a failed save (a full disk): their pieces interleave."""
  pieces = ["Traceback (most recent call last):",
            '  File "/usr/lib/python3.11/asyncio/base_events.py", line 806, in call_soon_threadsafe',
            "    Traceback (most recent call last):", "self._check_closed()", "", "",
            '  File "/usr/lib/python3.11/asyncio/base_events.py", line 519, in _check_closed',
            "    raise RuntimeError('Event loop is closed')", "", "RuntimeError: Event loop is closed"]
  line = "distrl: error: saving update 30 to /tmp/run/checkpoints failed (No space left on device); the last ..."
  ours, text = kept(guarded("this process", pieces, [line], pieces))
  assert ours == line + "\n" and text.count("RuntimeError: Event loop is closed") == 2  # those after it too
  assert guarded("this process", ["a", "", "b", ""]).splitlines() == ["a", "", "b"]


@pytest.mark.unit
def test_every_filter_names_its_upstream_versions_what_it_drops_and_why():
  assert len({f.name for f in noise.FILTERS}) == len(noise.FILTERS)
  for kind in noise.FILTERS:
    assert re.search(r"\d+\.\d+", kind.upstream) and kind.drops and kind.why and kind.sample and kind.evidence, kind
  assert noise.__doc__.count(noise.RAW) == 1 and "noise.log" in noise.__doc__
  with open(os.path.join(ROOT, "README.md")) as f:
    assert noise.RAW in f.read(), "README says how to switch the filter off"


@pytest.mark.unit
def test_the_installed_libraries_still_hold_the_text_each_filter_matches():
  """A new wording upstream fails here, not silently in a user's terminal."""
  for package in sorted({kind.package for kind in noise.FILTERS}):
    spec = __import__(package, fromlist=["_"])
    root = os.path.dirname(spec.__file__)
    wanted = {text.encode() for kind in noise.FILTERS if kind.package == package for text in kind.evidence}
    for directory, _, names in os.walk(root):
      for name in names:
        if wanted and name.endswith((".py", ".so")):
          with open(os.path.join(directory, name), "rb") as f:
            if os.fstat(f.fileno()).st_size:
              with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as text:
                wanted = {w for w in wanted if text.find(w) < 0}
    assert not wanted, f"{package} ({root}) no longer holds {sorted(wanted)}: see noise.FILTERS"


@pytest.mark.parametrize("kind", [noise.AOT_HINTS, noise.CLOSED_LOOP, noise.CPP_BEFORE_OURS],
                         ids=lambda kind: kind.name)
def test_each_stderr_filter_drops_its_sample_into_the_workdir_file_the_line_names(kind, tmp_path):
  line = "distrl: error: something failed"
  workdir = tmp_path / "run"
  workdir.mkdir()
  err = guarded("this process", str(workdir), list(kind.sample), [line])
  assert err == f"{line} (other libraries' messages: {workdir / 'noise.log'})\n"
  text = (workdir / "noise.log").read_text()
  assert f"dropped by {kind.name} ({kind.upstream})" in text and all(s in text for s in kind.sample if s.strip())


def test_the_coordination_abort_sample_is_dropped_into_the_workdir_file_the_line_names(tmp_path):
  err = guarded("process 1 of 2", str(tmp_path), list(noise.COORDINATION_ABORT.sample), abort=True)
  line, text = kept(err)
  assert line.startswith("distrl: error: process 1 of 2 stops: lost the run's coordinator, process 0 (")
  assert KEPT_AT.search(err.strip()).group(1) == str(tmp_path / "noise.log")
  assert all(s in text for s in noise.COORDINATION_ABORT.sample)


def test_a_real_closed_event_loop_traceback_is_dropped():
  """Python's own asyncio raises it when a thread calls back into a closed loop, as tensorstore's threads do."""
  loop = asyncio.new_event_loop()
  loop.close()
  try:
    loop.call_soon_threadsafe(print)
  except RuntimeError as error:
    called_from_cpp = error.__traceback__.tb_next  # tensorstore's threads call it with no Python frame above
    real = "".join(traceback.format_exception(RuntimeError, error, called_from_cpp)).splitlines()
    unraisable = types.SimpleNamespace(exc_type=RuntimeError, exc_value=error, exc_traceback=called_from_cpp,
                                       err_msg=None, object=print)
  assert real[-1] == "RuntimeError: Event loop is closed"
  assert noise.dropping_unraisable(unraisable) is noise.ORBAX_UNRAISABLE
  line = "distrl: error: a failed save"
  ours, text = kept(guarded("this process", real, [line]))
  assert ours == line + "\n" and all(piece in text for piece in real)


@pytest.mark.unit
def test_jax_logs_a_failing_host_callback_as_the_filter_expects():
  records = []
  handler = logging.Handler()
  handler.emit = records.append
  logger = logging.getLogger("jax._src.callback")
  logger.addHandler(handler)

  def fails(x):
    raise RuntimeError("the simulator lost its connection")

  try:
    with pytest.raises(Exception, match="the simulator lost its connection"):
      jax.block_until_ready(jax.jit(lambda x: jax.pure_callback(fails, jax.ShapeDtypeStruct((), jnp.float32), x))(
          np.float32(1)))
  finally:
    logger.removeHandler(handler)
  assert records and all(noise.dropping(record) is noise.JAX_CALLBACK for record in records), records
  assert records[0].getMessage() == noise.JAX_CALLBACK.sample[0]


@pytest.mark.unit
def test_orbax_logs_through_absl_from_its_own_files(tmp_path):
  import orbax.checkpoint as ocp
  records = []
  handler = logging.Handler()
  handler.emit = records.append
  logger = logging.getLogger("absl")
  level = logger.level
  logger.addHandler(handler)
  logger.setLevel(logging.DEBUG)
  try:
    with ocp.CheckpointManager(tmp_path / "checkpoints") as manager:
      manager.save(1, args=ocp.args.StandardSave({"w": np.ones(3, np.float32)}))
      manager.wait_until_finished()
  finally:
    logger.removeHandler(handler)
    logger.setLevel(level)
  assert records and any(noise.dropping(record) is noise.ORBAX_LOGS for record in records)


def test_records_and_unraisable_exceptions_this_process_drops_are_kept_in_the_file_the_line_names(tmp_path):
  unretrieved = "\n".join(noise.ORBAX_UNRETRIEVED.sample)
  prelude = f"""
      import logging, types
      def raises():
        raise RuntimeError("the simulator lost its connection")
      try:
        raises()
      except RuntimeError:
        logging.getLogger("jax._src.callback").exception("jax.pure_callback failed")
      orbax = logging.LogRecord("absl", logging.ERROR, "/site-packages/orbax/checkpoint/x.py", 1, "orbax failed", None,
                                None)
      logging.getLogger("absl").handle(orbax)
      logging.getLogger("asyncio").error({unretrieved!r})
      logging.getLogger("asyncio").error("a record of asyncio's about the user's own coroutine")
      error = RuntimeError("Event loop is closed")
      sys.unraisablehook(types.SimpleNamespace(exc_type=RuntimeError, exc_value=error, exc_traceback=None, err_msg=None,
                                               object="<coroutine object _read_array_index_and_device_put>"))
      noise.keep_in({str(tmp_path)!r})
      """
  err = guarded("this process", ["distrl: error: updates 1..1 failed"], prelude=prelude)
  assert err == ("a record of asyncio's about the user's own coroutine\n"
                 f"distrl: error: updates 1..1 failed (other libraries' messages: {tmp_path / 'noise.log'})\n")
  text = (tmp_path / "noise.log").read_text()
  for kind, dropped in [(noise.JAX_CALLBACK, "RuntimeError: the simulator lost its connection"),
                        (noise.ORBAX_LOGS, "orbax failed"), (noise.ORBAX_UNRETRIEVED, "_write_array"),
                        (noise.ORBAX_UNRAISABLE, "RuntimeError: Event loop is closed")]:
    assert f"dropped by {kind.name}" in text and dropped in text, (kind.name, text)
  assert not list(tmp_path.glob("distrl-noise-*")), "the temporary file moved into the workdir"


def test_text_dropped_before_the_workdir_exists_moves_into_it_and_a_later_run_appends(tmp_path):
  workdir = tmp_path / "run"
  line = "distrl: error: something failed"
  for run in range(2):
    steps = [str(workdir)] + ([] if run else [[noise.AOT_HINTS.sample[0] + " again"], 0.2, ("mkdir", str(workdir))])
    err = guarded("this process", list(noise.AOT_HINTS.sample), *steps, [line])
    assert err == f"{line} (other libraries' messages: {workdir / 'noise.log'})\n"
    assert not list(tmp_path.glob("distrl-noise-*"))
  assert (workdir / "noise.log").read_text().count(noise.AOT_HINTS.sample[0]) == 3


def test_nothing_dropped_names_no_file_and_writes_none(tmp_path):
  assert guarded("this process", str(tmp_path), ["distrl: error: a flag"]) == "distrl: error: a flag\n"
  assert os.listdir(tmp_path) == []


def test_raw_stderr_switches_the_filter_off(tmp_path):
  prelude = """
      import logging
      assert not logging.getLogger("absl").filters and sys.unraisablehook is sys.__unraisablehook__
      """
  env = {noise.RAW: "1"}
  err = guarded("process 0 of 2", str(tmp_path), UNHEALTHY, TERMINATING, abort=True, env=env, prelude=prelude)
  assert err.splitlines() == UNHEALTHY + TERMINATING
  assert guarded("this process", list(noise.AOT_HINTS.sample), ["distrl: error: x"], env=env).splitlines() == \
      list(noise.AOT_HINTS.sample) + ["distrl: error: x"]
  assert os.listdir(tmp_path) == []
