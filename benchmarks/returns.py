"""The returns table: presets trained to their full budget over seeds, beside the published numbers.

  python benchmarks/returns.py                                   # every row (hours on a CPU)
  python benchmarks/returns.py --rows ppo-CartPole-v1 ppo-Breakout-MinAtar-mlp
  python benchmarks/returns.py --table                           # only rewrite the table and curves from finished rows
  python benchmarks/returns.py --quick --out /tmp/returns        # a few updates of every row: the pipeline, not the returns

Each row is one preset trained for its `total_timesteps` with `--seeds` agents in one program
(`config.num_seeds`) on this process's devices, in `OUT/<row>` (a stopped or crashed row resumes from its
checkpoint when run again; a finished one is not rerun, and one finished with another --seeds or --quick is
refused). The table gives, over the seeds (mean ± std): the training return of the last whole log interval
(the mean over the episodes that ended in it) and the final greedy evaluation (each agent's mean over
`eval_episodes` episodes), with the wall time of the row (the run's `time`: compile, evaluation and
checkpoints included, summed over resumes) and the published number it is measured against.
The table, under a line giving the command, the machine and the date, replaces the text between the `returns.py`
markers in `--results` (results_file.py), and the curves (mean ± std over seeds, through `distrl.plot`) go to
`--curves/<environment>.png`, one figure per environment. By default these are benchmarks/RESULTS.md and
benchmarks/curves/, the published ones, only for a complete run: every row (no --rows, or --table, which tabulates
every finished row), not --quick, in the default --out. Any other run prints its table, says that it did not write
RESULTS.md, and draws its curves in OUT/curves/, unless told otherwise. So rows trained apart
(`--rows ...`) are published by `--table` once they are finished.
"""

import argparse
import dataclasses
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script from anywhere: distrl is beside benchmarks/
  sys.path.insert(0, ROOT)
if os.path.join(ROOT, "benchmarks") not in sys.path:  # results_file, beside this script, when it is loaded by path
  sys.path.append(os.path.join(ROOT, "benchmarks"))
import results_file  # noqa: E402

GYMNAX = "gymnax 1.0.1 README (gymnax-blines PPO/ES checkpoints)"
GYMNAX_PPO = "gymnax 1.0.1 README (gymnax-blines PPO, MLP)"
MINATAR_PUBLISHED = {"Breakout": 28, "Asterix": 15, "Freeway": 58, "SpaceInvaders": 131}  # gymnax's PPO, an MLP
NAME = "returns.py"  # the table's markers in RESULTS.md
BEGIN, END = results_file.markers(NAME)
OUT = os.path.join(ROOT, "runs", "returns")  # the default --out, whose full runs make the published table
RESULTS = results_file.RESULTS  # where the published table lives, between BEGIN and END


@dataclasses.dataclass(frozen=True)
class Row:
  config: str  # a shipped config (configs/)
  preset: str | None
  published: float | None  # the number to match or beat
  source: str
  budget: int | None = None  # total_timesteps, where the preset's is an accelerator's (the name says it: "@1M")

  @property
  def name(self) -> str:
    return f"{self.config}-{self.preset}" + (f"@{self.budget / 1e6:g}M" if self.budget else "")


MEMORY_CHAIN = "the optimum: every answer right (without memory any policy expects 0)"
CHANCE = "chance: what any policy without memory expects"
BESIDE = "the row beside it: the same budget {} memory"
CRAFTAX_RNN = "the Craftax paper's recurrent PPO settings at a CPU's budget"
PENDULUM_OFF_POLICY = "issue 30's bar: about -150 within 2e4-5e4 steps (PPO's row: 1e6 steps)"
BRAX_SAC = "the maximum; Brax's own SAC, same settings, reached it too (benchmarks/brax_trainers.py)"
DOUBLE_PENDULUM = "no published number: at most 10 a step less distance and speed penalties (MuJoCo's peaks near 9,350)"
CHEETAH_CPU = "a CPU's budget, 1.3% of the preset's: the curve's start, no published number"
# Presets whose budget is an accelerator's: listed in the table as not run here (until a run of them is added).
NOT_RUN = [("ppo", "craftax:Craftax-Classic-Symbolic-v1-rnn", "the Craftax paper's PPO-RNN, 1e9 steps"),
           *[(algo, f"brax:{env}", f"{steps} steps")
             for env, steps in (("halfcheetah", "5e6"),)
             for algo in ("sac", "td3")]]


