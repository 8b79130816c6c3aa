"""distrl.cli.noise: what a process's stderr shows the user when other libraries write to it, and where what it
drops is kept.

Each filter is checked on what the upstream code really writes, in a process that switches the filter on: a host
callback that raises, orbax saving to a full disk and reading a damaged checkpoint, JAX's distributed runtime
losing a process. A filter that no longer matches what is written lets it through to stderr, and noise no longer
written is missing from noise.log: either fails here."""

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from distrl.cli import noise
from tests.cli import ROOT

KEPT_AT = re.compile(r" \(other libraries' messages: (.+)\)$")


@pytest.fixture(autouse=True)
def _temporary_files_in(tmp_path, monkeypatch):
  """The helper's temporary file (what it drops before a workdir is known) goes to the test's directory."""
  monkeypatch.setenv("TMPDIR", str(tmp_path))
  monkeypatch.delenv(noise.RAW, raising=False)


def start(script, *args, env=None):
  """A Python process running `script` with `args`, its stdout and stderr piped."""
  return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env={**os.environ, "PYTHONPATH": ROOT, **(env or {})})


def stderr_of(script, *args, timeout=120):
  """What the user sees on stderr of a process running `script` that ends normally."""
  process = start(script, *args)
  out, err = process.communicate(timeout=timeout)
  assert process.returncode == 0, (out, err)
  return err


def kept(line, path):
  """`line` as a line of ours ends when what was dropped is kept in `path`."""
  return f"{line} (other libraries' messages: {path})\n"


@pytest.mark.unit
def test_every_filter_says_whose_noise_it_drops_and_why():
  assert len({f.name for f in noise.FILTERS}) == len(noise.FILTERS)
  for kind in noise.FILTERS:
    assert re.search(r"\d+\.\d+", kind.upstream) and kind.drops and kind.why, kind
  assert noise.__doc__.count(noise.RAW) == 1 and "noise.log" in noise.__doc__
  with open(os.path.join(ROOT, "README.md")) as f:
    assert noise.RAW in f.read(), "README says how to switch the filter off"


def test_other_lines_pass_on_unchanged_and_a_line_of_ours_names_no_file_when_nothing_was_dropped(tmp_path):
  lines = ["W1130 19:00:00.000000 140234 probeenv.py:12] a warning of the user's own (absl's Python logger)",
           "E1130 19:00:00.000000    4661 some_library.cc:12] a C++ line of another library:", "its second line", "",
           "distrl: error: a flag"]
  err = stderr_of(f"""
      import sys
      from distrl.cli import noise
      noise.switch_on("this process")
      noise.keep_in({str(tmp_path)!r})
      for line in {lines!r}:
        sys.stderr.write(line + "\\n"); sys.stderr.flush()
      """)
  assert err.splitlines() == lines
  assert os.listdir(tmp_path) == []


HOST_CALLBACK = """
    import os, sys
    from distrl.cli import noise
    noise.switch_on("this process")
    noise.keep_in(sys.argv[1])
    import jax, jax.numpy as jnp, numpy as np

    def fails(x):
      raise RuntimeError("the simulator lost its connection")

    try:
      jax.block_until_ready(jax.jit(lambda x: jax.pure_callback(fails, jax.ShapeDtypeStruct((), jnp.float32), x))(
          np.float32(1)))
    except Exception as error:
      os.makedirs(sys.argv[1], exist_ok=True)
      sys.stderr.write(f"distrl: error: updates 1..1 failed ({type(error).__name__})\\n")
    """


def test_a_failing_host_callbacks_traceback_is_kept_in_the_workdir_file_the_line_names(tmp_path):
  """Kept in a temporary file until the workdir exists, then moved into it; a later run appends."""
  workdir = tmp_path / "run"
  for _ in range(2):
    err = stderr_of(HOST_CALLBACK, workdir)
    assert err == kept("distrl: error: updates 1..1 failed (JaxRuntimeError)", workdir / "noise.log")
  text = (workdir / "noise.log").read_text()
  assert text.count(f"dropped by {noise.JAX_CALLBACK.name}") == 2, text
  assert text.count("jax.pure_callback failed") >= 2 and "RuntimeError: the simulator lost its connection" in text
  assert not list(tmp_path.glob("distrl-noise-*")), "the temporary file moved into the workdir"


