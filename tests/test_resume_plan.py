"""The start's line (resume.announce): what a start trains, said before compiling."""

import types

import pytest

from distrl.runtime import resume

pytestmark = pytest.mark.unit


def _program(total_timesteps, num_updates, steps_per_update):
  config = types.SimpleNamespace(algo="ppo", env_name="Breakout-MinAtar", total_timesteps=total_timesteps)
  sizes = types.SimpleNamespace(num_updates=num_updates, steps_per_update=steps_per_update)
  return types.SimpleNamespace(config=config, sizes=sizes, mesh=types.SimpleNamespace(size=1),
                               total_steps=num_updates * steps_per_update)


def _said(program):
  lines = []
  plan = resume.Plan(state=None, restored=None, history=[], changes={}, last_start=None, finished=False)
  resume.announce(plan, program, types.SimpleNamespace(path="runs/x"), 1, lines.append)
  return lines


def test_a_budget_rounded_down_to_whole_updates_is_said():
  assert _said(_program(20_000, 2, 8_192)) == [
      "total_timesteps=20,000 is not a whole number of updates of 8,192 steps: the run trains 16,384",
      "training ppo on Breakout-MinAtar: 2 updates of 8192 steps on 1 device(s); workdir runs/x"]


def test_a_whole_budget_says_only_what_is_trained():
  assert _said(_program(16_384, 2, 8_192)) == [
      "training ppo on Breakout-MinAtar: 2 updates of 8192 steps on 1 device(s); workdir runs/x"]
