"""How long `distrl.evaluate --gif` takes for a 500-step CartPole episode, beside gymnax's own visualizer.

  python benchmarks/evaluate_gif.py [--workdir runs/cartpole]   # trains the default PPO there first if needed

Times, in one invocation: the whole command (`python -m distrl.evaluate --workdir=... --gif=...`), and the
drawing alone done two ways on the same episode: distrl.cli.render (one gymnasium renderer for all frames, one
palette) and gymnax's Visualizer (a new renderer and a matplotlib figure per frame), as `distrl.evaluate` did.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "distrl-gif-bench"))
  parser.add_argument("--skip-gymnax", action="store_true", help="do not time gymnax's visualizer (~2 minutes)")
  args = parser.parse_args()
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
         "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
  if not os.path.exists(os.path.join(args.workdir, "checkpoints")):
    subprocess.run([sys.executable, "-m", "distrl.launch", "--config=ppo", f"--workdir={args.workdir}"], env=env,
                   check=True, stdout=subprocess.DEVNULL)
  out = os.path.join(args.workdir, "episode.gif")
  start = time.perf_counter()
  result = subprocess.run([sys.executable, "-m", "distrl.evaluate", f"--workdir={args.workdir}", f"--gif={out}"],
                          env=env, capture_output=True, text=True, check=True)
  print(f"python -m distrl.evaluate --gif: {time.perf_counter() - start:.1f}s wall "
        f"({result.stdout.strip().splitlines()[-1]})", flush=True)

  sys.path.insert(0, ROOT)
  from distrl import evaluate, sharding
  from distrl.cli import render

  program, state, _ = evaluate.load_run(args.workdir, None)
  states, returns = render.play(program, sharding.to_host(state.learner), 0)
  start = time.perf_counter()
  render.gif(program, states, returns, out, lambda done, total: None)
  print(f"distrl.cli.render: {time.perf_counter() - start:.1f}s for {len(states)} frames", flush=True)
  if not args.skip_gymnax:
    from gymnax.visualize import Visualizer

    raw = program.env.env._env
    start = time.perf_counter()
    Visualizer(raw, program.env.params, states, returns).animate(os.path.join(args.workdir, "gymnax.gif"))
    print(f"gymnax Visualizer: {time.perf_counter() - start:.1f}s for {len(states)} frames", flush=True)


if __name__ == "__main__":
  main()