ROWS = {row.name: row for row in [
    Row("ppo", "CartPole-v1", 500, GYMNAX),
    Row("ppo", "Acrobot-v1", -80, GYMNAX),
    Row("ppo", "Pendulum-v1", -130, GYMNAX),
    Row("ppo", "MountainCarContinuous-v0", 92, GYMNAX),
    Row("sac", "Pendulum-v1", -150, PENDULUM_OFF_POLICY),
    Row("td3", "Pendulum-v1", -150, PENDULUM_OFF_POLICY),
    Row("sac", "brax:inverted_pendulum", 1000, BRAX_SAC),
    Row("td3", "brax:inverted_pendulum", 1000, BRAX_SAC),
    Row("sac", "brax:inverted_double_pendulum", None, DOUBLE_PENDULUM),
    Row("td3", "brax:inverted_double_pendulum", None, DOUBLE_PENDULUM),
    Row("sac", "brax:halfcheetah", None, CHEETAH_CPU, budget=64_000),
    Row("td3", "brax:halfcheetah", None, CHEETAH_CPU, budget=64_000),
    Row("dqn", "CartPole-v1", 500, GYMNAX),
    Row("dqn", "Acrobot-v1", -80, GYMNAX),
    Row("pqn", "CartPole-v1", 500, GYMNAX),
    Row("pqn", "Acrobot-v1", -80, GYMNAX),
    *[Row(algo, f"{game}-MinAtar{torso}", published, source)
      for algo, torso, source in (("ppo", "-mlp", GYMNAX_PPO),
                                  ("pqn", "-mlp", GYMNAX_PPO + " (PQN's target: the ppo -mlp row)"),
                                  ("ppo", "", GYMNAX_PPO + ", for an MLP"),
                                  ("pqn", "", GYMNAX_PPO + ", for an MLP (PQN's target: the ppo CNN row)"))
      for game, published in MINATAR_PUBLISHED.items()],
    Row("ppo", "MemoryChain-bsuite", 1, MEMORY_CHAIN),
    Row("ppo", "MemoryChain-bsuite-ff", 0, CHANCE),
    Row("pqn", "MemoryChain-bsuite", 1, MEMORY_CHAIN),
    Row("pqn", "MemoryChain-bsuite-ff", 0, CHANCE),
    Row("ppo", "MetaMaze-misc", None, BESIDE.format("without")),
    Row("ppo", "MetaMaze-misc-ff", None, BESIDE.format("with")),
    Row("ppo", "craftax:Craftax-Classic-Symbolic-v1-rnn", None, CRAFTAX_RNN, budget=500_000),
    Row("ppo", "craftax:Craftax-Classic-Symbolic-v1", None, BESIDE.format("with"), budget=500_000),
]}