# What orbax's failures write, each seen within a few tries: orbax's log records, and of the work it left in flight,
# tensorstore's callbacks into a closed event loop, asyncio's unretrieved futures, coroutines raising as collected.
ORBAX_WRITES = {"orbax's log records": f"dropped by {noise.ORBAX_LOGS.name}",
                "a callback into a closed loop": "RuntimeError: Event loop is closed",
                "an unretrieved future": "exception was never retrieved",
                "a coroutine raising as collected": "Exception ignored in: <coroutine object"}
ORBAX = f"""
    import gc, os, resource, signal, sys, time, warnings
    from absl import logging  # as the commands import it, before the filter
    from distrl.cli import noise
    noise.switch_on("this process")
    workdir = sys.argv[1]
    noise.keep_in(workdir)
    import jax, numpy as np
    import orbax.checkpoint as ocp

    # Not a filter's: Python warns once where the first coroutine orbax never started is collected.
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited")
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    rng = np.random.default_rng(0)
    state = {{"actors": jax.device_put(rng.normal(size=(jax.device_count(), 4096)).astype(np.float32), rows),
              "learner": {{f"w{{i}}": rng.normal(size=(64, 64)).astype(np.float32) for i in range(40)}}}}
    like = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), state)

    def manager(name):
      return ocp.CheckpointManager(os.path.join(workdir, name), item_handlers=ocp.StandardCheckpointHandler())

    damaged = manager("damaged")
    damaged.save(1, args=ocp.args.StandardSave(state))
    damaged.wait_until_finished()
    data = [os.path.join(root, name) for root, _, names in os.walk(os.path.join(workdir, "damaged", "1"))
            for name in names if os.sep + "d" in root]
    os.truncate(max(data, key=os.path.getsize), 100)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4000, resource.RLIM_INFINITY))  # as a full disk: files of 4 kB at most
    deadline, attempt, text = time.monotonic() + 60, 0, ""
    while not all(written in text for written in {list(ORBAX_WRITES.values())!r}) and time.monotonic() < deadline:
      attempt += 1
      try:
        with manager(f"full-{{attempt}}") as full:
          full.save(1, args=ocp.args.StandardSave(state))
          full.wait_until_finished()
      except Exception:
        pass
      try:
        damaged.restore(1, args=ocp.args.StandardRestore(like))
      except Exception:
        pass
      gc.collect()
      with open(os.path.join(workdir, "noise.log")) as f:
        text = f.read()
    sys.stderr.write("distrl: error: saving failed\\n")
    """


def test_orbax_failures_are_kept_in_the_workdir_file_the_line_names(tmp_path):
  """A save to a full disk and the read of a damaged checkpoint, again until orbax has written each kind of noise
  (usually in one or two tries)."""
  err = stderr_of(ORBAX, tmp_path, timeout=180)
  assert err == kept("distrl: error: saving failed", tmp_path / "noise.log")
  text = (tmp_path / "noise.log").read_text()
  assert not [what for what, written in ORBAX_WRITES.items() if written not in text], text[-3000:]
  assert f"dropped by {noise.ORBAX_ABANDONED.name}" in text


DISTRIBUTED = """
    import sys, time
    from absl import logging
    from distrl.cli import noise
    process, port, timeout, workdir = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    noise.switch_on(f"process {process} of 2")
    noise.keep_in(workdir, process)
    if noise.raw():
      assert not logging.get_absl_logger().filters and sys.unraisablehook is sys.__unraisablehook__
    import jax
    jax.distributed.initialize(f"localhost:{port}", 2, process, initialization_timeout=timeout,
                               heartbeat_timeout_seconds=timeout)
    print("joined", flush=True)
    time.sleep(120)
    """


