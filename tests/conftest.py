"""Tests run on 8 emulated CPU devices unless XLA_FLAGS already sets a device count.

  XLA_FLAGS=--xla_force_host_platform_device_count=1 pytest   # the same suite on one device
"""

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402  (after XLA_FLAGS)
import pytest  # noqa: E402

# Many tests compile the same programs (a run and its resumed or reference twin): JAX's persistent compilation
# cache, as the launcher uses it (~/.cache/distrl/jax), makes the second compile a load.
jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.expanduser("~"), ".cache", "distrl", "jax"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

from distrl.configs import ppo as ppo_config  # noqa: E402


@pytest.fixture
def ppo_cfg():
  """The default PPO config, with num_envs a multiple of the device count."""
  config = ppo_config.get_config()
  config.num_envs = max(config.num_envs, jax.device_count())
  return config


TIERS = ("slow", "program", "unit")  # pyproject.toml's markers, in the order the tests run


def pytest_collection_modifyitems(config, items):
  """Every test is in one tier: one marked neither `unit` nor `slow` compiles programs or starts processes. The
  tiers run slow first, then program, then unit (each in file order): under pytest-xdist the minutes-long learning
  runs start at once and the short tests fill in at the end, instead of one worker finishing a learning run alone."""
  for item in items:
    if item.get_closest_marker("unit") is None and item.get_closest_marker("slow") is None:
      item.add_marker(pytest.mark.program)
  items.sort(key=lambda item: next(i for i, tier in enumerate(TIERS) if item.get_closest_marker(tier)))
  _xdist_groups(config, items)


def _xdist_groups(config, items):
  """--dist=loadgroup on pytest 9: pytest-xdist (3.8) sends a module marked `xdist_group` to one worker by appending
  "@group" to each item's `_nodeid`, which pytest 9 no longer reads (a node's id is `_id`, a NodeId): the modules
  were split over the workers and their module fixtures (a training run each) ran on every worker. The same suffix,
  where pytest 9 keeps it; on pytest 8 xdist's own works and this does nothing."""
  if not getattr(config.option, "loadgroup", False):  # set on xdist's workers only
    return
  try:
    from _pytest.nodeid import NodeId  # pytest >= 9
  except ImportError:
    return
  for item in items:
    groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                     for m in item.iter_markers("xdist_group")})
    if groups and "@" not in item.nodeid:
      item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(groups)}")


def pytest_terminal_summary(terminalreporter, config):
  """The machine under the summary (shown with -q too), so that a time printed there can be compared with another's:
  the CPUs this process may use, the workers that shared them, the emulated device count."""
  workers = getattr(config.option, "numprocesses", None) or 1
  cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  terminalreporter.write_line(f"distrl tests: {cpus} CPU(s), {workers} worker(s), {jax.device_count()} emulated "
                              f"device(s) a process")
