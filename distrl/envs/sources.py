"""Where an environment comes from, by its name: a gymnax id, `suite:id` (an adapter in `SUITES`), or a user's
`package.module:factory`. Each returns the environment and its parameters, `(env, env_params)`, unwrapped."""

import difflib
import importlib
import inspect

from gymnax.wrappers.purerl import FlattenObservationWrapper

from distrl.envs.gymnax_import import gymnax
from distrl.errors import ConfigError, first_line, where
from distrl.user_modules import load_attribute

# Suites adapted to the gymnax API, each behind the pip extra of its name: `suite:id` -> the adapter module, whose
# `make(id, **env_kwargs)` returns (env, env_params). The adapter (and the suite) is imported only when named.
SUITES = {"brax": "distrl.envs.brax", "craftax": "distrl.envs.craftax", "jumanji": "distrl.envs.jumanji"}


def names() -> list[str]:
  """Every gymnax id `make` accepts (and any `suite:id` or `package.module:factory`)."""
  return list(gymnax.registered_envs)


def from_gymnax(name: str, kwargs: dict):
  """`gymnax.make(name, **kwargs)`, observations of several axes flattened except MinAtar's images; an unknown name
  is an error that suggests the closest id."""
  if name not in gymnax.registered_envs:
    if "." in name:
      raise ConfigError(f"env_name={name!r} names no factory: use package.module:factory, e.g. {name}:make")
    close = difflib.get_close_matches(name, names(), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"unknown environment {name!r}: {hint}choose one of {', '.join(names())}, or name your own "
                      f"as package.module:factory")
  try:
    env, params = gymnax.make(name, **kwargs)
  except TypeError as error:
    raise ConfigError(f"env_kwargs {kwargs} do not fit {name}: {error}") from None
  except OSError as error:  # MNISTBandit-bsuite downloads MNIST when made: offline, a URLError
    raise ConfigError(f"{name} fetches data when it is made and that failed ({first_line(error, with_type=True)}); "
                      f"run it once with network access, or choose another environment") from None
  if len(env.observation_space(params).shape) > 1 and not name.endswith("MinAtar"):
    env = FlattenObservationWrapper(env)
  return env, params


def from_suite(name: str, kwargs: dict):
  """`make(id, **kwargs)` of the adapter of `suite:id`; a missing suite is one line naming the extra to install."""
  suite, _, env_id = name.partition(":")
  try:
    adapter = importlib.import_module(SUITES[suite])
  except ModuleNotFoundError as error:
    if (error.name or "").startswith("distrl"):
      raise
    package = (error.name or suite).partition(".")[0]  # `brax`, not the submodule `brax.envs` it was importing
    raise ConfigError(f"env_name={name!r} needs the {suite} extra ({package} is not installed): "
                      f"pip install 'distrl[{suite}]' (pip install -e '.[{suite}]' in a clone)") from None
  return adapter.make(env_id, **kwargs)


def from_factory(name: str, kwargs: dict):
  """`factory(**kwargs)` of `package.module:factory`, checked to be a callable returning (env, params) (or a
  gymnasium environment: then the `host.Spec` of host environments made by it)."""
  factory = load_attribute(name, "env_name")
  if not callable(factory):
    raise ConfigError(f"env_name={name!r} is not a function returning (env, env_params) or a gymnasium.Env but a "
                      f"{type(factory).__name__}")
  try:
    inspect.signature(factory).bind(**kwargs)
  except TypeError as error:
    raise ConfigError(f"env_kwargs {kwargs} do not fit {name}: {error}") from None
  except ValueError:  # no signature to check (a builtin): calling it will tell
    pass
  try:
    made = factory(**kwargs)
  except Exception as error:
    raise ConfigError(f"env_name={name!r}: the factory raised "
                      f"{first_line(error, with_type=True)}{where(error)}") from None
  if not (isinstance(made, tuple) and len(made) == 2):
    from distrl.envs import host  # a gymnasium environment steps on the host
    spec = host.from_factory(name, kwargs, made)
    if spec is not None:
      return spec
    raise ConfigError(f"env_name={name!r}: the factory returned {type(made).__name__}, neither (env, env_params) "
                      f"of a JAX environment nor a gymnasium.Env")
  return made
