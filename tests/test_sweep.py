"""Sweeps (`--config.sweep.FIELD=(...)`): many configurations in one program, each member its own run."""

import importlib
import json
import os
import re
import shlex
import subprocess
import sys

import jax
import numpy as np
import pytest

from distrl import algorithms, plot, sharding
from distrl import evaluate as distrl_evaluate
from distrl.configs import ppo as ppo_config
from distrl.errors import ConfigError
from distrl.runtime import best as best_kept, programs, sweep, trainer
from distrl.runtime.checkpoint import Checkpoints
from tests.cli import ROOT, launch
from tests.runs import FAST
from tests.test_evaluate import evaluate

# Under pytest-xdist this module's tests share a worker, so its module fixture's training runs once.
pytestmark = pytest.mark.xdist_group("sweep")

GRID = {"lr": (3e-3, 3e-4), "gamma": (0.9, 0.99)}  # 4 members: (gamma, lr) = (0.9, 3e-3), (0.9, 3e-4), ...


def _ppo(sweep_fields=None, **fields):
  """PPO on tests/fast_env.py, 8 updates; lr not annealed, so that a sweep's shorter start trains its first updates."""
  n = jax.device_count()
  config = ppo_config.get_config()
  config.update(dict(env_name=FAST, anneal_lr=False, num_envs=n, num_steps=32, total_timesteps=8 * n * 32,
                     log_every=4, eval_episodes=n, eval_every=4, checkpoint_every=4, seed=5, **fields))
  if sweep_fields:
    config.sweep = dict(sweep_fields)
  return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """A sweep of GRID in one run, and members 1 and 2 each as a run of its own."""
  root = tmp_path_factory.mktemp("sweep")
  swept = trainer.train(_ppo(GRID), str(root / "sweep"))
  members = sweep.members(_ppo(GRID))
  alone = {m: trainer.train(_ppo(**members[m]), str(root / f"member{m}")) for m in (1, 2)}
  return root, swept, alone


@pytest.mark.unit
def test_a_grid_is_every_combination_fields_in_alphabetical_order_the_last_fastest():
  assert sweep.members(_ppo(GRID)) == [{"gamma": 0.9, "lr": 3e-3}, {"gamma": 0.9, "lr": 3e-4},
                                       {"gamma": 0.99, "lr": 3e-3}, {"gamma": 0.99, "lr": 3e-4}]
  assert sweep.members(_ppo()) == [{}]
  assert sweep.labels(_ppo(GRID, num_seeds=2))[:3] == ["member_0/seed_5", "member_0/seed_6", "member_1/seed_5"]
  assert sweep.names(_ppo(GRID))[1] == "member 1 (gamma=0.9 lr=0.0003)"
  values = sweep.table(_ppo(GRID, num_seeds=2), 2)
  np.testing.assert_allclose(values["lr"], np.float32([3e-3, 3e-3, 3e-4, 3e-4, 3e-3, 3e-3, 3e-4, 3e-4]))


@pytest.mark.unit
def test_a_random_search_draws_from_its_ranges_with_the_runs_seed():
  config = _ppo({"lr": (1e-5, 1e-1), "ent_coef": (0, 0.1), "draws": 400})
  drawn = sweep.members(config)
  assert len(drawn) == 400 and sweep.members(config) == drawn  # the same draws from the same seed
  lr, ent = np.array([m["lr"] for m in drawn]), np.array([m["ent_coef"] for m in drawn])
  assert lr.min() >= 1e-5 and lr.max() <= 1e-1 and ent.min() >= 0 and ent.max() <= 0.1
  # lr's range is positive: log-uniform, so each of its 4 decades holds about a quarter (uniform would put 90% in
  # the last); ent_coef's starts at 0: uniform, half below 0.05.
  decades = np.histogram(np.log10(lr), bins=[-5, -4, -3, -2, -1])[0]
  assert decades.min() > 60, decades
  assert 0.4 < np.mean(ent < 0.05) < 0.6
  config.seed = 6
  assert sweep.members(config) != drawn


