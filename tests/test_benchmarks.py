"""The benchmarks run end to end: returns.py's pipeline on a tiny budget, and table.py's reference rows in a smoke
mode beside distrl's (when ../shared/reference is present). Their numbers are not checked here: speed targets
live in the benchmarks, never in timed tests. How the tables reach benchmarks/RESULTS.md (results_file.py: only
between their markers, only from a complete run, what is formatted is what is written) is checked on made-up
measurements."""

import argparse
import importlib.util
import json
import os
import re
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
  algos = ("ppo-", "dqn-", "pqn-", "sac-", "td3-")
  assert [line.split(" | ")[0] for line in text.splitlines() if line.startswith(tuple(f"| {a}" for a in algos))] == \
      [f"| {row}" for row in rows] + [f"| {algo}-{preset}" for algo, preset, _ in returns.NOT_RUN]
  assert text.count("not run here (an accelerator's budget)") == len(returns.NOT_RUN)
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
  parse = lambda *argv: returns.destinations(argparse.Namespace(**{
      "out": returns.OUT, "quick": False, "rows": list(returns.ROWS), "table": False, "results": None, "curves": None,
      **dict(argv)}))
  full = parse()
  assert full.results == os.path.join(returns.ROOT, "benchmarks", "RESULTS.md")
  assert full.curves == os.path.join(returns.ROOT, "benchmarks", "curves")
  quick = parse(("quick", True))
  assert quick.results == "" and quick.curves == os.path.join(returns.OUT, "curves")
  elsewhere = parse(("out", str(tmp_path)))
  assert elsewhere.results == "" and elsewhere.curves == os.path.join(str(tmp_path), "curves")
  some = parse(("rows", ["ppo-CartPole-v1"]))  # a partial run: its rows are published by --table, once finished
  assert some.results == "" and some.curves == os.path.join(returns.OUT, "curves")
  assert returns.incomplete(argparse.Namespace(out=returns.OUT, quick=False, rows=["ppo-CartPole-v1"], table=False)) \
      == f"--rows ran 1 of the {len(returns.ROWS)} rows (--table publishes every finished row)"
  assert parse(("rows", ["ppo-CartPole-v1"]), ("table", True)).results == returns.RESULTS
  told = parse(("quick", True), ("results", str(tmp_path / "R.md")), ("curves", str(tmp_path)))
  assert told.results == str(tmp_path / "R.md") and told.curves == str(tmp_path)
  # The published table is there, between its markers: every line of it a row that returns.py keeps when it reruns
  # others, but the presets not run here, which it writes anew each time.
  content = open(returns.RESULTS, encoding="utf-8").read()
  rows = [line for line in content[content.index(returns.BEGIN):content.index(returns.END)].splitlines()
          if line.startswith("| ") and not line.startswith(("| preset |", "| --- |"))]
  not_run = [line for line in rows if "not run here" in line]
  assert len(not_run) == len(returns.NOT_RUN)
  assert "ppo-CartPole-v1" in returns.published_lines(returns.RESULTS)
  assert len(returns.published_lines(returns.RESULTS)) == len(rows) - len(not_run) > 0


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


@pytest.mark.unit
def test_results_file_replaces_only_what_lies_between_its_markers(tmp_path):
  """The text between one pair of markers is replaced; every other byte of the file (another table's markers and
  table, CRLF line ends, no newline at the end) is as it was; a second write of the same text changes nothing."""
  results_file = _script("results_file")
  begin, end = results_file.markers("table.py reference")
  other = "<!-- suites.py: begin -->\n| old | suites |\n<!-- suites.py: end -->"
  before, after = f"# Results\r\n\r\nprose ünïcode\n\n{begin}", f"{end}\n\nmore prose\r\n{other}\nlast line"
  path = tmp_path / "RESULTS.md"
  path.write_bytes(f"{before}\n| old | table |\n| --- | --- |\n{after}".encode())
  results_file.replace(str(path), "table.py reference", "| new | table |\n| --- | --- |\n| 1 | 2 |\n")
  assert path.read_bytes() == f"{before}\n| new | table |\n| --- | --- |\n| 1 | 2 |\n{after}".encode()
  assert results_file.read(str(path), "table.py reference") == "\n| new | table |\n| --- | --- |\n| 1 | 2 |\n"
  assert results_file.read(str(path), "suites.py") == "\n| old | suites |\n"
  results_file.replace(str(path), "table.py reference", "| new | table |\n| --- | --- |\n| 1 | 2 |")
  assert path.read_bytes() == f"{before}\n| new | table |\n| --- | --- |\n| 1 | 2 |\n{after}".encode()


