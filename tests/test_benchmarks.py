"""The benchmarks run end to end: returns.py's pipeline on a tiny budget, and table.py's reference rows in a smoke
mode beside distrl's (when ../shared/reference is present). Their numbers are not checked here: speed targets
live in the benchmarks, never in timed tests."""

import argparse
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(os.path.dirname(ROOT), "shared", "reference", "purejaxrl")


def _script(name: str):
  spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", os.path.join(ROOT, "benchmarks", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_returns_py_trains_each_kind_of_row_and_writes_the_table_between_its_markers_and_the_curves(
    tmp_path, monkeypatch, capsys):
  """One row of each algorithm family (PPO, DQN, PQN) on the --quick budget, two agents each, in this process:
  every row's summary, one table line per row replacing what lay between the markers (the rest of the file kept
  byte for byte), one PNG per environment whose rows ended episodes (Acrobot's 500-step episodes do not end in a
  --quick run: said, no curve); a second invocation reruns nothing."""
  returns = _script("returns")
  results_md = tmp_path / "RESULTS.md"
  before, after = "# Benchmark results\n\nabove\n\n", "\n\nbelow\n"
  results_md.write_text(f"{before}{returns.BEGIN}\nan old table\n{returns.END}{after}")
  rows = ["ppo-CartPole-v1", "dqn-Acrobot-v1", "pqn-CartPole-v1"]
  argv = ["returns.py", "--quick", "--seeds", "2", "--out", str(tmp_path / "out"), "--results", str(results_md),
          "--curves", str(tmp_path / "curves"), "--rows", *rows]
  monkeypatch.setattr(sys, "argv", argv)
  returns.main()
  assert "dqn-Acrobot-v1: no episode ended, no curve" in capsys.readouterr().out
  for row in rows:
    summary = json.loads((tmp_path / "out" / row / "returns.json").read_text())
    assert summary["quick"] and summary["seeds"] == 2 and summary["steps"] > 0
    assert np.isfinite(summary["eval_mean"]), summary
  text = results_md.read_text()
  assert text.startswith(before + returns.BEGIN) and text.endswith(returns.END + after)
  assert "an old table" not in text
  assert [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| ") and "-v1" in line] == \
      [f"| {row}" for row in rows]
  assert os.listdir(tmp_path / "curves") == ["CartPole-v1.png"]
  stamp = os.path.getmtime(tmp_path / "out" / rows[0] / "metrics.jsonl")
  returns.main()  # finished rows are read back, not trained again
  assert os.path.getmtime(tmp_path / "out" / rows[0] / "metrics.jsonl") == stamp
  monkeypatch.setattr(sys, "argv", [*argv[:3], "3", *argv[4:]])  # --seeds 3 where 2 finished: refused
  with pytest.raises(SystemExit, match=r"holds a --quick run of 2 seed\(s\), not a --quick run of 3"):
    returns.main()


def test_returns_py_keeps_the_published_rows_whose_runs_are_elsewhere(tmp_path, monkeypatch, capsys):
  """Rows rerun replace their lines; the table's other rows (their runs not in this --out) stay as they were, in
  the rows' order; an environment with such a row keeps its PNG rather than lose that row's curve."""
  returns = _script("returns")
  kept = "| ppo-Breakout-MinAtar-mlp | 9,994,240 | 3 | 57.8 ± 26.7 | 58.7 ± 27.3 | 38.9 min | 28 | src |"
  cnn = "| ppo-SpaceInvaders-MinAtar (CNN) | 9,994,240 | 3 | 1.0 ± 0.0 | 2.0 ± 0.0 | 1.0 min | 131 | src |"
  old = "| pqn-Breakout-MinAtar-mlp | 9,998,336 | 3 | 31.0 ± 3.2 | 80.0 ± 11.4 | 10.6 min | 28 | src |"
  results_md = tmp_path / "RESULTS.md"
  table = f"| preset | steps |\n| --- | --- |\n{cnn}\n{old}\n{kept}"
  results_md.write_text(f"above\n{returns.BEGIN}\n{table}\n{returns.END}\n")
  rerun = tmp_path / "out" / "pqn-Breakout-MinAtar-mlp"
  rerun.mkdir(parents=True)
  (rerun / "returns.json").write_text(json.dumps({
      "row": "pqn-Breakout-MinAtar-mlp", "env": "Breakout-MinAtar", "steps": 9998336, "seeds": 3, "train_mean": 37.3,
      "train_std": 2.1, "eval_mean": 90.2, "eval_std": 2.5, "wall_s": 438, "published": 28, "source": "src",
      "quick": False}))
  monkeypatch.setattr(sys, "argv", ["returns.py", "--table", "--out", str(tmp_path / "out"), "--results",
                                    str(results_md), "--curves", str(tmp_path / "curves")])
  returns.main()
  assert [line for line in results_md.read_text().splitlines() if "MinAtar" in line] == [
      kept, "| pqn-Breakout-MinAtar-mlp | 9,998,336 | 3 | 37.3 ± 2.1 | 90.2 ± 2.5 | 7.3 min | 28 | src |", cnn]
  assert "Breakout-MinAtar.png not redrawn: the run of ppo-Breakout-MinAtar-mlp is not in" in capsys.readouterr().out
  assert os.listdir(tmp_path / "curves") == []


def test_returns_py_writes_the_published_table_and_curves_only_from_full_runs_in_the_default_out(tmp_path):
  """A --quick run or another --out must not replace benchmarks/RESULTS.md's table and benchmarks/curves/ with its
  rows."""
  returns = _script("returns")
  parse = lambda *argv: returns.destinations(argparse.Namespace(**{"out": returns.OUT, "quick": False,
                                                                   "results": None, "curves": None, **dict(argv)}))
  full = parse()
  assert full.results == os.path.join(returns.ROOT, "benchmarks", "RESULTS.md")
  assert full.curves == os.path.join(returns.ROOT, "benchmarks", "curves")
  quick = parse(("quick", True))
  assert quick.results == "" and quick.curves == os.path.join(returns.OUT, "curves")
  elsewhere = parse(("out", str(tmp_path)))
  assert elsewhere.results == "" and elsewhere.curves == os.path.join(str(tmp_path), "curves")
  told = parse(("quick", True), ("results", str(tmp_path / "R.md")), ("curves", str(tmp_path)))
  assert told.results == str(tmp_path / "R.md") and told.curves == str(tmp_path)
  # The published table is there, between its markers: every line of it a row that returns.py keeps when it reruns
  # others.
  content = open(returns.RESULTS).read()
  rows = [line for line in content[content.index(returns.BEGIN):content.index(returns.END)].splitlines()
          if line.startswith("| ") and not line.startswith(("| preset |", "| --- |"))]
  assert "ppo-CartPole-v1" in returns.published_lines(returns.RESULTS)
  assert len(returns.published_lines(returns.RESULTS)) == len(rows) > 0


def test_returns_py_reads_the_final_training_return_from_the_last_whole_log_interval():
  returns = _script("returns")
  record = lambda update, *values: {"update": update, "train/episode_return": sum(values) / 2,
                                    **{f"train/episode_return/seed_{s}": v for s, v in zip((3, 4), values)}}
  # Intervals of 10 updates; a stop at 25 left a short record, the run's length a short last one (update 41).
  records = [record(10, 1.0, 2.0), record(20, 3.0, 4.0), record(25, 9.0, 9.0), record(30, 9.0, 9.0),
             record(40, 5.0, 6.0), record(41, 65.0, 162.0)]
  assert returns.final_training_return(records, 10, [3, 4]) == [5.0, 6.0]
  # One agent's records carry the plain name; a run of no whole interval falls back to its last record.
  assert returns.final_training_return([{"update": 3, "train/episode_return": 7.0}], 10, [0]) == [7.0]
  assert np.isnan(returns.final_training_return([{"update": 10}], 10, [0])).all()


@pytest.mark.skipif(not os.path.isdir(REFERENCE), reason="../shared/reference is absent: table.py skips its rows")
def test_table_py_runs_the_reference_beside_distrl_in_its_smoke_mode():
  """`benchmarks/table.py --quick` on the PPO CartPole row, one device: distrl's row, the reference's row on the
  same config, and their ratio, in one invocation."""
  out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "table.py"), "--quick", "--rows",
                        "ppo-default", "--devices", "1", "--modes", "as-is"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  row = next(line for line in out.stdout.splitlines() if line.startswith("| ppo-default |") and line.count("x") >= 1)
  distrl_sps, reference_sps, ratio = (cell.strip() for cell in row.split("|")[2:5])
  distrl_sps, reference_sps = (float(value.replace(",", "")) for value in (distrl_sps, reference_sps))
  assert distrl_sps > 0 and reference_sps > 0
  assert float(ratio.rstrip("x ")) == pytest.approx(distrl_sps / reference_sps, rel=0.01)


