"""Learning curves from runs' metrics files: episode return against environment steps.

  python -m distrl.plot runs/seed0 runs/seed1 runs/seed2 runs/lr1e-3 --out=curves.png
  python -m distrl.plot runs/* --metric=eval/return --out=eval.png

Runs whose configs differ only in `seed`, and the agents of a run of several seeds, form one
curve: the mean over them, with a band of one standard deviation, on the steps they all reached. Curves are labelled by algorithm, environment,
and the config fields that differ between curves.
"""

import dataclasses
import json
import os
import sys

import numpy as np
from absl import app, flags

_OUT = flags.DEFINE_string("out", "curves.png", "Where to write the figure (.png, .pdf or .svg).")
_METRIC = flags.DEFINE_string("metric", "train/episode_return", "Which scalar of metrics.jsonl to draw.")


@dataclasses.dataclass
class Curve:
  label: str
  steps: np.ndarray  # (S,)
  mean: np.ndarray  # (S,)
  std: np.ndarray  # (S,), over runs (0 for a single run)
  runs: list[str]


def _load(workdir: str, metric: str) -> list[tuple[dict, np.ndarray, np.ndarray]]:
  """(config, steps, values) of every agent of a run: one, or `num_seeds` read from `metric/seed_<s>`."""
  for name in ("config.json", "metrics.jsonl"):
    if not os.path.exists(os.path.join(workdir, name)):
      raise ValueError(f"{workdir} is not a distrl run: it has no {name}")
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  agents = [config["seed"] + i for i in range(config.get("num_seeds", 1))]
  names = [metric] if len(agents) == 1 else [f"{metric}/seed_{seed}" for seed in agents]
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f if line.strip()]
  members = []
  for seed, name in zip(agents, names):
    kept = [r for r in records if name in r]
    if not kept:
      raise ValueError(f"{workdir}/metrics.jsonl has no {name!r} records")
    members.append(({**config, "seed": seed, "num_seeds": 1}, np.asarray([r["step"] for r in kept], float),
                    np.asarray([r[name] for r in kept], float)))
  return members


def curves(workdirs: list[str], metric: str) -> list[Curve]:
  """One Curve per group of agents that differ only in seed, in the order the groups first appear.

  The agents of a multi-seed run (`config.num_seeds`) count as runs of their own seeds.
  """
  groups: dict[str, list] = {}
  for workdir in workdirs:
    for config, steps, values in _load(workdir, metric):
      key = json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True)
      groups.setdefault(key, []).append((workdir, config, steps, values))

  configs = [json.loads(key) for key in groups]
  varying = sorted(k for k in set().union(*configs) if len({json.dumps(c.get(k)) for c in configs}) > 1)
  result = []
  for key, runs in groups.items():
    config = json.loads(key)
    label = " ".join([config["algo"], config["env_name"]] +
                     [f"{k}={config.get(k)}" for k in varying if k not in ("algo", "env_name")])
    end = min(steps[-1] for _, _, steps, _ in runs)  # the steps every run of the group reached
    grid = np.unique(np.concatenate([steps[steps <= end] for _, _, steps, _ in runs]))
    values = np.stack([np.interp(grid, steps, vals) for _, _, steps, vals in runs])
    result.append(Curve(label=f"{label} ({len(runs)} seed{'s' if len(runs) > 1 else ''})", steps=grid,
                        mean=values.mean(0), std=values.std(0), runs=list(dict.fromkeys(w for w, *_ in runs))))
  return result


def draw(lines: list[Curve], metric: str, out: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 4.5))
  for curve in lines:
    (line,) = ax.plot(curve.steps, curve.mean, label=curve.label)
    ax.fill_between(curve.steps, curve.mean - curve.std, curve.mean + curve.std, color=line.get_color(), alpha=0.2)
  ax.set_xlabel("environment steps")
  ax.set_ylabel(metric)
  ax.grid(alpha=0.3)
  ax.legend(fontsize="small")
  fig.tight_layout()
  fig.savefig(out, dpi=120)
  plt.close(fig)


def main(argv):
  workdirs = argv[1:]
  if not workdirs:
    raise app.UsageError("name one or more run directories: python -m distrl.plot DIR [DIR ...] --out=curves.png")
  try:
    lines = curves(workdirs, _METRIC.value)
  except ValueError as error:
    print(f"distrl: error: {error}", file=sys.stderr)
    sys.exit(1)
  out = os.path.expanduser(_OUT.value)
  try:
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    draw(lines, _METRIC.value, out)
  except (OSError, ValueError) as error:  # an unwritable place, or a format matplotlib does not know
    print(f"distrl: error: cannot write --out={_OUT.value}: {getattr(error, 'strerror', None) or error}",
          file=sys.stderr)
    sys.exit(1)
  for curve in lines:
    print(f"{curve.label}: final {_METRIC.value} {curve.mean[-1]:.1f} ± {curve.std[-1]:.1f} "
          f"at step {int(curve.steps[-1]):,}")
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
