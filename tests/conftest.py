"""Tests run on 8 emulated CPU devices unless XLA_FLAGS already sets a device count.

  XLA_FLAGS=--xla_force_host_platform_device_count=1 pytest   # the same suite on one device
"""

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402  (after XLA_FLAGS)
import pytest  # noqa: E402

from configs import ppo as ppo_config  # noqa: E402


@pytest.fixture
def ppo_cfg():
  """The default PPO config, with num_envs a multiple of the device count."""
  config = ppo_config.get_config()
  config.num_envs = max(config.num_envs, jax.device_count())
  return config
