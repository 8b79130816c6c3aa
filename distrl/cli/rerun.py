"""A rerun of a workdir goes on with the run as it was recorded, whatever the config file now says.

`WORKDIR/config.json` (the config of the run's latest start) is the base; only the fields the command line sets
explicitly (`--config.FIELD=...`, `--config.env_kwargs.NAME=...`) change it, and the trainer says and records
those changes. So the README's resume pattern (the same command, or the plain one) never turns a finished run of
100k steps into one of the config's default 500k: extending a run takes an explicit `--config.total_timesteps`.
A config of another algorithm or environment is left as it is, for the trainer to refuse.
"""

import json
import os

import ml_collections

from distrl.runtime import workdir as workdir_files


def explicit_fields(argv: list[str]) -> set[str]:
  """The fields a command line sets: `--config.lr=...` -> "lr", `--config.env_kwargs.length 3` -> "env_kwargs.length"."""
  fields = set()
  for arg in argv:
    if arg.startswith("--config."):
      path = arg[len("--config."):].split("=", 1)[0]
      fields.add(path if path.startswith("env_kwargs.") else path.split(".")[0])
  return fields


def _like(value, current):
  """A recorded JSON value in the type of the config's field (JSON has no tuples or ConfigDicts)."""
  if isinstance(current, tuple) and isinstance(value, list):
    return tuple(value)
  if isinstance(current, ml_collections.ConfigDict) and isinstance(value, dict):
    return ml_collections.ConfigDict(value)
  return value


def as_recorded(config: ml_collections.ConfigDict, workdir: str, explicit: set[str]) -> list[str]:
  """Sets every field of `config` that the command line did not set to its value in `workdir`'s config.json (if
  the workdir holds a run of the same algorithm and environment). Returns the fields whose value from the config
  file is thereby not used, as "field: given -> kept" texts."""
  recorded = workdir_files.load_json(os.path.join(workdir, "config.json"))
  if recorded is None:
    return []
  if (recorded.get("algo"), recorded.get("env_name")) != (config.algo, config.env_name):
    return []
  given = json.loads(config.to_json_best_effort())
  unused = []
  for field, value in recorded.items():
    if field == "sweep" and field not in config and field not in explicit and value:  # a sweep is a run's own field
      with config.unlocked():
        config.sweep = ml_collections.ConfigDict(value)
      unused.append(f"sweep: (none) -> {value!r}")
      continue
    if field not in config or field in explicit or given.get(field) == value:
      continue
    if field == "env_kwargs":
      kwargs = dict(value, **{name[len("env_kwargs."):]: config.env_kwargs[name[len("env_kwargs."):]]
                              for name in explicit if name.startswith("env_kwargs.")})
      value = kwargs
      if given.get(field) == value:
        continue
    unused.append(f"{field}: {given.get(field)!r} -> {value!r}")
    with config.unlocked():
      config[field] = _like(value, config[field])
  return sorted(unused)