@pytest.mark.unit
@pytest.mark.parametrize("content", [
    "no markers at all\n",
    "<!-- suites.py: begin -->\n| a |\n",  # no end
    "| a |\n<!-- suites.py: end -->\n",  # no begin
    "<!-- suites.py: end -->\n| a |\n<!-- suites.py: begin -->\n",  # the wrong way round
    "<!-- suites.py: begin -->\n<!-- suites.py: end -->\n<!-- suites.py: begin -->\n<!-- suites.py: end -->\n",
    "<!-- table.py: begin -->\n| a |\n<!-- table.py: end -->\n",  # another table's
])
def test_results_file_refuses_a_file_without_one_pair_of_its_markers(tmp_path, content):
  results_file = _script("results_file")
  path = tmp_path / "RESULTS.md"
  path.write_text(content)
  message = (f"{path} has no table named 'suites.py': it needs one line `<!-- suites.py: begin -->` and, after it, "
             f"one line `<!-- suites.py: end -->` where the table goes")
  for attempt in (lambda: results_file.replace(str(path), "suites.py", "| b |"),
                  lambda: results_file.check(str(path), ["suites.py"]),
                  lambda: results_file.write(str(path), {"suites.py": "| b |"}, ["suites.py"])):
    with pytest.raises(SystemExit, match=re.escape(message)):
      attempt()
    assert path.read_text() == content
  with pytest.raises(SystemExit, match="does not exist"):
    results_file.check(str(tmp_path / "absent.md"), ["suites.py"])


@pytest.mark.unit
def test_results_file_writes_the_command_machine_and_date_above_each_table(tmp_path, capsys):
  import jax

  results_file = _script("results_file")
  path = tmp_path / "RESULTS.md"
  path.write_text("<!-- a: begin -->\n<!-- a: end -->\ntext\n<!-- b: begin -->\nold\n<!-- b: end -->\n")
  results_file.write(str(path), {"a": "| A |", "b": "| B |"}, ["/somewhere/benchmarks/table.py", "--rows", "x y"])
  block = results_file.read(str(path), "b").strip("\n")
  line, table = block.split("\n\n")
  assert table == "| B |" and results_file.read(str(path), "a").strip("\n") == f"{line}\n\n| A |"
  assert line.startswith("Written by `python benchmarks/table.py --rows 'x y'` on 20")
  for part in (" UTC; machine: ", results_file.cpu_model(), f"({os.cpu_count()} cores)", f"jax {jax.__version__}",
               f"device kind {jax.devices()[0].device_kind}"):
    assert part in line, (part, line)
  assert path.read_text().endswith("<!-- a: end -->\ntext\n<!-- b: begin -->\n" + block + "\n<!-- b: end -->\n")
  assert capsys.readouterr().out.count(f"into {path}") == 2


def _fake_table_results(name, devices, mode, rounds=(0, 1, 2)):
  """What table.py's workers would have measured, made up: (row, devices, mode, round) -> result."""
  return {(name, devices, mode, r): result for r, result in zip(rounds, [
      {"sps": 100.0 * devices, "compile_s": 3.0, "raw_sps": 1000.0, "envs": 64, "peak_mb": 700.0},
      {"sps": 120.0 * devices, "compile_s": 5.0, "raw_sps": 1000.0, "envs": 64, "peak_mb": 720.0},
      {"sps": 110.0 * devices, "compile_s": 4.0, "raw_sps": 2000.0, "envs": 64, "peak_mb": 710.0}])}


