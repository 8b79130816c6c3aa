"""The `--config` flag's value and overrides, as `distrl.launch` and `distrl.get_config` read them: a shipped config by
name, a file by path, `--config.env_kwargs.NAME=VALUE` and `--config.sweep.NAME=VALUE` for any NAME, and every mistake
as one line (a `ConfigError`). `read` is the one reading of them; the library's keyword overrides become the same
flags (`as_flags`)."""

import ast
import importlib
import logging
import os
import re
import sys

import ml_collections

from distrl import configs, user_modules
from distrl.errors import ConfigError

# A number written with a decimal point or an exponent: 1e5, 2.5e6, 100000.0.
_FLOAT_LITERAL = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


def flag_error(error: Exception) -> str:
  """One line for a bad flag, config field, preset or config file."""
  text = str(error).replace("\\n", "\n")
  if isinstance(error, (AttributeError, KeyError)):
    suggestion = re.search(r'Did you mean "([\w.]+)" instead of "([\w.]+)"', text)
    if suggestion:
      return f"unknown config field {suggestion[2]!r}: did you mean {suggestion[1]!r}?"
    name = re.search(r"(\w+)", text)
    return f"unknown config field {name[1] if name else text!r}" + (_owners(name[1]) if name else "")
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if "Traceback" in text:  # a config file raised: its own message is the last line
    return re.sub(r"^\w+(Error|Exception): ", "", lines[-1])
  return " ".join(lines)


def _owners(field: str) -> str:
  """' (a field of the configs of ppo, pqn)' where other shipped configs have `field`."""
  owners = [algo for algo in configs.names()
            if field in importlib.import_module(f"distrl.configs.{algo}").get_config()]
  return f" (a field of the configs of {', '.join(owners)})" if owners else ""


def shipped_configs(argv: list[str]) -> list[str]:
  """`--config=NAME[:preset]` (or `--config NAME`) of a config shipped with distrl, as the path of its file."""
  argv = list(argv)
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      argv[i] = "--config=" + resolve(arg[len("--config="):])
    elif arg == "--config" and i + 1 < len(argv):
      argv[i + 1] = resolve(argv[i + 1])
  return argv


def integral_numbers(argv: list[str]) -> list[str]:
  """`--config.FIELD=1e5` as `--config.FIELD=100000`: an integral number written as a float is taken by an integer
  field (absl would refuse it as not an int) and means the same to a float field."""
  def integral(arg: str) -> str:
    name, equals, value = arg.partition("=")
    if not (name.startswith("--config.") and equals and _FLOAT_LITERAL.fullmatch(value)):
      return arg
    number = float(value)
    return f"{name}={int(number)}" if number.is_integer() and abs(number) < 2**63 else arg

  return [integral(arg) for arg in argv]


OPEN_GROUPS = ("env_kwargs", "sweep")  # config groups whose names no config lists in advance


def take_open_fields(argv: list[str]) -> tuple[list[str], list[tuple[str, str, str]]]:
  """`--config.env_kwargs.NAME=VALUE` and `--config.sweep.NAME=VALUE` (or `... NAME VALUE`) taken out of argv, as
  (GROUP, NAME, VALUE) texts: an environment's keywords are its constructor's and a sweep's names are the fields it
  varies (checked when the run is built), which no config can list in advance, so any NAME goes."""
  rest, taken, args = [], [], iter(argv)
  for arg in args:
    match = re.fullmatch(rf"--config\.({'|'.join(OPEN_GROUPS)})\.(\w+)(?:=(.*))?", arg, re.DOTALL)
    if not match:
      rest.append(arg)
      continue
    group, name = match[1], match[2]
    text = match[3] if match[3] is not None else next(args, None)
    if not text or (match[3] is None and text.startswith("--")):
      raise ConfigError(f"flag --config.{group}.{name} has no value (--config.{group}.{name}=VALUE)")
    taken.append((group, name, text))
  return rest, taken