@pytest.mark.unit
@pytest.mark.parametrize("fields, message", [
    ({"num_envs": (8, 16)}, "sweep.num_envs: num_envs changes array shapes or the program's structure and cannot be "
                            "swept in one program; it can sweep clip_eps, ent_coef, gae_lambda, gamma, lr,"),
    ({"learning_rate": (1e-3,)}, "sweep.learning_rate: ppo's config has no field 'learning_rate'; it can sweep"),
    ({"lr": ("fast", "slow")}, "sweep.lr=('fast', 'slow') must list numbers"),
    ({"lr": ()}, "sweep.lr=() must list numbers"),
    ({"draws": 4}, "sweep.draws=4 draws members from ranges, but the sweep names no field"),
    ({"lr": (1e-3, 1e-4), "draws": 4}, "sweep.lr=(0.001, 0.0001): with sweep.draws, give a range (low, high)"),
    ({"lr": (1e-4, 1e-3), "draws": 0}, "sweep.draws=0 must be a positive number of members"),
    ({"gamma": (0.9, 1.5)}, "sweep member 1 (gamma=1.5): gamma=1.5 must be in (0, 1]"),
])
def test_what_a_sweep_refuses(fields, message):
  with pytest.raises(ConfigError) as error:
    programs.build(_ppo(fields), sharding.make_mesh())
  assert message in str(error.value)


def _swept_everywhere(algo: str):
  """`algo`'s shipped config with every field it can sweep drawn from a valid range, for 2 members."""
  config = importlib.import_module(f"distrl.configs.{algo}").get_config()
  config.num_envs = jax.device_count()
  if "train_frequency" in config:
    config.train_frequency = config.num_envs
  fields = algorithms.get(algo).SWEEPABLE
  config.sweep = {f: tuple(sorted((config[f], config[f] / 2))) if config[f] else (0.0, 0.01) for f in fields}
  config.sweep.draws = 2
  if algo in ("dqn", "pqn"):
    config.sweep.start_e, config.sweep.end_e = (0.5, 1.0), (0.01, 0.05)
  return config


@pytest.mark.parametrize("algo", ["ppo", "impala", "dqn", "pqn", "sac", "td3"])
def test_every_sweepable_field_of_every_algorithm_reaches_its_program_as_a_traced_value(algo):
  """A field in SWEEPABLE that the algorithm branches on in Python would fail here, as it would in a user's sweep."""
  program = programs.build(_swept_everywhere(algo), sharding.make_mesh())
  assert jax.tree.leaves(program.state.learner)[0].shape[0] == 2
  assert program.runner.zeros  # traces the update of every agent


def test_each_member_equals_its_own_run(runs):
  _, swept, alone = runs
  for m, single in alone.items():
    for a, b in zip(jax.tree.leaves(swept.state.learner.params), jax.tree.leaves(single.state.learner.params)):
      np.testing.assert_allclose(np.asarray(a)[m], np.asarray(b), atol=1e-6)
    for record, reference in zip(swept.history, single.history):
      assert record[f"train/episode_return/member_{m}"] == pytest.approx(reference["train/episode_return"], rel=1e-5)
    # Greedy episodes of up to 500 steps turn a parameter's last-bit rounding into another action now and then (seen
    # on one device: 407 against 464 at the last evaluation), so only the first evaluation is compared.
    first = swept.history[0]
    assert first[f"eval/return/member_{m}"] == pytest.approx(single.history[0]["eval/return"], rel=1e-5)
  # ... and the members learned differently: the swept values reached them.
  kernels = np.asarray(jax.tree.leaves(swept.state.learner.params)[-1])
  assert not np.allclose(kernels[1], kernels[2]) and not np.allclose(kernels[0], kernels[1])


