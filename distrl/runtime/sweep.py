"""Many configurations in one program: a sweep's members, each the run's config with some numeric fields changed.

  --config.sweep.lr='(1e-3, 3e-4)' --config.sweep.ent_coef='(0, 0.01)'   # the grid: 4 members
  --config.sweep.lr='(1e-4, 1e-2)' --config.sweep.draws=16              # random search: 16 members

A grid's members are every combination of the listed values, fields in alphabetical order, the last varying fastest.
With `sweep.draws=N`, each field's two values are a range and N members are drawn from the run's seed: log-uniformly
where both ends are positive, else uniformly. Only fields that change no array shape can be swept: those an algorithm
lists in its `SWEEPABLE` (learning rates, coefficients, discounts, clip ranges, ...); each member is validated as
its own config would be.

Members are agents (`distrl.runtime.seeds`): with S = `num_seeds`, agent m * S + s is member m's seed `seed + s`, and
the swept values reach each agent's `init` and `update` as traced scalars (`member_config`), so one compiled program
trains them all.
"""

import copy
import itertools
import shlex
from typing import Callable

import ml_collections
import numpy as np

from distrl import algorithms
from distrl.errors import ConfigError, require

DRAWS = "draws"  # sweep.draws: the number of members a random search draws; the other keys of `sweep` are fields


def _spec(config) -> dict:
  """config.sweep as a plain dict (a ConfigDict, a config.json dict, or none)."""
  sweep = config.get("sweep") if hasattr(config, "get") else None
  if sweep is None:
    return {}
  return dict(sweep.items()) if isinstance(sweep, ml_collections.ConfigDict) else dict(sweep)


def fields(config) -> list[str]:
  """The swept fields, in alphabetical order."""
  return sorted(k for k in _spec(config) if k != DRAWS)


def _values(name: str, value) -> tuple[float, ...]:
  values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
  require(len(values) > 0 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values),
          f"sweep.{name}={value!r} must list numbers, e.g. --config.sweep.{name}='(0.001, 0.0003)'")
  return values


def members(config) -> list[dict[str, float]]:
  """Every member's values {field: value}: [{}] for a run that sweeps nothing."""
  spec, names = _spec(config), fields(config)
  if not names:
    require(DRAWS not in spec, f"sweep.draws={spec.get(DRAWS)!r} draws members from ranges, but the sweep names no "
                               f"field: add one, e.g. --config.sweep.lr='(1e-4, 1e-2)'")
    return [{}]
  values = {name: _values(name, spec[name]) for name in names}
  if DRAWS not in spec:
    return [dict(zip(names, combination)) for combination in itertools.product(*(values[n] for n in names))]
  draws = spec[DRAWS]
  require(isinstance(draws, int) and not isinstance(draws, bool) and draws >= 1,
          f"sweep.draws={draws!r} must be a positive number of members")
  for name in names:
    require(len(values[name]) == 2 and values[name][0] <= values[name][1],
            f"sweep.{name}={spec[name]!r}: with sweep.draws, give a range (low, high)")
  rng = np.random.default_rng([int(config["seed"]), 0x5EED])  # the run's seed, a stream no other draw uses
  drawn = []
  for _ in range(draws):
    member = {}
    for name in names:
      low, high = values[name]
      log = low > 0
      u = rng.uniform(np.log(low), np.log(high)) if log else rng.uniform(low, high)
      member[name] = float(np.exp(u) if log else u)
    drawn.append(member)
  return drawn


