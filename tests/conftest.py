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


def pytest_collection_modifyitems(items):
  """Every test is in one tier: one marked neither `unit` nor `slow` compiles programs or starts processes."""
  for item in items:
    if item.get_closest_marker("unit") is None and item.get_closest_marker("slow") is None:
      item.add_marker(pytest.mark.program)
