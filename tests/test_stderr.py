"""distrl.cli.noise's helper: what a process's stderr shows the user when C++ libraries write to it.

Each case runs a small process that routes its stderr through `noise.guard` and writes, line by line,
what jaxlib writes in the situation (the C++ lines copied from real runs), then ends as jaxlib ends it."""

import os
import subprocess
import sys
import textwrap

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


def guarded(who, *steps, abort=False):
  """Runs a process whose stderr goes through the helper: each step is a list of lines (written at once) or a
  number of seconds to wait; `abort` ends it as jaxlib's fatal log does. Returns its stderr as the user sees it."""
  script = textwrap.dedent(f"""
      import os, sys, time
      from distrl.cli import noise
      noise.guard({who!r})
      for step in {list(steps)!r}:
        if isinstance(step, list):
          sys.stderr.write("".join(line + "\\n" for line in step)); sys.stderr.flush()
        else:
          time.sleep(step)
      os.abort() if {abort} else sys.exit(0)""")
  result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": ROOT})
  assert result.returncode != 0 if abort else result.returncode == 0, result
  return result.stderr


def test_the_service_ending_a_process_for_a_silent_peer_reads_as_one_line_naming_the_peer():
  err = guarded("process 0 of 2", UNHEALTHY, TERMINATING, abort=True)
  assert err == ("distrl: error: process 0 of 2 stops: process 1 stopped sending heartbeats to the run's "
                 "coordinator (it died, hung, or was stopped) (JAX's coordination service ended this process). "
                 "Restart every process with the same command to resume from the last checkpoint.\n")


def test_losing_the_coordinator_reads_as_one_line():
  err = guarded("process 1 of 2", COORDINATOR_GONE, abort=True)
  assert err.startswith("distrl: error: process 1 of 2 stops: lost the run's coordinator, process 0 (") and \
      len(err.splitlines()) == 1, err


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
  assert guarded("process 0 of 2", UNHEALTHY, [line]) == line + "\n"


def test_the_programs_own_lines_among_held_ones_are_never_dropped():
  # absl's Python logger writes the C++ prefix with a .py file: a line of the program, not held
  absl = "W1130 19:00:00.000000 140234 probeenv.py:12] a warning of the user's own"
  line = "distrl: error: env_name='probeenv:make': step(key, state, action, params) failed: ValueError: boom"
  assert guarded("this process", [absl, "probeenv: about to raise"], [line]).splitlines() == \
      [absl, "probeenv: about to raise", line]
  # the program's lines within a C++ line's hold pass on when an abort or a line of ours drops the C++ lines
  err = guarded("process 1 of 2", COORDINATOR_GONE[:1], ["the program's own line"], COORDINATOR_GONE[2:], abort=True)
  assert err.splitlines()[0] == "the program's own line" and len(err.splitlines()) == 2, err
  assert guarded("process 0 of 2", WARNING[:1], ["the program's own line"], [line]).splitlines() == \
      ["the program's own line", line]


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
  assert guarded("this process", pieces, [line], pieces) == line + "\n"
  assert guarded("this process", ["a", "", "b", ""]).splitlines() == ["a", "", "b"]