def test_profile_py_splits_an_update_into_its_named_parts():
  """`benchmarks/profile.py` on DQN's CartPole row, one device: the traced program's operations were found and
  attributed (the environment step, the gradient and the optimizer are never fused into one another).
  The attribution itself on a hand-written module text: a fusion counts for its root's scope, and a while loop
  (whose body's operations are counted) not at all."""
  profile = _script("profile")
  text = ('  %fusion.3 = f32[4]{0} fusion(%p), kind=kLoop, calls=%c, metadata={op_name="jit(chunk)/shard_map/while/'
          'body/acting/while/body/environment/add"}\n'
          '  %while.1 = (s32[], f32[4]{0}) while(%t), condition=%cond, body=%body, metadata={op_name="jit(chunk)/'
          'acting/while"}\n'
          '  ROOT %dot.2 = f32[4,2]{1,0} dot(%a, %b), metadata={op_name="jit(chunk)/gradient/transpose(jvp(dot))"}')
  ops = profile.operations("HloModule jit_chunk, entry_computation_layout={()->()}\n" + text)
  assert ops.pop("") == ("module", "jit_chunk")
  assert ops == {"fusion.3": ("fusion", "jit(chunk)/shard_map/while/body/acting/while/body/environment/add"),
                 "while.1": ("while", "jit(chunk)/acting/while"),
                 "dot.2": ("dot", "jit(chunk)/gradient/transpose(jvp(dot))")}
  assert [profile.part_of(name) for _, name in ops.values()] == [
      "acting: environment step", "acting: keys, stacking", "gradient (forward, backward, all-reduce)"]
  out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "profile.py"), "--worker", "dqn-default",
                        "--chunks", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
                            "PYTHONPATH": ROOT})
  assert out.returncode == 0, out.stderr[-2000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["sps"] > 0
  for part in ("acting: environment step", "gradient (forward, backward, all-reduce)", "optimizer"):
    assert result["parts"].get(part, 0) > 0, (part, result["parts"])
