"""A run's directory: used by one run at a time, its history never lost.

- `lock`: process 0 holds an exclusive `flock` on `WORKDIR/.lock` for the whole run. The kernel
  drops it when the process ends, however it ends (kill -9 included), so it is never left stuck;
  `flock` works on local filesystems and on NFS (Linux emulates it with POSIX locks there). The
  lock file records who holds it, which a second launcher names in its error.
- `history`: the records of `metrics.jsonl`; a last line cut short by a crash while writing it is
  dropped (and said), not fatal.
- A workdir that holds a run's history but no checkpoint to resume from is refused: starting over
  would mix a new run into the old one's files. `move_aside` (the launcher's `--overwrite`) moves
  the old run into `WORKDIR/overwritten-<time>/`; nothing is ever deleted.
- `config.json` (the resolved config of the latest start) and `run.json` (devices and processes of the last start,
  and every start's update, devices and the settings it changed) are replaced atomically: other processes may be
  reading them.
"""

import contextlib
import fcntl
import json
import os
import shlex
import socket
import sys
import time
import traceback
from typing import Callable

from distrl.errors import ConfigError, RunFailed

RUN_FILES = ("config.json", "run.json", "metrics.jsonl", "tb", "checkpoints", "best", "trackers.json")
FAILURES = "failures.log"  # the full tracebacks of what a user's code raised, each under a header; never read back


def load_json(path: str) -> dict | None:
  """The JSON object in `path` (config.json, run.json), None if there is no such file; a damaged one is one line."""
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      value = json.load(f)
  except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
    raise ConfigError(f"{path} is damaged ({e}); distrl writes it whole, so it was edited or cut short: "
                      f"restore it from a copy, or start the run in a new --workdir") from None
  if not isinstance(value, dict):
    raise ConfigError(f"{path} holds a {type(value).__name__}, not the JSON object distrl wrote: restore it from a "
                      f"copy, or start the run in a new --workdir")
  return value


def parse_records(text: str) -> tuple[list[dict], list[int], int]:
  """The records of a metrics.jsonl's `text`, the numbers of its lines that are not records (a crash cut them short),
  and how many lines it has (blank ones not counted)."""
  lines = [line for line in text.splitlines() if line.strip()]
  records, broken = [], []
  for number, line in enumerate(lines, 1):
    try:
      records.append(json.loads(line))
    except ValueError:
      broken.append(number)
  return records, broken, len(lines)


def in_use(path: str) -> bool:
  """Whether a run holds `path`'s lock now, that is, is training there (a shared lock tried for a moment tells)."""
  try:
    with open(os.path.join(path, ".lock")) as handle:
      fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)  # let go when the file closes
  except BlockingIOError:
    return True
  except OSError:  # no lock file: never run by this distrl, or not a run
    return False
  return False