def test_a_sweep_of_one_member_trains_that_members_values(runs, tmp_path):
  _, _, alone = runs
  one = trainer.train(_ppo({"lr": (3e-4,), "gamma": 0.9}), str(tmp_path / "one"))  # member 1 of GRID
  recorded = json.loads((tmp_path / "one" / "config.json").read_text())
  assert (recorded["lr"], recorded["gamma"]) == (3e-4, 0.9) and "sweep" not in recorded  # as it trained
  for a, b in zip(jax.tree.leaves(one.state.learner.params), jax.tree.leaves(alone[1].state.learner.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_end_ranks_the_members_by_their_last_evaluation(runs):
  _, swept, _ = runs
  last = swept.history[-1]
  returns = [last[f"eval/return/member_{m}"] for m in range(4)]
  kept = {"eval/return/member_0": 12.5, "update/member_0": 4, "eval/return/member_1": 500.0, "update/member_1": 8,
          "eval/return/member_2": 7.0, "update/member_2": 4, "eval/return/member_3": 9.25, "update/member_3": 8}
  lines = sweep.ranking(_ppo(GRID), swept.history, best_kept.texts(kept, 4), "runs/sweep")
  assert lines[0] == f"sweep of 4 members ranked by eval/return at update {last['update']}:"
  ranked = [int(line.split()[1]) for line in lines[2:6]]
  assert [returns[m] for m in ranked] == sorted(returns, reverse=True)
  assert [line.split()[3:5] for line in lines[2:6]] == [[f"{kept[f'eval/return/member_{m}']:.4g}",
                                                         f"({kept[f'update/member_{m}']})"] for m in ranked]
  assert lines[-2] == f"  at its best: python -m distrl.evaluate --workdir=runs/sweep --best --member={ranked[0]}"
  best = sweep.members(_ppo(GRID))[ranked[0]]
  start, command = lines[-1].split("python -m distrl.launch ")
  assert start == "  the best alone: "
  n = jax.device_count()
  expected = {"--config": "ppo", "--config.env_name": FAST, "--config.anneal_lr": "False",
              "--config.num_envs": str(n), "--config.total_timesteps": str(8 * n * 32),
              "--config.num_steps": "32", "--config.seed": "5", "--config.eval_episodes": str(n),
              "--config.log_every": "4", "--config.eval_every": "4", "--config.checkpoint_every": "4",
              "--config.gamma": repr(best["gamma"]), "--config.lr": repr(best["lr"])}
  if best["gamma"] == 0.99:  # the shipped config's: not repeated
    del expected["--config.gamma"]
  assert dict(flag.split("=") for flag in command.split()) == expected


def test_plot_draws_a_curve_a_member_and_evaluate_takes_one_member(runs):
  root, _, _ = runs
  figure = plot.figure([str(root / "sweep"), str(root / "member1")], "eval/return")
  assert [c.label for c in figure.curves] == ["gamma=0.9 lr=0.003 (1 seed)", "gamma=0.9 lr=0.0003 (1 seed)",
                                              "gamma=0.99 lr=0.003 (1 seed)", "gamma=0.99 lr=0.0003 (1 seed)"]
  assert len(figure.notes) == 1 and "member1" in figure.notes[0]  # member 1 alone is the same agent: counted once
  result = evaluate(f"--workdir={root / 'sweep'}", f"--episodes={jax.device_count()}", "--member=2")
  assert result.returncode == 0, result.stderr
  single = evaluate(f"--workdir={root / 'member2'}", f"--episodes={jax.device_count()}")
  line = next(line for line in single.stdout.splitlines() if line.startswith("return"))
  assert f"member 2 (gamma=0.99 lr=0.003): {line}" in result.stdout
  assert "member 1" not in result.stdout and "all agents" not in result.stdout
  wrong = evaluate(f"--workdir={root / 'member2'}", "--member=0")
  assert wrong.returncode == 1 and "--member=0: the run is not a sweep" in wrong.stderr


def _best(workdir):
  """best/ of a run: (its update, its metrics, its state)."""
  program, state, update = distrl_evaluate.load_run(str(workdir), None, best=True)
  kept = Checkpoints(str(workdir / "best"), keep=1, best_of="eval/return", create=False)
  try:
    return update, kept.metrics(update), state
  finally:
    kept.close()


class _FakeBest:
  """best/'s manager in memory: what `Best` saves and reads back."""

  def __init__(self):
    self.saved = {}  # update -> (state, metrics)

  def best(self):
    if not self.saved:
      return None
    update = max(self.saved)  # a sweep's newest save is its best
    return update, self.saved[update][1]["eval/return"]

  def save(self, update, state, metrics):
    self.saved[update] = (jax.tree.map(np.asarray, state), metrics)

  def metrics(self, update):
    return self.saved[update][1]

  def restore(self, update, like):
    return self.saved[update][0]


@pytest.mark.unit
def test_best_of_a_sweep_merges_each_members_best_and_reads_it_back_on_resume():
  from distrl.rl.state import TrainState
  from distrl.runtime.best import Best

  state = lambda u: TrainState(update=np.int32(u), learner={"w": np.full((4, 3), float(u))}, actors={})
  kept = _FakeBest()
  best = Best(kept, members=2, seeds=2, say=pytest.fail)
  best.keep(4, state(4), np.array([10.0, 20.0, 5.0, 5.0]))  # members' means 15, 5
  best.keep(8, state(8), np.array([12.0, 16.0, 6.0, 6.0]))  # 14 (worse), 6 (better): member 1 from update 8
  best.keep(12, state(12), np.array([1.0, 1.0, 1.0, 1.0]))  # nobody better: nothing saved
  assert sorted(kept.saved) == [4, 8]
  merged, metrics = kept.saved[8]
  np.testing.assert_array_equal(merged.learner["w"][:, 0], [4, 4, 8, 8])
  assert metrics == {"eval/return": 10.5, "eval/return/member_0": 15.0, "update/member_0": 4,
                     "eval/return/member_1": 6.0, "update/member_1": 8}
  resumed = Best(kept, members=2, seeds=2, say=pytest.fail)  # a new start reads the bests back from best/
  resumed.keep(16, state(16), np.array([15.0, 16.0, 0.0, 0.0]))  # 15.5: member 0 better; member 1 kept from 8
  merged, metrics = kept.saved[16]
  np.testing.assert_array_equal(merged.learner["w"][:, 0], [16, 16, 8, 8])
  assert (metrics["update/member_0"], metrics["update/member_1"]) == (16, 8)


def test_best_keeps_each_member_at_its_own_best_evaluation(runs):
  root, swept, _ = runs
  update, kept, state = _best(root / "sweep")
  evaluations = [r for r in swept.history if "eval/return" in r]
  assert len(evaluations) >= 2
  program, _, _ = distrl_evaluate.load_run(str(root / "sweep"), None)
  checkpoints = Checkpoints(str(root / "sweep" / "checkpoints"), keep=10, create=False)
  try:
    for m in range(4):
      returns = [r[f"eval/return/member_{m}"] for r in evaluations]
      at = evaluations[int(np.argmax(returns))]["update"]  # the first of equal bests
      assert kept[f"eval/return/member_{m}"] == max(returns) and kept[f"update/member_{m}"] == at
      then = checkpoints.restore(at, like=program.state)  # checkpoint_every == eval_every: every evaluation saved
      for a, b in zip(jax.tree.leaves(state.learner), jax.tree.leaves(then.learner)):
        np.testing.assert_array_equal(np.asarray(a)[m], np.asarray(b)[m])
  finally:
    checkpoints.close()
  assert kept["eval/return"] == pytest.approx(np.mean([kept[f"eval/return/member_{m}"] for m in range(4)]))
  assert update == max(kept[f"update/member_{m}"] for m in range(4))  # saved when a member last improved
  one = evaluate(f"--workdir={root / 'sweep'}", f"--episodes={jax.device_count()}", "--best", "--member=3")
  assert one.returncode == 0, one.stderr
  assert f"at update {kept['update/member_3']} (member 3's best evaluation, ppo on {FAST})" in one.stdout


def test_a_sweep_resumes_as_the_same_sweep_and_refuses_another(runs, tmp_path):
  """A sweep stopped at half its updates and resumed ends bit-identical to the sweep never stopped, the module's
  (lr not annealed over the run, so that the shorter first start trains the same updates)."""
  root, reference, _ = runs
  config = _ppo(GRID)
  half = config.copy_and_resolve_references()
  half.total_timesteps = config.total_timesteps // 2
  trainer.train(half, str(tmp_path / "run"))
  resumed = trainer.train(config, str(tmp_path / "run"))
  for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(reference.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert resumed.history[-1]["eval/return/member_3"] == reference.history[-1]["eval/return/member_3"]
  (u1, kept1, best1), (u2, kept2, best2) = _best(tmp_path / "run"), _best(root / "sweep")
  assert (u1, kept1) == (u2, kept2)  # each member's best read back from best/ at the resume, and kept on
  for a, b in zip(jax.tree.leaves(best1.learner), jax.tree.leaves(best2.learner)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  other = _ppo({"lr": (3e-3, 3e-4), "gamma": (0.9, 0.95)})
  with pytest.raises(ConfigError, match="is a sweep of .* it cannot go on as"):
    trainer.train(other, str(tmp_path / "run"))


@pytest.mark.skipif(jax.device_count() < 4, reason="groups of devices need several devices")
def test_members_split_over_groups_of_devices_learn_what_they_learn_on_every_device(runs, tmp_path):
  """member_groups=2 and 4: each group of devices trains its share of the members on its own environments; every
  member's parameters and returns are those of the sweep on one group (float rounding: its environments' gradients
  are averaged over fewer devices)."""
  _, swept, _ = runs
  for groups in (2, 4):
    split = trainer.train(_ppo(GRID, member_groups=groups), str(tmp_path / f"groups{groups}"))
    program = programs.build(_ppo(GRID, member_groups=groups), programs.mesh_for(_ppo(GRID, member_groups=groups)))
    leaf = jax.tree.leaves(program.state.learner)[0]
    assert len(leaf.sharding.device_set) == jax.device_count() and leaf.addressable_shards[0].data.shape[0] == 4 // groups
    for a, b in zip(jax.tree.leaves(split.state.learner.params), jax.tree.leaves(swept.state.learner.params)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    first = split.history[0]
    for m in range(4):
      assert first[f"train/episode_return/member_{m}"] == pytest.approx(
          swept.history[0][f"train/episode_return/member_{m}"], rel=1e-5)
      assert first[f"eval/return/member_{m}"] == pytest.approx(swept.history[0][f"eval/return/member_{m}"], rel=1e-5)
  # The best member alone, by the command the end of the run printed, runs as printed on one device.
  command = sweep.ranking(_ppo(GRID, member_groups=4), split.history)[-1].split("the best alone: ")[1]
  python, *words = shlex.split(command)  # python: this interpreter
  assert python == "python"
  alone = subprocess.run([sys.executable, *words, f"--workdir={tmp_path / 'alone'}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "XLA_FLAGS": "", "PYTHONPATH": ROOT})
  assert alone.returncode == 0, alone.stderr
  recorded = json.loads((tmp_path / "alone" / "config.json").read_text())
  best = sweep.members(_ppo(GRID))[int(sweep.ranking(_ppo(GRID), split.history)[2].split()[1])]
  assert (recorded["lr"], recorded["gamma"], recorded["member_groups"]) == (best["lr"], best["gamma"], 1)


@pytest.mark.unit
def test_a_field_given_one_value_is_the_runs_own_value_not_a_sweep():
  config = sweep.folded(_ppo({"lr": 1e-3, "gamma": (0.9, 0.99)}))
  assert config.lr == 1e-3 and dict(config.sweep) == {"gamma": (0.9, 0.99)}
  alone = sweep.folded(_ppo({"lr": (1e-3,)}))
  assert alone.lr == 1e-3 and "sweep" not in alone
  drawn = _ppo({"lr": (1e-4, 1e-2), "draws": 1})
  assert sweep.folded(drawn) is drawn


@pytest.mark.unit
def test_the_best_alone_command_leaves_member_groups_behind():
  """A member alone is one group on any number of devices: member_groups=4 of the sweep would be refused there."""
  config = _ppo(GRID, member_groups=4)
  command = sweep.retrain_command(config, sweep.members(config)[2])
  assert "member_groups" not in command and "--config.lr=0.003" in command, command


@pytest.mark.unit
def test_member_groups_that_do_not_divide_are_refused():
  with pytest.raises(ConfigError, match="member_groups=3 must divide the 8 devices"):
    programs.mesh_for(_ppo(GRID, member_groups=3), jax.devices()[:1] * 8)
  with pytest.raises(ConfigError, match=r"member_groups=8 must divide the run's 4 agents \(sweep members x num_seeds\)"):
    programs.mesh_for(_ppo(GRID, member_groups=8), jax.devices()[:1] * 8)
  with pytest.raises(ConfigError, match="member_groups=2 needs backend='shard_map'"):
    programs.mesh_for(_ppo(GRID, member_groups=2, backend="pmap"), jax.devices()[:1] * 2)
  with pytest.raises(ConfigError, match="member_groups=0 must be at least 1"):
    programs.mesh_for(_ppo(GRID, member_groups=0), jax.devices()[:1] * 2)


@pytest.mark.parametrize("flags, message", [
    (["--config.sweep.num_envs=(8, 16)"], "distrl: error: sweep.num_envs: num_envs changes array shapes"),
    (["--config.sweep.lr", "--config.seed=1"], "distrl: error: flag --config.sweep.lr has no value"),
])
def test_a_sweep_refused_on_the_command_line_is_one_line(flags, message, tmp_path):
  run = launch(f"--workdir={tmp_path / 'run'}", "--config.num_envs=8", *flags)
  _, err = run.communicate(timeout=120)
  assert run.returncode in (1, 2) and err.startswith(message) and len(err.strip().splitlines()) == 1, err
  assert not (tmp_path / "run").exists()


@pytest.mark.unit
@pytest.mark.parametrize("member, message", [("1", "--member='1': the run's sweep has members 0..3"),
                                             (4, "--member=4: the run's sweep has members 0..3"),
                                             (True, "--member=True: the run's sweep has members 0..3")])
def test_a_member_that_is_not_one_of_the_sweeps_is_one_line(member, message):
  sweep.check_member(_ppo(GRID), 3)  # the last member is one
  with pytest.raises(ConfigError, match=re.escape(message)):
    sweep.check_member(_ppo(GRID), member)