@pytest.mark.unit
def test_table_py_formats_its_tables_from_the_rounds(monkeypatch):
  """Medians over rounds, the ratio the median of each round's ratio, rows without a reference or that do not
  split over the devices said as such."""
  table = _script("table")
  monkeypatch.setattr(table, "reference_missing", lambda script: None)
  rows, rounds = ["ppo-default", "ppo-minatar-cnn"], [0, 1, 2]
  results = {**_fake_table_results("ppo-default", 1, "as-is"), **_fake_table_results("ppo-minatar-cnn", 1, "as-is"),
             **_fake_table_results("ppo-minatar-cnn", 8, "as-is"),
             **{("ppo-default", 8, "as-is", r): {"skipped": "4 envs do not split over 8 devices"} for r in rounds},
             **{("ppo-default", "reference", r): {"sps": sps, "compile_s": 4.0}
                for r, sps in zip(rounds, (50, 60, 100))},
             **{("475", cold, r): {"seconds": 10.0 if cold else 5.0 + r} for r in rounds for cold in (True, False)},
             **{("475", "reference", r): {"compile_s": 4.0, "run_s": 4.0 + r, "process_s": 11.0} for r in rounds}}
  tables = table.make_tables(results, rows, [1, 8], ["as-is"], rounds, to_475=True)
  assert list(tables) == [table.REFERENCE_TABLE, table.SCALING_TABLE, table.TABLE_475]
  assert tables[table.REFERENCE_TABLE].splitlines()[2:] == [
      "| ppo-default | 110 | 60 | 2.00x  | 4.0 | 4.0 |",
      "| ppo-minatar-cnn | 110 | no reference for this config | | 4.0 | |"]
  assert tables[table.SCALING_TABLE].splitlines()[2:] == [
      "| ppo-default | 1 | 64 | 110 | 1.00x | 1,000 | 0.110 | 4.0 | 710 |",
      "| ppo-default | 8 | 4 envs do not split over 8 devices |",
      "| ppo-minatar-cnn | 1 | 64 | 110 | 1.00x | 1,000 | 0.110 | 4.0 | 710 |",
      "| ppo-minatar-cnn | 8 | 64 | 880 | 8.00x | 1,000 | 0.880 | 4.0 | 710 |"]
  assert tables[table.TABLE_475].splitlines()[2:] == ["| 10.0 | 6.0 | 9.0 | 11.0 |"]
  assert list(table.make_tables(results, rows, [1, 8], ["as-is"], rounds, to_475=False)) == [
      table.REFERENCE_TABLE, table.SCALING_TABLE]


