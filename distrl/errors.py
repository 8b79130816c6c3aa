"""The error a user can act on: the launcher prints its message alone and exits non-zero."""


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


def first_line(error: BaseException, with_type: bool = False) -> str:
  """An exception's own first line, for a message of one line (its type's name where it has no text); with_type:
  "TypeError: first line"."""
  text = str(error).strip()
  if not text:
    return type(error).__name__
  return f"{type(error).__name__}: {text.splitlines()[0]}" if with_type else text.splitlines()[0]
