"""benchmarks/RESULTS.md's tables, each written by its script between its own pair of markers.

A table named NAME lies between the lines `<!-- NAME: begin -->` and `<!-- NAME: end -->`; `write` replaces what
lies between them (and nothing else in the file) with a line saying where the table came from (the command line,
the machine and the date) and the table. A file without the pair, or with more than one, is refused: the markers
say where a table goes, so they are put in by hand, once.

Every script that writes here (returns.py, table.py, suites.py) writes RESULTS.md only after a complete run of its
default rows: no --rows and no --quick (returns.py: also its default --out, and --table, which tabulates every
finished row, counts as complete). A partial run prints its tables and says that it did not write them;
`--results PATH` writes them to PATH whatever ran (`--results ''`: nowhere). Each script checks the markers before
it measures, so that a long run does not end with nowhere to write.
"""

import os
import platform
import shlex
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "RESULTS.md")  # the published tables


def markers(name: str) -> tuple[str, str]:
  return f"<!-- {name}: begin -->", f"<!-- {name}: end -->"


def _span(content: str, name: str) -> tuple[int, int] | None:
  """(end of the begin marker, start of the end marker) of the one pair named `name` in `content`, or None."""
  begin, end = markers(name)
  if content.count(begin) != 1 or content.count(end) != 1:
    return None
  start, stop = content.index(begin) + len(begin), content.index(end)
  return (start, stop) if start <= stop else None


def _missing(path: str, name: str) -> str:
  begin, end = markers(name)
  return (f"{path} has no table named {name!r}: it needs one line `{begin}` and, after it, one line `{end}` where "
          f"the table goes (add them by hand), or name another file with --results")


def check(path: str, names: list[str]) -> None:
  """Refuses (SystemExit, saying what is missing) unless `path` holds one pair of markers for each of `names`: called
  before a long run, so that it does not end with nowhere to write."""
  if not os.path.exists(path):
    raise SystemExit(f"{path} does not exist: --results names the Markdown file whose markers the tables go between")
  with open(path, encoding="utf-8") as f:
    content = f.read()
  for name in names:
    if _span(content, name) is None:
      raise SystemExit(_missing(path, name))


def read(path: str, name: str) -> str | None:
  """What lies between the markers `name` in `path`; None if there is no such file or pair."""
  if not path or not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    content = f.read()
  span = _span(content, name)
  return None if span is None else content[span[0]:span[1]]


def replace(path: str, name: str, text: str) -> None:
  """Puts `text` (on lines of its own) between the markers `name` in `path`, the rest of the file byte for byte as it
  was; refuses (SystemExit) if the file has no such pair, or more than one."""
  check(path, [name])
  with open(path, encoding="utf-8", newline="") as f:
    content = f.read()
  start, stop = _span(content, name)
  with open(path, "w", encoding="utf-8", newline="") as f:
    f.write(content[:start] + "\n" + text.strip("\n") + "\n" + content[stop:])


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


def machine() -> str:
  """Where the numbers were taken: platform, CPU model and core count, JAX's version and device kind. JAX is imported
  here, after the measurements: the scripts measure in worker processes, and a parent holding an accelerator while
  they run would change what they measure."""
  import jax

  return (f"{platform.platform()}, {cpu_model()} ({os.cpu_count()} cores), jax {jax.__version__}, "
          f"device kind {jax.devices()[0].device_kind}")


def command(argv: list[str] | None = None) -> str:
  """The command line of this invocation, as run from the repository root; an absolute path given to it (a peer's
  file, a scratch venv's python) is written PATH/<its last part>, the machine's folders left out."""
  argv = sys.argv if argv is None else argv
  return shlex.join(["python", f"benchmarks/{os.path.basename(argv[0])}", *map(_portable, argv[1:])])


def _portable(arg: str) -> str:
  """`--flag=/a/b/c.py` or `/a/b/c.py` as `--flag=PATH/c.py`."""
  flag, equals, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
  return flag + equals + (f"PATH/{os.path.basename(value)}" if os.path.isabs(value) else value)


def provenance(argv: list[str] | None = None) -> str:
  """The line written above a table: its command line, machine and date."""
  return (f"Written by `{command(argv)}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"machine: {machine()}.")


def write(path: str, tables: dict[str, str], argv: list[str] | None = None) -> None:
  """Each table of `tables` (name -> Markdown) between its markers in `path`, under one provenance line."""
  check(path, list(tables))
  line = provenance(argv)
  for name, table in tables.items():
    replace(path, name, f"{line}\n\n{table}")
    print(f"wrote the table {name!r} into {path}")


def destination(given: str | None, incomplete: str | None) -> str:
  """--results resolved: as given, else RESULTS for a complete run (`incomplete` None: the reason a run is not)."""
  if given is not None:
    return given
  return "" if incomplete else RESULTS


def not_written(reason: str) -> None:
  """Says that a run's tables went to the screen only."""
  shown = os.path.relpath(RESULTS, ROOT) if RESULTS.startswith(ROOT + os.sep) else RESULTS
  print(f"\n{shown} not written: {reason} (only a complete run of the default rows writes "
        f"it; --results PATH writes this run's tables to PATH)")