@pytest.mark.unit
def test_table_py_writes_what_it_formats_and_only_for_a_complete_run(tmp_path, monkeypatch, capsys):
  """A complete run (every row, measured here by fakes) writes each table its formatting made, and printed, between
  its markers; a --rows run prints its tables and says that RESULTS.md was not written."""
  table = _script("table")
  monkeypatch.setattr(table.results_file, "RESULTS", str(tmp_path / "published.md"))  # never the real one
  monkeypatch.setattr(table, "reference_missing", lambda script: None)
  monkeypatch.setattr(table, "run_distrl", lambda name, d, mode, chunks: (
      {"skipped": "split"} if d == 8 else _fake_table_results(name, d, mode)[name, d, mode, 0]))
  monkeypatch.setattr(table, "run_reference", lambda args, quick: {"sps": 50.0, "compile_s": 4.0, "run_s": 4.0,
                                                                   "process_s": 11.0})
  monkeypatch.setattr(table, "to_475", lambda cold: {"seconds": 10.0 if cold else 5.0})
  made, make_tables = [], table.make_tables

  def recording(*args, **kwargs):  # what the formatting made, to compare with what was written
    made.append(make_tables(*args, **kwargs))
    return made[-1]

  monkeypatch.setattr(table, "make_tables", recording)
  names = [table.REFERENCE_TABLE, table.SCALING_TABLE, table.TABLE_475]
  path = tmp_path / "RESULTS.md"
  path.write_text("".join(f"prose {i}\n<!-- {name}: begin -->\nold\n<!-- {name}: end -->\n"
                          for i, name in enumerate(names)))
  monkeypatch.setattr(sys, "argv", ["table.py", "--rounds", "2", "--results", str(path)])
  table.main()
  out = capsys.readouterr().out
  (tables,) = made
  assert list(tables) == names
  content = path.read_text()
  for i, name in enumerate(names):
    line, written = table.results_file.read(str(path), name).strip("\n").split("\n\n")
    assert written == tables[name] and f"{table.CAPTIONS[name]}\n\n{written}\n" in out
    assert line.startswith(f"Written by `python benchmarks/table.py --rounds 2 --results PATH/{path.name}` on ")
    assert f"prose {i}\n<!-- {name}: begin -->\n" in content
  assert "| ppo-default | 100 | 50 | 2.00x  | 3.0 | 4.0 |" in tables[table.REFERENCE_TABLE]

  monkeypatch.setattr(sys, "argv", ["table.py", "--rounds", "1", "--rows", "ppo-default", "--no-475"])
  table.main()
  assert f"published.md not written: --rows ran 1 of the {len(table.ROWS)} rows" in capsys.readouterr().out
  assert path.read_text() == content and not (tmp_path / "published.md").exists()
  monkeypatch.setattr(sys, "argv", ["table.py", "--quick"])
  table.main()
  assert "published.md not written: a --quick run" in capsys.readouterr().out
  monkeypatch.setattr(sys, "argv", ["table.py", "--results", str(tmp_path / "bare.md")])
  (tmp_path / "bare.md").write_text("no markers\n")
  calls = len(made)
  with pytest.raises(SystemExit, match="has no table named 'table.py reference'"):
    table.main()
  assert len(made) == calls  # refused before measuring


@pytest.mark.unit
def test_suites_py_writes_the_table_it_formats_and_only_for_a_complete_run(tmp_path, monkeypatch, capsys):
  suites = _script("suites")
  monkeypatch.setattr(suites.results_file, "RESULTS", str(tmp_path / "published.md"))  # never the real one
  measured = {
      ("jumanji-snake", 1): {"envs": 64, "steps": 128, "sps": 7000.4, "raw_sps": 350000.0, "compile_s": 13.24,
                             "raw_compile_s": 4.2},
      ("jumanji-snake", 8): {"envs": 64, "steps": 128, "sps": 3500.0, "raw_sps": 250000.0, "compile_s": 30.6,
                             "raw_compile_s": 3.8},
      ("craftax-classic", 1): {"failed": "ImportError: craftax"},
      ("craftax-classic", 8): {"envs": 64, "steps": 16, "sps": 626.0, "raw_sps": 21013.0, "compile_s": 39.5,
                               "raw_compile_s": 15.7}}
  assert suites.throughput_table(measured, ["jumanji-snake", "craftax-classic"], [1, 8]).splitlines()[2:] == [
      "| jumanji-snake | jumanji:Snake-v1 | 1 | 64 x 128 | 7,000 | 350,000 | 0.02 | 1.00x | 13.2 | 4.2 |",
      "| jumanji-snake | jumanji:Snake-v1 | 8 | 64 x 128 | 3,500 | 250,000 | 0.01 | 0.50x | 30.6 | 3.8 |",
      "| craftax-classic | craftax:Craftax-Classic-Symbolic-v1 | 1 | failed: ImportError: craftax |||||||",
      "| craftax-classic | craftax:Craftax-Classic-Symbolic-v1 | 8 | 64 x 16 | 626 | 21,013 | 0.03 | 1.00x | 39.5 | "
      "15.7 |"]

  fake = lambda name, devices, chunks: measured.get((name, devices), measured["jumanji-snake", devices])
  monkeypatch.setattr(suites, "run_worker", fake)
  path = tmp_path / "RESULTS.md"
  path.write_text("above\n<!-- suites.py: begin -->\nold\n<!-- suites.py: end -->\nbelow\n")
  monkeypatch.setattr(sys, "argv", ["suites.py", "--results", str(path)])
  suites.main()
  expected = suites.throughput_table({(n, d): fake(n, d, 3) for n in suites.ROWS for d in (1, 8)}, list(suites.ROWS),
                                     [1, 8])
  line, written = suites.results_file.read(str(path), "suites.py").strip("\n").split("\n\n")
  assert written == expected and expected in capsys.readouterr().out
  assert line.startswith(f"Written by `python benchmarks/suites.py --results PATH/{path.name}` on ")
  content = path.read_text()
  assert content.startswith("above\n<!-- suites.py: begin -->\n")
  assert content.endswith("<!-- suites.py: end -->\nbelow\n")
  monkeypatch.setattr(sys, "argv", ["suites.py", "--rows", "jumanji-snake"])
  suites.main()
  assert f"published.md not written: --rows ran 1 of the {len(suites.ROWS)} rows" in capsys.readouterr().out
  assert path.read_text() == content and not (tmp_path / "published.md").exists()


