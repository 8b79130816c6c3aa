"""Helpers for tests that run distrl from the command line, as a user does."""

import json
import os
import subprocess
import sys
import time

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(*flags, config="ppo", cwd=ROOT, devices=None, env_extra=None, **popen):
  """Starts `python -m distrl.launch --config=CONFIG FLAGS` on as many devices as the tests have.

  CONFIG is a shipped config's name (`ppo`, `dqn:Acrobot-v1`) or a file path relative to the repository (given as it is where `cwd` is the repository's root)."""
  devices = devices or jax.device_count()
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
         "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env_extra or {})}
  if config.split(":")[0].endswith(".py") and cwd != ROOT:
    config = os.path.join(ROOT, config)
  command = [sys.executable, "-m", "distrl.launch", f"--config={config}", *flags]
  popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
  return subprocess.Popen(command, cwd=cwd, env=env, **popen)


def records(workdir):
  """The run's metrics.jsonl as a list of dicts."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def timeless(history):
  """Records (or a Result's history) without the fields that measure time: what equal runs must agree on."""
  return [{k: v for k, v in r.items() if k != "time" and not k.startswith("perf/")} for r in history]


def read_until(run, text, timeout=120):
  """Lines of a launched run's stdout up to and including the first that contains `text`."""
  lines, deadline = [], time.time() + timeout
  while time.time() < deadline:
    line = run.stdout.readline()
    if not line:
      break
    lines.append(line)
    if text in line:
      return lines
  raise AssertionError(f"{text!r} never came: {lines}")