def _open_value(text: str, current):
  """A command-line VALUE for env_kwargs or sweep NAME: of the type of the value the config gives NAME, if it gives one,
  else a Python literal (true/false/none in any case too), else the text."""
  words = {"true": True, "false": False, "none": None}
  if isinstance(current, bool):
    if text.lower() not in ("true", "false", "1", "0"):
      raise ValueError(f"{text!r} is not a bool")
    return text.lower() in ("true", "1")
  if isinstance(current, (int, float, str)):
    return type(current)(text)
  if text.lower() in words:
    return words[text.lower()]
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def set_open_fields(config: ml_collections.ConfigDict, taken: list[tuple[str, str, str]]) -> None:
  """Sets what `take_open_fields` took, adding the group to the config where it has none."""
  for group, name, text in taken:
    if config.get(group) is None:
      with config.unlocked():
        config[group] = ml_collections.ConfigDict()
    fields = config[group]
    if not isinstance(fields, ml_collections.ConfigDict) or isinstance(fields, ml_collections.FrozenConfigDict):
      raise ConfigError(f"--config.{group}.{name}: the config's {group} is a {type(fields).__name__}, not an "
                        f"ml_collections.ConfigDict that the command line can add to")
    with fields.unlocked():
      try:
        fields[name] = _open_value(text, fields.get(name))
      except (TypeError, ValueError) as error:
        raise ConfigError(f"flag --config.{group}.{name}={text}: {error}")


def resolve(value: str) -> str:
  """A --config value as ml_collections' config_flags takes it: a file path (with an optional `:preset`) stays as
  it is; the name of a shipped config becomes its file's path. Anything else is a ConfigError naming what exists."""
  name, colon, preset = value.partition(":")
  if os.path.isfile(name):
    return value
  if name in configs.names():  # even where a directory of that name is here (a workdir called ppo, say)
    return os.path.join(configs.DIRECTORY, f"{name}.py") + colon + preset
  if os.path.isdir(name):
    raise ConfigError(f"config {name!r} is a directory, not a config file; give a shipped config "
                      f"({', '.join(configs.names())}) or a .py file that defines get_config()")
  stem = os.path.splitext(os.path.basename(name))[0]
  hint = f" (did you mean --config={stem}{colon}{preset}?)" if stem in configs.names() else ""
  raise ConfigError(f"config {name!r} is neither a file nor one of distrl's configs ({', '.join(configs.names())}){hint}; "
                    f"e.g. --config=ppo, --config=ppo:Acrobot-v1 or --config=path/to/my_config.py")


def read(argv: list[str], flag_values, holder) -> tuple[ml_collections.ConfigDict, list[str]]:
  """The config `argv`'s `--config` and `--config.FIELD=VALUE` flags give, parsed by absl into `flag_values`, where
  `holder` is the config flag (`config_flags.DEFINE_config_file("config", ...)`), checked for the run fields: ->
  (config, the arguments absl leaves). A bad flag, config field, value, preset or config file is a ConfigError."""
  logging.getLogger("absl").setLevel(logging.ERROR)  # config_flags' warnings: we say it in one line
  given = next((a.split("=", 1)[1] if "=" in a else None for a in reversed(argv[1:]) if a.startswith("--config")
                and not a.startswith("--config.")), None)
  command = sys.argv
  try:
    argv, open_fields = take_open_fields(argv)
    argv = integral_numbers(argv)
    sys.argv = argv  # config_flags finds the overrides to define in sys.argv
    argv = shipped_configs(argv)
    if given and os.path.isfile(given.partition(":")[0]):
      user_modules.importable_beside(given.partition(":")[0])
    rest = flag_values(argv)
    config = holder.value
  except Exception as error:  # flags.Error, or whatever a config file or override raised
    raise ConfigError(flag_error(error)) from None
  finally:
    sys.argv = command
    logging.getLogger("absl").setLevel(logging.NOTSET)
  if config is None and given is None:
    raise ConfigError("--config is required, e.g. --config=ppo")
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"--config={given}: get_config() returned "
                      f"{type(config).__name__ if config is not None else 'None'}, not an ml_collections.ConfigDict")
  if lack := configs.lacking(config):
    raise ConfigError(f"--config={given}: {lack}")
  set_open_fields(config, open_fields)
  return config, rest


def as_flags(overrides: dict, prefix: str = "--config") -> list[str]:
  """Keyword overrides as the command line's flags, `lr=1e-3` -> `--config.lr=0.001`, so that they are read and
  checked as `read` reads flags. A dict (or ConfigDict) value sets the fields of a group one by one
  (`env_kwargs={"size": 3}` -> `--config.env_kwargs.size=3`); a tuple or list is written as a tuple literal, a bool
  as true/false, a string as it is, any other value as its repr."""
  argv = []
  for name, value in overrides.items():
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      argv += as_flags(dict(value.items()), f"{prefix}.{name}")
      continue
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a numpy or JAX scalar
      value = value.item()
    if isinstance(value, bool):
      text = str(value).lower()
    elif isinstance(value, (tuple, list)):
      text = repr(tuple(value))
    elif isinstance(value, str):
      text = value
    else:
      text = repr(value)
    argv.append(f"{prefix}.{name}={text}")
  return argv
