"""Recurrent PPO's speed: beside feed-forward PPO on the same config, and beside PureJaxRL's `ppo_rnn.py`.

  git -C PUREJAXRL show 31756b1:purejaxrl/ppo_rnn.py > /tmp/ppo_rnn.py    # any clone of PureJaxRL
  python benchmarks/recurrent.py --ppo-rnn /tmp/ppo_rnn.py
  python benchmarks/recurrent.py --ppo-rnn /tmp/ppo_rnn.py --rows rnn-4-envs --rounds 1

Each row is a config of `ppo_rnn.py` (CartPole-v1; its defaults: 4 environments x 128 steps, 4 epochs of 4
minibatches) and distrl's PPO on the same config: a 128-unit ReLU torso (ppo_rnn's embedding), a 128-unit GRU, and
the heads. Three measurements a round, each in a fresh process on 1 device, in this order: distrl with memory
(`--config.recurrent=gru`), distrl without (the same config, `recurrent=''`), and the reference. distrl's steps/s
is the median of `--chunks` compiled chunks after a warm-up chunk (benchmarks/table.py's `time_program`); the
reference's its whole jitted run over its steps, compile excluded. Ratios are taken within each round; the table
gives their medians over rounds.

The difference in work: ppo_rnn's heads have a hidden layer of 128 each (actor and critic) where distrl's are
linear, so distrl does ~25% fewer multiply-adds per sample; neither bootstraps differently at CartPole's
truncation in a way that costs time.

The reference is never copied into this repository: `--ppo-rnn` names the upstream file, which this script stages
into a temporary folder beside `../shared/reference/purejaxrl`'s `wrappers.py` (gymnax 1.0's step, as the shared
reference adapted it) and `distrax.py`, changing only what current libraries need: flax's `GRUCell` now takes its
width as `features` and `initialize_carry(key, (batch, width))`, and its `__main__` times one run and prints one
JSON line, as the shared `ppo.py`'s does.

The table goes between the `recurrent.py speed` markers of benchmarks/RESULTS.md (results_file.py) for a complete
run (every row, --rounds >= 3); any other run prints it and says that it did not write it.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results_file  # noqa: E402
import table  # noqa: E402  (time_program, the worker environment, result parsing, the shared reference folder)

SPEED = "recurrent.py speed"
# name -> (distrl overrides of configs/ppo.py, the reference's KEY=VALUE overrides of its own config)
ROWS = {
    "rnn-4-envs": ({"num_envs": 4}, ("TOTAL_TIMESTEPS=1e5",)),  # shortened runs: steps/s does not depend on length
    "rnn-64-envs": ({"num_envs": 64}, ("NUM_ENVS=64", "TOTAL_TIMESTEPS=5e5")),
}
SAME = {"num_steps": 128, "num_minibatches": 4, "update_epochs": 4, "hidden_sizes": (128,), "activation": "relu",
        "recurrent_size": 128}
CHUNK = 10  # updates per timed chunk
# The rows as benchmarks/profile.py takes them (`--rows ppo-rnn-4-envs ppo-rnn-4-envs-ff`): with memory, and without.
PROFILED = {f"ppo-{name}{suffix}": table.Row("ppo", None, {**SAME, **overrides, "recurrent": cell}, CHUNK, None)
            for name, (overrides, _) in ROWS.items() for suffix, cell in (("", "gru"), ("-ff", ""))}

# ppo_rnn.py at PureJaxRL 31756b1 -> what current flax takes (the only changes made to it).
ADAPTATIONS = [
    ("new_rnn_state, y = nn.GRUCell()(rnn_state, ins)",
     "new_rnn_state, y = nn.GRUCell(features=ins.shape[1])(rnn_state, ins)"),
    ("return nn.GRUCell.initialize_carry(\n            jax.random.PRNGKey(0), (batch_size,), hidden_size\n        )",
     "return nn.GRUCell(features=hidden_size).initialize_carry(\n            jax.random.PRNGKey(0), (batch_size, "
     "hidden_size)\n        )"),
]
MAIN = '''
if __name__ == "__main__":
    import sys, time, json
    config = {"LR": 2.5e-4, "NUM_ENVS": 4, "NUM_STEPS": 128, "TOTAL_TIMESTEPS": 5e5, "UPDATE_EPOCHS": 4,
              "NUM_MINIBATCHES": 4, "GAMMA": 0.99, "GAE_LAMBDA": 0.95, "CLIP_EPS": 0.2, "ENT_COEF": 0.01,
              "VF_COEF": 0.5, "MAX_GRAD_NORM": 0.5, "ENV_NAME": "CartPole-v1", "ANNEAL_LR": True, "DEBUG": False}
    for kv in sys.argv[1:]:
        k, v = kv.split("="); config[k] = type(config[k])(float(v)) if not isinstance(config[k], str) else v
    t0 = time.perf_counter()
    train = jax.jit(make_train(config)).lower(jax.random.PRNGKey(30)).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(train(jax.random.PRNGKey(30)))
    t2 = time.perf_counter()
    r = out["metric"]["returned_episode_returns"]
    print(json.dumps({"compile_s": round(t1 - t0, 2), "run_s": round(t2 - t1, 2),
                      "sps": round(config["TOTAL_TIMESTEPS"] / (t2 - t1)), "final_return": float(r[-5:].mean())}))
'''


def config_of(name: str, memory: bool):
  from distrl.configs import ppo

  config = ppo.get_config()
  config.update({**SAME, **ROWS[name][0], "recurrent": "gru" if memory else ""})
  config.eval_episodes = 1
  return config


def measure(name: str, memory: bool, chunks: int) -> dict:
  """Runs in a worker process: distrl's steps/s on one row, with or without memory."""
  from distrl import sharding
  from distrl.runtime import programs

  program = programs.build(config_of(name, memory), sharding.make_mesh())
  compile_s, sps = table.time_program(program, CHUNK, chunks)
  return {"compile_s": compile_s, "sps": sps}