def folded(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with each field a grid gives one value set to that value and taken out of the sweep (a copy; `config`
  itself where there is none): `--config.sweep.lr=0.001` trains and records (config.json) the run of lr=0.001."""
  spec = _spec(config)
  single = {} if DRAWS in spec else {name: spec[name] for name in fields(config) if name in config
                                     and len(_values(name, spec[name])) == 1}
  if not single:
    return config
  config = copy.deepcopy(config)
  with config.unlocked():
    for name, value in single.items():
      config[name] = _values(name, value)[0]
      del config.sweep[name]
    if not config.sweep:
      del config["sweep"]
  return config


def count(config) -> int:
  return len(members(config))


def check_member(config, member: int | None) -> None:
  """A ConfigError unless `member` (`--member=K`) is None or one of the run's sweep members."""
  members = count(config)
  whole = isinstance(member, (int, np.integer)) and not isinstance(member, bool)
  require(member is None or (whole and members > 1 and 0 <= member < members),
          f"--member={member!r}: " + (f"the run's sweep has members 0..{members - 1}" if members > 1
                                    else "the run is not a sweep (no --config.sweep.*)"))


def label(values: dict[str, float]) -> str:
  """A member's values as people write them: 'ent_coef=0.01 lr=0.0003'."""
  return " ".join(f"{k}={v:g}" for k, v in values.items())


def check(config: ml_collections.ConfigDict, algorithm, sizes: Callable) -> None:
  """Refuses a field `algorithm` cannot sweep, and a member whose config `sizes(member_config)` refuses (its
  ConfigError, naming the member) or whose sizes differ from the run's."""
  names, sweepable = fields(config), tuple(algorithms.hook(algorithm, "SWEEPABLE"))
  for name in names:
    if name in sweepable:
      continue
    can = f"it can sweep {', '.join(sweepable)}" if sweepable else f"{config.algo} lists no SWEEPABLE fields"
    if name not in config:
      raise ConfigError(f"sweep.{name}: {config.algo}'s config has no field {name!r}; {can}")
    raise ConfigError(f"sweep.{name}: {name} changes array shapes or the program's structure and cannot be swept "
                      f"in one program; {can}")
  rows = members(config)
  if not names:
    return
  run = sizes(config)
  for m, values in enumerate(rows):
    try:
      member = sizes(member_config(config, values))
    except ConfigError as error:
      raise ConfigError(f"sweep member {m} ({label(values)}): {error}") from None
    require(member == run, f"sweep member {m} ({label(values)}) changes the run's sizes; {', '.join(names)} cannot "
                           f"be swept in one program")


def member_config(config: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
  """`config` with `values` (numbers, or an agent's traced scalars inside the program) in place of its fields."""
  if not values:
    return config
  member = copy.deepcopy(config)
  with member.ignore_type(), member.unlocked():
    for name, value in values.items():
      member[name] = value
  return member


def table(config, seeds: int) -> dict[str, np.ndarray]:
  """Every agent's swept values {field: (members * seeds,) float32}, member-major: agent m * seeds + s is member m."""
  rows = members(config)
  return {name: np.repeat(np.asarray([row[name] for row in rows], np.float32), seeds) for name in fields(config)}


def seed_values(config) -> list[int]:
  """The seeds of each member: seed, seed + 1, ..., seed + num_seeds - 1."""
  return [int(config["seed"]) + i for i in range(int(config.get("num_seeds", 1)))]


def labels(config) -> list[str]:
  """Every agent's suffix in per-agent metric names: seed_<s>, member_<m>, or member_<m>/seed_<s> ([""] for one)."""
  swept, seeds = count(config), seed_values(config)
  if swept * len(seeds) == 1:
    return [""]
  if swept == 1:
    return [f"seed_{s}" for s in seeds]
  return [f"member_{m}" + (f"/seed_{s}" if len(seeds) > 1 else "") for m in range(swept) for s in seeds]


def names(config) -> list[str]:
  """Every agent as people read it: 'seed 3', 'member 2 (lr=0.001)', 'member 2 (lr=0.001) seed 1'."""
  rows, seeds = members(config), seed_values(config)
  if len(rows) == 1:
    return [f"seed {s}" for s in seeds]
  return [f"member {m} ({label(values)})" + (f" seed {s}" if len(seeds) > 1 else "")
          for m, values in enumerate(rows) for s in seeds]


def ranking(config, history: list[dict], best: list[str] | None = None, workdir: str | None = None) -> list[str]:
  """The end of a sweep: its members ranked by their last greedy evaluation (the mean over each member's seeds), with
  each one's best evaluation (`best`: a text a member, `distrl.runtime.best.texts`), their values, the command that
  evaluates the first at its best (with `workdir`) and the one that trains it alone. [] for a run that sweeps
  nothing or has no evaluation."""
  rows, labels = members(config), labels_of_members(config)
  last = next((r for r in reversed(history) if "eval/return" in r), None)
  if len(rows) == 1 or last is None:
    return []
  returns = [float(np.mean([last[f"eval/return/{label}"] for label in member])) for member in labels]
  order = sorted(range(len(rows)), key=lambda m: -returns[m])
  names = fields(config)
  widths = [max(len(name), 8) for name in names]
  best = best or [""] * len(rows)
  lines = [f"sweep of {len(rows)} members ranked by eval/return at update {last['update']}"
           + (f" (mean of {config['num_seeds']} seeds each)" if config["num_seeds"] > 1 else "") + ":",
           "  rank member    eval/return  best (update)  " + "  ".join(n.ljust(w) for n, w in zip(names, widths))]
  for rank, m in enumerate(order, 1):
    lines.append(f"  {rank:>4} {m:>6} {returns[m]:>14.4g}  {best[m]:<13}  "
                 + "  ".join(f"{rows[m][n]:<{w}g}" for n, w in zip(names, widths)))
  if workdir and best[order[0]]:
    lines.append(f"  at its best: python -m distrl.evaluate --workdir={workdir} --best --member={order[0]}")
  lines.append(f"  the best alone: {retrain_command(config, rows[order[0]])}")
  return [line.rstrip() for line in lines]


def labels_of_members(config) -> list[list[str]]:
  """Each member's agents' labels (`labels`), member by member."""
  seeds = int(config.get("num_seeds", 1))
  every = labels(config)
  return [every[m * seeds:(m + 1) * seeds] for m in range(count(config))]


def retrain_command(config, values: dict[str, float]) -> str:
  """`python -m distrl.launch` with the fields where `config` differs from its algorithm's shipped config (a
  user's algorithm: from nothing) and the member's `values`, without the sweep and its `member_groups` (one
  member's agents are one group on any number of devices)."""
  import importlib
  import json

  from distrl import configs
  recorded = json.loads(config.to_json_best_effort()) if isinstance(config, ml_collections.ConfigDict) else config
  shipped = {}
  if recorded.get("algo") in configs.names():
    shipped = json.loads(importlib.import_module(f"distrl.configs.{recorded['algo']}").get_config()
                         .to_json_best_effort())
  flags = []
  for name, value in {**recorded, **values}.items():
    if name in ("sweep", "algo", "member_groups") or shipped.get(name) == value:
      continue
    if isinstance(value, dict):
      flags += [f"--config.{name}.{k}={_flag(v)}" for k, v in value.items() if shipped.get(name, {}).get(k) != v]
    else:
      flags.append(f"--config.{name}={_flag(value)}")
  start = f"--config={recorded['algo']}" if shipped else "--config=YOUR_CONFIG.py"
  return " ".join(["python -m distrl.launch", start, *flags])


def _flag(value) -> str:
  """A value as a shell word that the config flag parses back."""
  if isinstance(value, list):
    return "'(" + ", ".join(map(repr, value)) + ("," if len(value) == 1 else "") + ")'"
  return shlex.quote(repr(value) if isinstance(value, float) else str(value))
