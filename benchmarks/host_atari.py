"""Atari through envpool at this machine's budget: learning curves of Breakout-v5 and Pong-v5 beside the random policy.

  python benchmarks/host_atari.py                    # both games: Breakout 200,000 steps, Pong 1M (~35 + ~65 min)
  python benchmarks/host_atari.py --games Pong-v5    # one game; the table has every game finished in --out
  python benchmarks/host_atari.py --steps 20000 --out /tmp/atari   # shorter: the pipeline only (RESULTS not written)

Each game trains `ppo:envpool:<game>` at the CPU-sized settings of CleanRL's ppo_atari_envpool.py (8 environments x
128 steps, 4 minibatches, 4 epochs, lr 2.5e-4 annealed over the run, clip 0.1, the Nature CNN shared by both heads,
envpool's defaults with episodic life and clipped rewards: up to 30 no-ops, no sticky actions, the minimal action
set). The preset itself carries Cleanba's accelerator settings (Machado et al.'s protocol, the IMPALA CNN, 128
environments, 10M steps), "not run here". Returns are whole games of unclipped rewards (`train/episode_return`). The
random policy plays the same environments (uniform actions, 32 games) in the same invocation.

Runs go to --out (default runs/host_atari), one workdir a game; a game whose workdir there has finished is not
trained again. A table of every game at the default --steps in the default --out writes itself between the
`host-atari` markers of benchmarks/RESULTS.md and the curves to benchmarks/curves/envpool-<game>.png; wall times are
the runs' own (`time` of their last record, compiles included).
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.append(os.path.join(ROOT, "benchmarks"))
import results_file  # noqa: E402

NAME = "host-atari"
GAMES = ("Breakout-v5", "Pong-v5")
# Each game's budget on a 2-core CPU: Breakout climbs within 200k steps; Pong stays at the random policy's -20 for
# its first ~200k steps (measured) and PPO usually starts to win points between 0.5M and 1M.
STEPS = {"Breakout-v5": 200_000, "Pong-v5": 1_000_000}
OUT = os.path.join(ROOT, "runs", "host_atari")  # the default --out, whose runs make the published table
ENV_KWARGS = {"episodic_life": True, "reward_clip": True, "noop_max": 30, "repeat_action_probability": 0.0,
              "full_action_space": False, "max_episode_steps": 27_000}
CPU_SIZED = {**{f"env_kwargs.{k}": v for k, v in ENV_KWARGS.items()}, "torso": "nature", "shared_torso": True,
             "hidden_sizes": 512, "clip_value_loss": True, "num_envs": 8, "num_steps": 128, "num_minibatches": 4,
             "update_epochs": 4, "log_every": 10, "eval_every": 50, "checkpoint_every": 50}


def random_returns(game: str, games: int = 32, num_envs: int = 8) -> list[float]:
  """Whole-game returns of uniformly random actions on the preset's environments."""
  from distrl import envs
  spec = envs.make(f"envpool:{game}", ENV_KWARGS)
  batch = spec.open(num_envs, seed=12345)
  batch.reset()
  rng, returns = np.random.default_rng(0), []
  while len(returns) < games:
    stepped = batch.step(rng.integers(0, spec.num_actions, num_envs))
    returns += list(stepped.episode_return[stepped.counted])
  batch.close()
  return returns[:games]


def train(game: str, steps: int, workdir: str) -> None:
  """Trains the CPU-sized preset into `workdir`, unless a run there has finished."""
  if _finished(workdir):
    last = json.loads(open(os.path.join(workdir, "metrics.jsonl")).readlines()[-1])["step"]
    if last < steps - CPU_SIZED["num_envs"] * CPU_SIZED["num_steps"]:
      raise SystemExit(f"{workdir} finished at step {last:,}, short of {steps:,}: move it aside to train {game} anew")
    print(f"{workdir}: finished before, not trained again", flush=True)
    return
  fields = {**CPU_SIZED, "total_timesteps": steps}
  out = subprocess.run([sys.executable, "-m", "distrl.launch", f"--config=ppo:envpool:{game}", f"--workdir={workdir}",
                        *[f"--config.{k}={v}" for k, v in fields.items()]], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
  if out.returncode != 0:
    raise SystemExit(f"training {game} failed:\n{out.stderr[-3000:]}")
  if not _finished(workdir):  # stopped (Ctrl-C, SIGTERM): saved, and resumed by the same command
    said = out.stdout.strip().splitlines() or ["no output"]
    raise SystemExit(f"training {game} stopped before its end ({said[-1]}); run the same command to resume it")


def _finished(workdir: str) -> bool:
  path = os.path.join(workdir, "run.json")
  return os.path.exists(path) and bool(json.load(open(path)).get("finished"))


def _whole(records: list[dict]) -> list[dict]:
  """The records of whole log intervals with an episode's end: not the short last one of a run whose length is no
  multiple of log_every, nor one written where a run was stopped (a few episodes, or one)."""
  return [r for r in records if "train/episode_return" in r and r["update"] % CPU_SIZED["log_every"] == 0]


def curve(records: list[dict], points: int = 5) -> str:
  """Training return at `points` evenly spaced log records, as 'step: return' pairs."""
  logged = _whole(records)
  picks = [logged[round(i * (len(logged) - 1) / (points - 1))] for i in range(points)] if logged else []
  return ", ".join(f"{r['step'] // 1000}k: {r['train/episode_return']:.1f}" for r in picks)


def late(records: list[dict]) -> float:
  """The mean training return of the whole log intervals in the run's last 10% of steps."""
  end = records[-1]["step"]
  return float(np.mean([r["train/episode_return"] for r in _whole(records) if r["step"] > 0.9 * end]))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=None, help=f"every game's steps (default: {STEPS})")
  parser.add_argument("--games", nargs="+", default=list(GAMES), choices=GAMES)
  parser.add_argument("--out", default=OUT, help="where the runs go, a workdir a game")
  parser.add_argument("--results", default=None, help="the Markdown file to write the table into ('' for none)")
  args = parser.parse_args()
  results_file.check(args.results or results_file.RESULTS, [NAME])  # before hours of training, not after
  for game in args.games:
    train(game, args.steps or STEPS[game], os.path.join(args.out, game))
  finished = [g for g in GAMES if _finished(os.path.join(args.out, g))]
  partial = ("--steps" if args.steps is not None else "--out" if os.path.abspath(args.out) != OUT
             else None if finished == list(GAMES) else f"only {', '.join(finished)} in {args.out}")
  path = results_file.destination(args.results, partial)
  rows = ["| game | random policy (32 games) | steps | training return along the run | training return, last 10% "
          "of steps | final greedy eval | wall |", "| --- | --- | --- | --- | --- | --- | --- |"]
  for game in finished:
    chance, workdir = random_returns(game), os.path.join(args.out, game)
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    evals = [r["eval/return"] for r in records if "eval/return" in r]
    rows.append(f"| {game} | {np.mean(chance):.1f} ± {np.std(chance):.1f} | {records[-1]['step']:,} | "
                f"{curve(records)} | {late(records):.1f} | {evals[-1]:.1f} | {records[-1]['time'] / 60:.1f} min |")
    print(rows[-1], flush=True)
    if path:
      from distrl import plot
      png = os.path.join(ROOT, "benchmarks", "curves", f"envpool-{game}.png")
      plot.draw(plot.figure([workdir], "train/episode_return"), "train/episode_return", png)
  table = "\n".join(rows)
  print(table)
  if path:
    results_file.write(path, {NAME: table})
  else:
    results_file.not_written(partial or "--results ''")


if __name__ == "__main__":
  main()