class Workdir:
  """The directory `path` of one run, as seen by process `process_index` (0 writes the shared files)."""

  def __init__(self, path: str, *, primary: bool):
    self.path, self.primary = path, primary
    self._lock = None

  def file(self, name: str) -> str:
    return os.path.join(self.path, name)

  def create(self, process_index: int) -> bool:
    """Makes the directory (if needed) and checks that it can be written, else a ConfigError. Returns whether it made
    the directory."""
    if os.path.exists(self.path) and not os.path.isdir(self.path):
      raise ConfigError(f"--workdir={self.path} is a file, not a directory; pick another path")
    made = not os.path.isdir(self.path)
    try:
      os.makedirs(self.path, exist_ok=True)
      probe = self.file(f".write-test-{process_index}")
      with open(probe, "w"):
        pass
      os.remove(probe)
    except OSError as error:
      raise ConfigError(f"cannot write to --workdir={self.path}: {error.strerror}; pick a writable directory") from None
    return made

  def remove_if_unused(self) -> None:
    """Removes the directory (process 0, holding the lock) if nothing is in it but the lock and the empty directories
    of the checkpoint managers: a start that made it and stopped before recording anything leaves no workdir behind.
    Anything else there (noise.log, a file of the user's) keeps it all."""
    if not self.primary or self._lock is None:
      return
    with contextlib.suppress(OSError):
      if set(os.listdir(self.path)) <= {".lock", "checkpoints", "best"}:
        for name in ("checkpoints", "best"):
          if os.path.isdir(self.file(name)):
            os.rmdir(self.file(name))  # fails unless empty
        os.remove(self.file(".lock"))
        os.rmdir(self.path)

  def lock(self) -> str | None:
    """Takes the run's lock (process 0 only). Returns None, or the one-line reason another run holds it."""
    if not self.primary or "://" in self.path:  # object stores (gs://) have no file locks
      return None
    handle = open(self.file(".lock"), "a+")
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      handle.seek(0)
      holder = handle.read().strip()
      handle.close()
      try:
        info = json.loads(holder)
        who = f"pid {info['pid']} on {info['host']}, since {info['started']}: {info['command']}"
      except (ValueError, KeyError, TypeError):
        who = "another process"
      return (f"--workdir={self.path} is in use by another run ({who}); wait for it to end, or use another "
              f"--workdir")
    try:
      handle.seek(0)
      handle.truncate()
      handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": shlex.join(sys.argv)}) + "\n")
      handle.flush()
    except OSError as error:  # a full disk
      with contextlib.suppress(OSError):
        handle.close()
      return f"cannot write to --workdir={self.path}: {error.strerror}; free space or pick another directory"
    self._lock = handle
    return None

  def unlock(self) -> None:
    if self._lock is not None:
      self._lock.close()  # closing the file releases the flock
      self._lock = None

  def history(self, warn: Callable[[str], None]) -> list[dict]:
    """The records of metrics.jsonl, without a line that a crash cut short (repaired in place, and said)."""
    path = self.file("metrics.jsonl")
    if not os.path.exists(path):
      return []
    with open(path) as f:
      text = f.read()
    records, broken, count = parse_records(text)
    if broken and self.primary:
      where = "its last line" if broken == [count] else f"lines {', '.join(map(str, broken))}"
      warn(f"warning: {path}: dropped {where}, cut short by a crash while being written")
    if (broken or not text.endswith("\n")) and text:  # a whole last record without its newline: add it, or the
      self.write_history(records)                    # next record would be appended to its line
    return records

  def keep_history_until(self, records: list[dict], update: int) -> list[dict]:
    """Drops records past `update` (logged after the checkpoint a crash fell back to: the resumed run logs them
    again, identically). Returns the records kept."""
    kept = [r for r in records if r["update"] <= update]
    if len(kept) < len(records):
      self.write_history(kept)
    return kept

  def write_history(self, records: list[dict]) -> None:
    """Replaces metrics.jsonl with `records` (process 0 only)."""
    if self.primary:
      self._write_lines(self.file("metrics.jsonl"), [json.dumps(r) + "\n" for r in records])

  def leftovers(self, saved_only: bool = False) -> list[str]:
    """What of a run is here besides checkpoints that can be resumed: the description of each part (with
    `saved_only`, of best/ and checkpoints/ only)."""
    found = []
    records = self.file("metrics.jsonl")
    if not saved_only and os.path.exists(records) and os.path.getsize(records) > 0:
      with open(records) as f:
        found.append(f"metrics.jsonl with {sum(1 for line in f if line.strip())} records")
    for name in ("best", "checkpoints"):
      path = self.file(name)
      # orbax's temporary directories are saves cut short: nothing of the run is in them
      entries = [e for e in os.listdir(path) if "orbax-checkpoint-tmp" not in e] if os.path.isdir(path) else []
      if entries:
        found.append(f"{name}/ with {len(entries)} {'entry' if len(entries) == 1 else 'entries'}")
    return found

  def move_aside(self) -> str | None:
    """Moves the files of the run here into overwritten-<time>/ (process 0); returns that directory, if any."""
    present = [name for name in RUN_FILES if os.path.exists(self.file(name))]
    if not present:
      return None
    target = base = self.file(f"overwritten-{time.strftime('%Y%m%d-%H%M%S')}")
    if self.primary:
      copy = 1
      while os.path.exists(target):  # overwritten twice within a second
        copy += 1
        target = f"{base}-{copy}"
      os.makedirs(target)
      for name in present:
        os.rename(self.file(name), os.path.join(target, name))
    return target

  def keep_failure(self, error: BaseException, when: str) -> str:
    """Appends `error`'s full traceback to FAILURES (this process's own file in a run of several) under a header
    saying `when`, and returns the file's path (or where it could not be written)."""
    import jax
    several = jax.process_count() > 1
    path = self.file(FAILURES.replace(".log", f"-{jax.process_index()}.log") if several else FAILURES)
    header = f"== {time.strftime('%Y-%m-%d %H:%M:%S')}, {when}: {type(error).__name__} ==\n"
    try:
      with open(path, "a") as f:
        f.write(header + "".join(traceback.format_exception(error)) + "\n")
    except OSError as failure:
      return f"not kept ({path}: {failure.strerror})"
    return path

  def read_json(self, name: str) -> dict | None:
    return load_json(self.file(name))

  def write_json(self, name: str, value: dict) -> None:
    """Process 0 replaces `name` atomically: other processes may be reading the old one meanwhile."""
    if self.primary:
      self._write_lines(self.file(name), [json.dumps(value, indent=2, sort_keys=True) + "\n"])

  @staticmethod
  def _write_lines(path: str, lines: list[str]) -> None:
    """Replaces `path` whole, or leaves it as it was and raises RunFailed (a full disk)."""
    try:
      with open(path + ".tmp", "w") as f:
        f.writelines(lines)
      os.replace(path + ".tmp", path)
    except OSError as error:
      with contextlib.suppress(OSError):
        os.remove(path + ".tmp")
      raise RunFailed(f"cannot write {path} ({error.strerror}); it is as it was. Free space (or fix the cause) and "
                      f"run the same command") from None
