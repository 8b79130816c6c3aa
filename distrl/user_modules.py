"""Loading code a config names by path (`config.algo`, `config.env_name`): `package.module[:attribute]`.

Every failure is a `ConfigError` of one line that says which part failed and why, with the
import error's own message: the user's module is what they will want to fix.
"""

import importlib
import os
import sys
from typing import Any

from distrl.errors import ConfigError, first_line


def importable_beside(config_file: str) -> None:
  """Puts the directory that holds a config file's top package on sys.path (as pytest's rootdir import does), so
  that code the config names beside it (`examples.a2c` beside `examples/a2c_config.py`) imports from any
  directory, not only from that one. Appended: it never shadows an installed package."""
  root = os.path.dirname(os.path.abspath(config_file))
  while os.path.isfile(os.path.join(root, "__init__.py")):
    root = os.path.dirname(root)
  if root not in sys.path:
    sys.path.append(root)


def load_module(module_name: str, field: str, spec: str | None = None) -> Any:
  """The module `module_name` (named by config field `field` as `spec`), or a ConfigError."""
  try:
    return importlib.import_module(module_name)
  except Exception as error:  # ImportError, or whatever the module raised while importing
    top = module_name.split(".")[0]
    hint = (f"; run from the directory that holds {top}, or add that directory to PYTHONPATH"
            if isinstance(error, ModuleNotFoundError) and error.name == top else "")
    raise ConfigError(f"{field}={spec or module_name!r}: cannot import {module_name} "
                      f"({first_line(error, with_type=True)}){hint}") from None


def load_attribute(spec: str, field: str) -> Any:
  """The object `package.module:attribute` names, or a ConfigError."""
  module_name, _, attribute = spec.partition(":")
  if not module_name or not attribute:
    raise ConfigError(f"{field}={spec!r} must look like package.module:attribute")
  module = load_module(module_name, field, spec)
  if not hasattr(module, attribute):
    raise ConfigError(f"{field}={spec!r}: module {module_name} has no attribute {attribute!r}")
  return getattr(module, attribute)