CONNECTED = """
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    from distrl.cli import noise
    process, port, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    noise.switch_on(f"process {process} of 2")
    noise.keep_in(workdir, process)
    import jax, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec
    from distrl.runtime import distributed
    distributed.start(f"localhost:{port}", 2, process, auto=False, timeout=60)
    print("connected", flush=True)
    mesh = jax.make_mesh((4,), ("devices",))
    spread = jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec("devices")),
                                                    np.arange(2) + 2 * process)
    total = jax.jit(jax.numpy.sum, out_shardings=NamedSharding(mesh, PartitionSpec()))(spread)  # all 4 devices
    print("summed", int(total.addressable_data(0)), flush=True)
    distributed.finished()
    """


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_jax_ending_a_process_of_a_run_is_one_line_naming_the_process_to_look_at(tmp_path):
  """Process 1 stopped: JAX's coordination service (in process 0) ends process 0; process 1, continued, has lost
  its coordinator. A process whose coordinator never comes is ended while joining; unfiltered, as JAX wrote it."""
  alone = start(DISTRIBUTED, 1, free_port(), 3, tmp_path / "alone")
  raw = start(DISTRIBUTED, 1, free_port(), 3, tmp_path / "raw", env={noise.RAW: "1"})
  port = free_port()
  (tmp_path / "pair").mkdir()
  pair = [start(DISTRIBUTED, i, port, 4, tmp_path / "pair") for i in range(2)]
  try:
    assert [p.stdout.readline() for p in pair] == ["joined\n"] * 2, [p.communicate(timeout=60) for p in pair]
    pair[1].send_signal(signal.SIGSTOP)
    first = pair[0].communicate(timeout=60)[1]
  finally:
    pair[1].send_signal(signal.SIGCONT)
  then = pair[1].communicate(timeout=60)[1]
  assert first == kept(noise.stop_line("process 0 of 2", "process 1 stopped sending heartbeats to the run's "
                                       "coordinator (it died, hung, or was stopped) (JAX's coordination service "
                                       "ended this process)").rstrip("\n"), tmp_path / "pair" / "noise-0.log")
  assert then.startswith("distrl: error: process 1 of 2 stops: lost the run's coordinator, process 0 (") and \
      KEPT_AT.search(then.rstrip("\n")) and len(then.splitlines()) == 1, then
  text = (tmp_path / "pair" / "noise-0.log").read_text()
  assert f"dropped by {noise.JAX_DISTRIBUTED.name}" in text and "Terminating process" in text, text
  err = alone.communicate(timeout=60)[1]
  assert err.startswith("distrl: error: process 1 of 2 stops: not every process joined the run in time (") and \
      len(err.splitlines()) == 1, err
  assert KEPT_AT.search(err.rstrip("\n")).group(1).startswith(str(tmp_path / "distrl-noise-")), err  # no workdir
  err = raw.communicate(timeout=60)[1]
  assert "Terminating process" in err and "distrl: error" not in err, err
  assert not (tmp_path / "raw").exists() and len(list(tmp_path.glob("distrl-noise-*"))) == 1


def test_gloos_lines_as_the_processes_devices_connect_are_kept_not_printed(tmp_path):
  """Gloo writes '[Gloo] Rank R is connected to N peer ranks ...' to stdout from C++ as the processes' CPU devices
  connect, at the first collective of each compiled program, from one thread a device (their parts interleave):
  those lines are in each process's noise-<i>.log, and stdout is the process's own lines, whole and in order."""
  port = free_port()
  pair = [start(CONNECTED, i, port, tmp_path) for i in range(2)]
  outputs = [p.communicate(timeout=120) for p in pair]
  assert [p.returncode for p in pair] == [0, 0], outputs
  for i, (out, _) in enumerate(outputs):
    assert out.splitlines()[1:] == ["connected", "summed 6"], out
    text = (tmp_path / f"noise-{i}.log").read_text()
    assert f"dropped by {noise.GLOO_CONNECTED.name}" in text and "is connected to 3 peer ranks" in text, text