@pytest.mark.unit
def test_results_md_has_the_markers_of_every_table_the_scripts_write():
  table, suites, sweep = _script("table"), _script("suites"), _script("sweep")
  table.results_file.check(table.results_file.RESULTS, [
      "returns.py", table.REFERENCE_TABLE, table.SCALING_TABLE, table.TABLE_475, suites.NAME, sweep.NAME])


@pytest.mark.unit
def test_sweep_py_numbers_its_members_as_distrls_sweep_does():
  """benchmarks/sweep.py matches the separate runs and rejax's configurations to the sweep's members by index."""
  from distrl.configs import ppo
  from distrl.runtime import sweep as distrl_sweep

  script = _script("sweep")
  config = ppo.get_config()
  config.sweep = {name: values for name, values in script.GRID.items()}
  assert script.members() == distrl_sweep.members(config) and len(script.members()) == 64


@pytest.mark.unit
def test_sweep_py_splits_a_wall_into_updates_and_the_rest_from_the_log_records():
  """Records at updates 19 (10 s) and 195 (54 s): 44 s for 176 updates, so 195 updates take 48.75 s; per member and
  update, the sweep's 48.75 s against the 64 separate runs' 97.5 s over 195 updates is 3.91 ms against 7.81 ms."""
  script = _script("sweep")
  records = [{"update": 19, "time": 10.0}, {"update": 100, "time": 30.0}, {"update": 195, "time": 54.0}]
  assert script.training_seconds(records) == pytest.approx(48.75)
  text = script.pace({"training_s": 48.75}, {"training_s": 97.5, "wall_s": 64 * 150.0}, 195 * 512)
  assert "3.91 ms in the sweep, 7.81 ms alone (2.0x)" in text and "at most 196.9x" in text


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


@pytest.mark.unit
def test_the_results_name_no_folder_of_the_machine_they_ran_on():
  """A peer's file or a scratch venv given by absolute path is written PATH/<name> in the provenance line (RESULTS.md
  printed /work/scratch/... and /tmp/... before), and the committed tables hold no such path."""
  results_file = _script("results_file")
  argv = ["benchmarks/cleanba.py", "--cleanba", "/work/scratch/cleanba/cleanba_ppo.py", "--python=/tmp/v/bin/python",
          "--steps", "64", "--out", "runs/x"]
  assert results_file.command(argv) == ("python benchmarks/cleanba.py --cleanba PATH/cleanba_ppo.py "
                                        "--python=PATH/python --steps 64 --out runs/x")
  with open(os.path.join(ROOT, "benchmarks", "RESULTS.md")) as f:
    found = re.findall(r"(?<![\w.])/(?:work|tmp|root|home)/\S*", f.read())
  assert not found, found