def stage(ppo_rnn: str) -> str:
  """A temporary folder holding the adapted ppo_rnn.py beside the shared reference's wrappers and distrax stand-in."""
  with open(ppo_rnn) as f:
    text = f.read()
  for old, new in ADAPTATIONS:
    if old not in text:
      sys.exit(f"recurrent.py: {ppo_rnn} is not PureJaxRL 31756b1's ppo_rnn.py (it lacks {old.splitlines()[0]!r})")
    text = text.replace(old, new)
  text = text[:text.index('if __name__ == "__main__":')] + MAIN
  folder = tempfile.mkdtemp(prefix="ppo-rnn-")
  for name in ("wrappers.py", "distrax.py"):
    shutil.copy(os.path.join(table.REFERENCE, name), folder)
  with open(os.path.join(folder, "ppo_rnn.py"), "w") as f:
    f.write(text)
  return folder


def run_reference(folder: str, name: str) -> dict:
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "PYTHONPATH": folder}
  start = time.perf_counter()
  out = subprocess.run([sys.executable, "ppo_rnn.py", *ROWS[name][1]], env=env, cwd=folder, capture_output=True,
                       text=True)
  return {**table._last_json(out), "process_s": time.perf_counter() - start}


def run_distrl(name: str, memory: bool, chunks: int) -> dict:
  command = [sys.executable, os.path.abspath(__file__), "--worker", name, "--memory", str(int(memory)),
             "--chunks", str(chunks)]
  return table._last_json(subprocess.run(command, env=table._env(1), cwd=table.ROOT, capture_output=True, text=True))


def speed_table(results: dict, rows: list[str], rounds: range) -> str:
  lines = ["| config | recurrent steps/s | feed-forward steps/s | recurrent / feed-forward | ppo_rnn.py steps/s | "
           "recurrent / ppo_rnn.py | compile s (distrl, ppo_rnn.py) |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  for name in rows:
    rnn, ff, ref = ([results[name, kind, r] for r in rounds] for kind in ("rnn", "ff", "ref"))
    ratio = lambda a, b: table.median([x["sps"] / y["sps"] for x, y in zip(a, b) if "sps" in x and "sps" in y])
    failed = " ".join(x["failed"] for x in rnn + ff + ref if "failed" in x)
    sps = lambda runs: table._fmt(table.median([x.get("sps") for x in runs]))
    lines.append(f"| {name} | {sps(rnn)} | {sps(ff)} | {table._fmt(ratio(rnn, ff), '.2f', 'x')} | {sps(ref)} | "
                 f"{table._fmt(ratio(rnn, ref), '.2f', 'x')} {failed} | "
                 f"{table._fmt(table.median([x.get('compile_s') for x in rnn]), '.1f')}, "
                 f"{table._fmt(table.median([x.get('compile_s') for x in ref]), '.1f')} |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--ppo-rnn", help="PureJaxRL's purejaxrl/ppo_rnn.py (commit 31756b1), from your own clone")
  parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--chunks", type=int, default=3, help="timed chunks per distrl measurement")
  parser.add_argument("--results", help="where the table goes ('' for none; default: benchmarks/RESULTS.md for a "
                                        "complete run)")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  parser.add_argument("--memory", type=int, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(measure(args.worker, bool(args.memory), args.chunks)))
    return
  if not args.ppo_rnn or not os.path.isfile(args.ppo_rnn):
    parser.error("--ppo-rnn must name PureJaxRL's ppo_rnn.py (see the usage above)")
  if not os.path.isdir(table.REFERENCE):
    parser.error(f"{table.REFERENCE} is absent: its wrappers.py and distrax.py run the reference")
  partial = ("--rows ran some of the rows" if set(args.rows) != set(ROWS) else
             "fewer than 3 rounds" if args.rounds < 3 else None)
  args.results = results_file.destination(args.results, partial)
  if args.results:
    results_file.check(args.results, [SPEED])
  folder = stage(args.ppo_rnn)
  results = {}
  for r in range(args.rounds):
    for name in args.rows:
      results[name, "rnn", r] = run_distrl(name, True, args.chunks)
      results[name, "ff", r] = run_distrl(name, False, args.chunks)
      results[name, "ref", r] = run_reference(folder, name)
      print(f"round {r + 1}/{args.rounds}: {name} measured", file=sys.stderr, flush=True)
  shutil.rmtree(folder)
  text = speed_table(results, args.rows, range(args.rounds))
  print(f"\n**Recurrent PPO beside feed-forward PPO and ppo_rnn.py** (1 device, steps/s; ratios: medians over rounds "
        f"of each round's ratio)\n\n{text}")
  if args.results:
    results_file.write(args.results, {SPEED: text})
  else:
    results_file.not_written(partial or "--results ''")


if __name__ == "__main__":
  main()
