"""Learning curves from runs' metrics files: episode return against environment steps.

  python -m distrl.plot runs/seed0 runs/seed1 runs/seed2 runs/lr1e-3 --out=curves.png
  python -m distrl.plot runs/* --metric=eval/return --out=eval.png

Runs whose configs differ only in `seed`, and the agents of a run of several seeds, form one curve: the
mean over its seeds, with a band from the lowest to the highest seed at each step (so the band never
leaves the range the runs span), on the steps they all reached. Each (config, seed) counts once: the same
seed in two workdirs (a run and a multi-seed run that includes it) is one seed. Curves are labelled by
the algorithm and environment where those differ, then by the fields that differ among the curves of the
same algorithm and environment (a field only some of them have, or one that does not change learning such
as `log_every`, does not count); what all curves share is the title. A curve of a run still training (its
workdir's lock is held) says so in its label and is dashed: it ends where the run's records end now.
A sweep's members (`--config.sweep.*`) are curves of their own, labelled by their values like separate runs.
"""

import dataclasses
import json
import os
import sys
import textwrap

import numpy as np
from absl import app, flags

from distrl.runtime import sweep, workdir as run_directory

_OUT = flags.DEFINE_string("out", "curves.png", "Where to write the figure (.png, .pdf or .svg).")
_METRIC = flags.DEFINE_string("metric", "train/episode_return", "Which scalar of metrics.jsonl to draw.")

NOT_LABELS = ("seed", "num_seeds")  # what differs between the seeds of one curve
# Fields that change how a run is carried out, not what it learns: never what tells two curves apart.
BOOKKEEPING = ("log_every", "eval_every", "eval_episodes", "checkpoint_every", "keep_checkpoints", "backend",
               "member_groups")
MAX_FIELDS = 3  # fields in a label; more differing fields are counted, not shown


@dataclasses.dataclass
class Curve:
  label: str
  steps: np.ndarray  # (S,)
  mean: np.ndarray  # (S,), over the curve's seeds
  std: np.ndarray  # (S,), over its seeds (0 for one seed)
  low: np.ndarray  # (S,), the lowest seed: the band's lower edge
  high: np.ndarray  # (S,), the highest seed
  seeds: list[int]
  runs: list[str]  # the workdirs it was read from
  training: list[str]  # those of them a run is still training in: the curve ends where their records end now


@dataclasses.dataclass
class Figure:
  title: str
  curves: list[Curve]
  notes: list[str]  # e.g. seeds that two workdirs both held, counted once


def _load(workdir: str, metric: str) -> list[tuple[dict, np.ndarray, np.ndarray]]:
  """(config, steps, values) of every agent of a run: one, or each seed and sweep member read from
  `metric/<label>` (`sweep.labels`), its config that of the agent alone (its seed, its member's values)."""
  for name in ("config.json", "metrics.jsonl"):
    if not os.path.exists(os.path.join(workdir, name)):
      raise ValueError(f"{workdir} is not a distrl run: it has no {name}")
  config = run_directory.load_json(os.path.join(workdir, "config.json"))
  agents = [(values, seed) for values in sweep.members(config) for seed in sweep.seed_values(config)]
  labels = sweep.labels(config)
  names = [metric] if labels == [""] else [f"{metric}/{label}" for label in labels]
  alone = {k: v for k, v in config.items() if k != "sweep"}
  records = _records(os.path.join(workdir, "metrics.jsonl"))
  members = []
  for (values, seed), name in zip(agents, names):
    kept = [r for r in records if name in r]
    if not kept:
      raise ValueError(f"{workdir}/metrics.jsonl has no {name!r} records")
    members.append(({**alone, **values, "seed": seed, "num_seeds": 1}, np.asarray([r["step"] for r in kept], float),
                    np.asarray([r[name] for r in kept], float)))
  return members


def _records(path: str) -> list[dict]:
  """The records of a metrics.jsonl; a last line cut short (a run killed while writing it, or being written now)
  is left out, as a resume drops it. Another unreadable line is a ValueError naming the file and the line."""
  with open(path) as f:
    records, broken, count = run_directory.parse_records(f.read())
  if broken and broken != [count]:
    raise ValueError(f"{path}: line {broken[0]} is not a record")
  return records


def _compact(value) -> str:
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, list):
    return ",".join(map(_compact, value))
  return str(value)


