"""The error a user can act on: the launcher prints its message alone and exits non-zero."""

import os
import re
import sysconfig
import traceback


class ConfigError(ValueError):
  """A configuration, flag, environment name or workdir that cannot run, with how to fix it."""


def require(condition: bool, message: str) -> None:
  """Raises ConfigError(message) unless `condition`."""
  if not condition:
    raise ConfigError(message)


def require_positive(config, *fields: str) -> None:
  """Every named config field is a number > 0."""
  for field in fields:
    value = config[field]
    require(isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0,
            f"{field}={value!r} must be a positive number (set --config.{field}=...)")


def require_divisible(name: str, value: int, by_name: str, by: int, fix: str) -> None:
  """`value` splits evenly into `by` parts, else an error naming both and how to fix it."""
  require(value % by == 0, f"{name}={value} does not divide evenly over {by_name}={by}: {fix}")


class RunFailed(RuntimeError):
  """A run that cannot go on (a full disk, a diverged loss, ...): the message says why and what is kept.
  The launcher prints it alone and exits 1."""


class DeviceFailed(RunFailed):
  """The compiled program failed on the devices (an environment's host callback raised, say): JAX holds the error
  and raises it again at exit, so the launcher ends the process without its exit handlers."""


class EnvironmentFailed(RunFailed):
  """A user's environment raised while the run stepped it (outside JAX, in reset or step) at `update`: `error` is the
  exception with its traceback, which the update loop keeps in the workdir before saying this in one line."""

  def __init__(self, update: int, error: BaseException):
    self.update, self.error = update, error
    super().__init__(f"the environment failed at update {update}: {first_line(error, with_type=True)}{where(error)}")


_OURS = os.path.dirname(os.path.abspath(__file__))
_LIBRARIES = tuple({sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")})
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def where(error: BaseException) -> str:
  """' (at path:line, in function)': the deepest frame of `error`'s traceback in the user's code ('' for none)."""
  return _deepest_users([(f.filename, f.lineno, f.name) for f in traceback.extract_tb(error.__traceback__)])


def where_in_text(text: str) -> str:
  """`where` of a traceback as text (the one JAX carries of an exception a host callback raised)."""
  return _deepest_users([(name, int(line), function) for name, line, function in _FRAME.findall(text)])


def _deepest_users(frames: list[tuple[str, int, str]]) -> str:
  """The deepest frame of a file outside distrl, Python's own modules and the installed libraries; else of a file
  outside distrl (not a compiled module's source name, nor '<string>')."""
  outside = [f for f in frames if os.path.isfile(f[0]) and not os.path.abspath(f[0]).startswith(_OURS)]
  users = [f for f in outside if not os.path.abspath(f[0]).startswith(_LIBRARIES)]
  if not (users or outside):
    return ""
  name, line, function = (users or outside)[-1]
  relative = os.path.relpath(name)
  return f" (at {name if relative.startswith('..') else relative}:{line}, in {function})"


def first_line(error: BaseException, with_type: bool = False) -> str:
  """An exception's own first line, for a message of one line (its type's name where it has no text); with_type:
  "TypeError: first line"."""
  text = str(error).strip()
  if not text:
    return type(error).__name__
  return f"{type(error).__name__}: {text.splitlines()[0]}" if with_type else text.splitlines()[0]