def make_config(row: Row, seeds: int, quick: bool):
  import importlib

  import jax

  config = importlib.import_module(f"distrl.configs.{row.config}").get_config(row.preset)
  config.num_seeds = seeds
  if row.budget:
    config.total_timesteps = row.budget
  if quick:  # two logged chunks of a few updates, one evaluation: the whole pipeline in seconds
    n = jax.device_count()
    config.num_envs = n * max(1, 4 // n)
    config.eval_episodes = n
    if row.config in ("ppo", "pqn"):  # learn from each fresh rollout
      config.update(num_steps=16, num_minibatches=2, update_epochs=1, log_every=2, eval_every=4,
                    total_timesteps=4 * 16 * config.num_envs)
    else:
      config.update(train_frequency=config.num_envs, learning_starts=64, buffer_size=32 * config.num_envs,
                    batch_size=8 * n, log_every=16, eval_every=32, total_timesteps=32 * config.num_envs)
  return config


def _per_seed(record: dict, metric: str, seeds: list[int]) -> list[float]:
  if len(seeds) == 1:
    return [record[metric]]
  return [record[f"{metric}/seed_{s}"] for s in seeds]


def final_training_return(records: list[dict], log_every: int, agents: list[int]) -> list[float]:
  """Each agent's training return in the run's last record of a whole log interval in which an episode of it ended:
  a run whose length is not a multiple of the interval ends with a short record (PQN's MinAtar presets: one
  iteration of 4,096 steps, a few episodes), which says little, and an agent that holds a Brax pole for the whole
  1,000-step episode may end none in an interval. NaN for an agent with no episode ended (a tiny --quick run)."""
  updates = [0] + [r["update"] for r in records]
  whole = [r for r, before in zip(records, updates) if r["update"] - before == log_every] or records
  keys = ["train/episode_return"] if len(agents) == 1 else [f"train/episode_return/seed_{s}" for s in agents]
  return [next((r[key] for r in reversed(whole) if key in r), float("nan")) for key in keys]


def run(row: Row, out: str, seeds: int, quick: bool = False) -> dict:
  """Trains one row (resuming it if it was stopped) and returns its result, also kept in OUT/<row>/returns.json."""
  import numpy as np

  from distrl.runtime import trainer

  workdir = os.path.join(out, row.name)
  path = os.path.join(workdir, "returns.json")
  if os.path.exists(path):
    with open(path) as f:
      summary = json.load(f)
    if (summary["seeds"], summary["quick"]) != (seeds, quick):
      kind = lambda n, q: f"{'a --quick' if q else 'a full'} run of {n} seed(s)"
      raise SystemExit(f"{workdir} holds {kind(summary['seeds'], summary['quick'])}, not {kind(seeds, quick)}: "
                       f"use another --out")
    return summary
  config = make_config(row, seeds, quick)
  if trainer.train(config, workdir).stopped:
    raise SystemExit(f"{row.name} was stopped; run the same command to resume it")
  with open(os.path.join(workdir, "metrics.jsonl")) as f:  # the whole run, across resumes
    records = [json.loads(line) for line in f if line.strip()]
  agents = [config.seed + i for i in range(seeds)]
  trained = final_training_return(records, config.log_every, agents)
  evaluated = _per_seed(records[-1], "eval/return", agents)  # the run ends with an evaluation
  summary = {"row": row.name, "env": config.env_name, "steps": records[-1]["step"], "seeds": seeds,
             "train_mean": float(np.mean(trained)), "train_std": float(np.std(trained)),
             "eval_mean": float(np.mean(evaluated)), "eval_std": float(np.std(evaluated)),
             "wall_s": records[-1]["time"], "published": row.published, "source": row.source, "quick": quick}
  with open(path, "w") as f:
    json.dump(summary, f, indent=1)
  return summary


def label(name: str) -> str:
  """A row's name as the table shows it: MinAtar rows without `-mlp` say that they are the CNN's."""
  return f"{name} (CNN)" if "-MinAtar" in name and not name.endswith("-mlp") else name


def _pm(mean: float, std: float) -> str:
  """mean ± std, with two decimals where the returns are small (MemoryChain's are within [-1, 1])."""
  digits = 1 if abs(mean) >= 10 else 2
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def table(results: list[dict], kept: dict[str, str] | None = None) -> str:
  """One line per row, in ROWS' order: from its result, or else the line `kept` has for it (a published row whose
  run is not in this --out)."""
  lines = ["| preset | steps | seeds | final train return | greedy eval return | wall | published | source |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  by_row, kept = {r["row"]: r for r in results}, kept or {}
  for name in ROWS:
    if name not in by_row:
      lines += [kept[name]] if name in kept else []
      continue
    r = by_row[name]
    wall = f"{r['wall_s'] / 60:.1f} min"
    published = "" if r["published"] is None else f"{r['published']:g}"
    lines.append(f"| {label(r['row'])} | {r['steps']:,} | {r['seeds']} | {_pm(r['train_mean'], r['train_std'])} "
                 f"| {_pm(r['eval_mean'], r['eval_std'])} | {wall} | {published} | {r['source']} |")
  for algo, preset, source in NOT_RUN:
    steps = make_config(Row(algo, preset, None, source), 1, False).total_timesteps
    lines.append(f"| {algo}-{preset} | {steps:,} | | not run here (an accelerator's budget) | | | | {source} |")
  return "\n".join(lines)


def published_lines(path: str) -> dict[str, str]:
  """The rows of the table between the markers in `path` (none if there is no such file or table), by row name."""
  content = results_file.read(path, NAME)
  if content is None:
    return {}
  lines = content.splitlines()
  rows = {line[2:].split(" | ")[0].removesuffix(" (CNN)"): line for line in lines if line.startswith("| ")}
  return {name: line for name, line in rows.items() if name in ROWS}


def draw_curves(results: list[dict], out: str, directory: str, kept: list[str] = ()) -> list[str]:
  """One PNG per environment: every row of it as a curve of training return (over seeds). A row in which no
  episode ended (a --quick run of long episodes) has no curve, and is said. An environment with a `kept` row (in the
  table, its run not in `out`) keeps its PNG as it is, which is said too: redrawn, it would lose that row's curve."""
  from distrl import plot

  os.makedirs(directory, exist_ok=True)
  written = []
  for r in results:
    if r["train_mean"] != r["train_mean"]:  # NaN: no training return was logged
      print(f"{r['row']}: no episode ended, no curve")
  kept_envs = {make_config(ROWS[name], 1, False).env_name: name for name in kept}
  for env in dict.fromkeys(r["env"] for r in results if r["train_mean"] == r["train_mean"]):
    path = os.path.join(directory, f"{env}.png")
    if env in kept_envs:
      print(f"{path} not redrawn: the run of {kept_envs[env]} is not in {out}")
      continue
    workdirs = [os.path.join(out, r["row"]) for r in results if r["env"] == env and r["train_mean"] == r["train_mean"]]
    plot.draw(plot.figure(workdirs, "train/episode_return"), "train/episode_return", path)
    written.append(path)
  return written


def finished(out: str, names: list[str]) -> list[dict]:
  results = []
  for name in names:
    path = os.path.join(out, name, "returns.json")
    if os.path.exists(path):
      with open(path) as f:
        results.append(json.load(f))
  return results


def incomplete(args: argparse.Namespace) -> str | None:
  """Why this run does not make the published table and curves (None if it does): a --quick run, another --out or
  some of the rows would replace them with its own rows."""
  if args.quick:
    return "a --quick run"
  if os.path.abspath(args.out) != OUT:
    return f"--out {args.out} is not the default {os.path.relpath(OUT, ROOT)}"
  if not args.table and set(args.rows) != set(ROWS):
    return f"--rows ran {len(set(args.rows))} of the {len(ROWS)} rows (--table publishes every finished row)"
  return None


def destinations(args: argparse.Namespace) -> argparse.Namespace:
  """`args` with --results and --curves resolved: the published table and curves only for a complete run (every row
  or --table, not --quick, in the default --out)."""
  published = incomplete(args) is None
  args.results = results_file.destination(args.results, incomplete(args))
  if args.curves is None:
    args.curves = os.path.join(ROOT, "benchmarks", "curves") if published else os.path.join(args.out, "curves")
  return args


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
  parser.add_argument("--seeds", type=int, default=3, help="agents per row, trained as one program (num_seeds)")
  parser.add_argument("--out", default=OUT, help="one workdir per row")
  parser.add_argument("--results", help="where the table goes, between its markers ('' for none; default: "
                                        "benchmarks/RESULTS.md for a complete run, else none)")
  parser.add_argument("--curves", help="where the PNGs go (default: benchmarks/curves for a complete run, else "
                                       "OUT/curves)")
  parser.add_argument("--table", action="store_true", help="train nothing: the table and curves of finished rows")
  parser.add_argument("--quick", action="store_true", help="a few updates per row, to check the pipeline")
  args = destinations(parser.parse_args())
  if args.results:  # before hours of training, not after
    results_file.check(args.results, [NAME])

  for name in [] if args.table else args.rows:
    print(f"{name}: training", flush=True)
    result = run(ROWS[name], args.out, args.seeds, quick=args.quick)
    print(f"{name}: train {result['train_mean']:.1f} ± {result['train_std']:.1f}, eval {result['eval_mean']:.1f} ± "
          f"{result['eval_std']:.1f} in {result['wall_s']:.0f}s", flush=True)
  results = finished(args.out, list(ROWS))
  kept = {name: line for name, line in published_lines(args.results).items()
          if name not in {r["row"] for r in results}}  # published rows whose runs are elsewhere stay as they are
  text = table(results, kept)
  print(text)
  if args.results and results:
    results_file.write(args.results, {NAME: text})
  elif not args.results:
    results_file.not_written(incomplete(args) or "--results ''")
  for path in draw_curves(results, args.out, args.curves, list(kept)) if results else []:
    print(f"wrote {path}")


if __name__ == "__main__":
  main()