def figure(workdirs: list[str], metric: str) -> Figure:
  """The curves of `workdirs`: one per group of agents that differ only in seed, in order of first appearance."""
  groups: dict[str, dict[int, tuple]] = {}
  notes = []
  for workdir in workdirs:
    for config, steps, values in _load(workdir, metric):
      key = json.dumps({k: v for k, v in config.items() if k not in NOT_LABELS}, sort_keys=True)
      group = groups.setdefault(key, {})
      seed = config["seed"]
      if seed in group:
        notes.append(f"seed {seed} of {config['algo']} on {config['env_name']} is in both {group[seed][0]} and "
                     f"{workdir}: counted once, from {group[seed][0]}")
        continue
      group[seed] = (workdir, steps, values)

  configs = [json.loads(key) for key in groups]
  algos, envs = sorted({c["algo"] for c in configs}), sorted({c["env_name"] for c in configs})
  title = f"{metric}: " + (f"{algos[0]} on " if len(algos) == 1 else "") + ", ".join(envs)

  result = []
  for key, members in groups.items():
    config = json.loads(key)
    # Fields tell curves of one algorithm (and environment) apart: PPO's and DQN's configs differ everywhere.
    kin = [c for c in configs if (c["algo"], c["env_name"]) == (config["algo"], config["env_name"])]
    common = set.intersection(*(set(c) for c in kin)) - set(NOT_LABELS) - set(BOOKKEEPING)
    differ = [k for k in sorted(common) if len({json.dumps(c[k]) for c in kin}) > 1]
    parts = [config["algo"]] if len(algos) > 1 else []
    parts += [config["env_name"]] if len(envs) > 1 else []
    parts += [f"{k}={_compact(config[k])}" for k in differ[:MAX_FIELDS]]
    if len(differ) > MAX_FIELDS:
      parts.append(f"+{len(differ) - MAX_FIELDS} more")
    seeds = sorted(members)
    label = " ".join(parts) or f"{config['algo']} {config['env_name']}"
    runs = [members[s] for s in seeds]
    end = min(steps[-1] for _, steps, _ in runs)  # the steps every seed of the curve reached
    grid = np.unique(np.concatenate([steps[steps <= end] for _, steps, _ in runs]))
    values = np.stack([np.interp(grid, steps, vals) for _, steps, vals in runs])
    workdirs = list(dict.fromkeys(w for w, _, _ in runs))
    training = [w for w in workdirs if run_directory.in_use(w)]
    result.append(Curve(label=f"{label} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
                              f"{', still training' if training else ''})", steps=grid,
                        mean=values.mean(0), std=values.std(0), low=values.min(0), high=values.max(0), seeds=seeds,
                        runs=workdirs, training=training))
  return Figure(title=title, curves=result, notes=notes)


def curves(workdirs: list[str], metric: str) -> list[Curve]:
  return figure(workdirs, metric).curves


def draw(shown: Figure, metric: str, out: str) -> None:
  """The figure as `out`."""
  import matplotlib.pyplot as plt

  fig = matplotlib_figure(shown, metric)
  fig.savefig(out, dpi=120)
  plt.close(fig)


def matplotlib_figure(shown: Figure, metric: str):
  """The matplotlib figure of `shown`: the legend below the axes, where it covers no curve however many there are."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 4.5 + 0.25 * len(shown.curves)), layout="constrained")
  for curve in shown.curves:
    (line,) = ax.plot(curve.steps, curve.mean, label=textwrap.fill(curve.label, 60),
                      linestyle="--" if curve.training else "-")
    if len(curve.seeds) > 1:
      ax.fill_between(curve.steps, curve.low, curve.high, color=line.get_color(), alpha=0.2, linewidth=0)
  ax.set_xlabel("environment steps")
  ax.set_ylabel(metric)
  ax.set_title(textwrap.fill(shown.title, 70), fontsize="medium")
  ax.grid(alpha=0.3)
  fig.legend(fontsize="small", loc="outside lower center", ncol=2 if len(shown.curves) > 6 else 1,
             title="mean; band: lowest to highest seed" if any(len(c.seeds) > 1 for c in shown.curves) else None,
             title_fontsize="x-small")
  return fig


def main(argv):
  workdirs = [os.path.expanduser(w) for w in argv[1:]]
  if not workdirs:
    raise app.UsageError("name one or more run directories: python -m distrl.plot DIR [DIR ...] --out=curves.png")
  try:
    shown = figure(workdirs, _METRIC.value)
  except ValueError as error:
    print(f"distrl: error: {error}", file=sys.stderr)
    sys.exit(1)
  for note in shown.notes:
    print(f"note: {note}")
  out = os.path.expanduser(_OUT.value)
  if not out or os.path.isdir(out):
    print(f"distrl: error: --out={_OUT.value!r} {'is a directory' if out else 'is empty'}: name the figure's file "
          f"(.png, .pdf or .svg)", file=sys.stderr)
    sys.exit(1)
  out += "" if os.path.splitext(out)[1] else ".png"  # what matplotlib writes for a name without a format
  try:
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    draw(shown, _METRIC.value, out)
  except (OSError, ValueError) as error:  # an unwritable place, or a format matplotlib does not know
    print(f"distrl: error: cannot write --out={_OUT.value}: {getattr(error, 'strerror', None) or error}",
          file=sys.stderr)
    sys.exit(1)
  print(shown.title)
  for curve in shown.curves:
    print(f"  {curve.label}: {'latest' if curve.training else 'final'} {curve.mean[-1]:.1f} (seeds "
          f"{curve.low[-1]:.1f} to {curve.high[-1]:.1f}) at step {int(curve.steps[-1]):,}")
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
