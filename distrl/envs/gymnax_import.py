"""gymnax, imported without the libraries that only its renderers use.

gymnax's package imports all of its environments, and some import seaborn (which imports scipy.stats and pandas)
and pyplot at the top, for their `render` only: ~1 s of every command's start on a 2-core machine. They are
imported when a render first uses them. `distrl.envs` imports this module before anything else imports gymnax.
"""

import contextlib
import importlib
import sys
import types


class _OnFirstUse(types.ModuleType):
  """A module that is imported when one of its attributes is first read."""

  def __getattr__(self, attribute: str):
    return getattr(importlib.import_module(self.__name__), attribute)


@contextlib.contextmanager
def _imported_on_first_use(*names: str):
  """Within it, an `import` of one of `names` (not yet imported) binds an `_OnFirstUse` stand-in; after it, the
  stand-ins leave sys.modules, so any later import is the real one."""
  stand_ins = {name: _OnFirstUse(name) for name in names if name not in sys.modules}
  sys.modules.update(stand_ins)
  try:
    yield
  finally:
    for name, stand_in in stand_ins.items():
      if sys.modules.get(name) is stand_in:
        del sys.modules[name]


with _imported_on_first_use("seaborn", "matplotlib.pyplot"):
  import gymnax  # the package, with every environment: distrl.envs takes it from here
