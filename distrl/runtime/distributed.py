"""Joining the processes (hosts) of one run, and stopping cleanly when one of them dies.

`start` calls `jax.distributed.initialize` with an explicit coordinator, or with JAX's cluster
auto-detection (TPU pods, SLURM, Open MPI). When a process dies, hangs (SIGSTOP) or loses the
coordinator (process 0), every other process ends within `timeout` seconds with one line of ours
and exit 1:

- a watchdog thread beats once a second through the coordinator's key-value store and watches the
  others' beats: a peer silent for `timeout` seconds is dead or hung; a coordinator that does not
  answer for `timeout` seconds is gone;
- JAX's own client aborts the process from C++ the moment it loses the coordinator (its error
  polling fails), before any thread of ours can act, and jaxlib cannot hand that event to Python
  (a `missed_heartbeat_callback` dies converting the status). JAX's coordination service (in
  process 0) likewise ends every process it can reach once a peer has sent no heartbeat for
  2 x `timeout` seconds, should the watchdog not have acted by then. `distrl.cli.noise` turns
  either abort into our one line.

A process that has finished says so, stands its watchdog down and leaves through JAX's shutdown barrier
(`jax.distributed.shutdown`), which waits for every process to finish: left to interpreter teardown, a
process that ends first could drop out of the run while another is still writing its last files, and the
coordination service would end that one as if a peer had died.
"""

import os
import sys
import threading
import time

import jax
from jax._src import distributed as jax_distributed
from jax.experimental import multihost_utils  # the runtime client: key-value store of the run

from distrl import errors
from distrl.cli import noise

_PREFIX = "distrl/peers"
_JOIN_SECONDS = 300  # how long a process waits for the others to join (JAX's default)
_ENDED = threading.Event()  # this process has finished: its watchdog stands down
_CALLS = threading.Lock()  # held by the watchdog around its calls to the coordinator, and by `finished`


def start(coordinator_address: str | None, num_processes: int | None, process_id: int | None, *,
          auto: bool, timeout: int) -> bool:
  """Initialises jax.distributed if asked (explicitly or `auto`); returns whether it did."""
  explicit = (coordinator_address, num_processes, process_id)
  if all(v is None for v in explicit) and not auto:
    return False
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices talk over gloo
  who = (f"process {process_id} of {num_processes}: joining {coordinator_address}" if coordinator_address is not None
         else "joining the processes JAX's cluster detection found")
  print(f"distrl: {who}, waiting up to {_JOIN_SECONDS} s for all", flush=True)
  jax.distributed.initialize(*explicit, initialization_timeout=_JOIN_SECONDS, heartbeat_timeout_seconds=2 * timeout,
                             shutdown_timeout_seconds=2 * timeout)
  if jax.process_count() > 1:
    connect_devices()
    threading.Thread(target=_watch, args=(timeout,), daemon=True, name="distrl-peers").start()
  return True


def connect_devices() -> None:
  """The first collective of the run's processes, where their CPU devices connect over gloo. Gloo says so on stdout
  from C++, here and at the first collective of each compiled program: `noise.route_stdout` keeps those lines in
  noise.log, not amid distrl's."""
  noise.route_stdout()
  multihost_utils.sync_global_devices("distrl-joined")


def finished() -> None:
  """Tells the peers this process ended normally, so that its silence is not taken for a crash, and leaves the run
  once every process has finished (JAX's shutdown barrier, which waits up to 2 x `timeout` seconds)."""
  if jax.process_count() > 1:
    with _CALLS:
      _client().key_value_set(f"{_PREFIX}/done/{jax.process_index()}", "1", allow_overwrite=True)
      _ENDED.set()
    jax.distributed.shutdown()


def _client():
  return jax_distributed.global_state.client


def lost(reason: str) -> None:
  """Ends this process of a multi-process run with one line saying why."""
  print(noise.stop_line(f"process {jax.process_index()} of {jax.process_count()}", reason), end="", file=sys.stderr,
        flush=True)
  sys.stdout.flush()
  os._exit(1)  # jax.distributed's shutdown would wait for the dead peer, then abort


def _watch(timeout: int) -> None:
  """Beats once a second; a peer whose beat has not changed for `timeout` seconds is dead, and a coordinator
  that has not answered for `timeout` seconds is gone (a call to a stopped process hangs rather than fails,
  so a second thread watches the time of the last answer)."""
  client, me = _client(), jax.process_index()
  peers = [p for p in range(jax.process_count()) if p != me]
  last_beat = {p: None for p in peers}
  last_change = {p: time.monotonic() for p in peers}
  answered = [time.monotonic()]
  threading.Thread(target=_watch_coordinator, args=(answered, timeout), daemon=True, name="distrl-coordinator").start()
  beat = 0
  while True:
    beat += 1
    with _CALLS:
      if _ENDED.is_set():
        return
      try:
        client.key_value_set(f"{_PREFIX}/beat/{me}", str(beat), allow_overwrite=True)
        store = dict(client.key_value_dir_get(f"{_PREFIX}/"))
      except Exception as error:  # the coordinator (process 0) is gone
        lost(f"lost the run's coordinator, process 0 ({errors.first_line(error)[:200]})")
    now = answered[0] = time.monotonic()
    for peer in peers:
      if f"{_PREFIX}/done/{peer}" in store:
        continue
      value = store.get(f"{_PREFIX}/beat/{peer}")
      if value != last_beat[peer]:
        last_beat[peer], last_change[peer] = value, now
      elif now - last_change[peer] > timeout:
        lost(f"process {peer} has been silent for {timeout}s (it died, hung, or was stopped)")
    time.sleep(1.0)


def _watch_coordinator(answered: list[float], timeout: int) -> None:
  while not _ENDED.is_set():
    time.sleep(1.0)
    if time.monotonic() - answered[0] > timeout and not _ENDED.is_set():
      lost(f"process 0, the run's coordinator, has not answered for {timeout}s (it died, hung, or was stopped)")

