"""distrl's XLA options (distrl/xla_options.py): put in XLA_FLAGS on import unless the user set backend options."""

import os
import subprocess
import sys

import pytest

from distrl import xla_options
from tests.cli import ROOT

# A loop of 100 steps over 64 random draws (threefry's rounds are a loop of their own): ~2 kB of buffers per step,
# past XLA's default bound for compiling a loop into one function (~1 kB), well inside distrl's (1 MiB).
PROGRAM = """
import distrl, jax, jax.numpy as jnp
def run(key):
  def step(x, key):
    return x + jax.random.uniform(key, (64,)), None
  return jax.lax.scan(step, jnp.zeros(64), jax.random.split(key, 100))[0]
print(jax.jit(run).lower(jax.random.key(0)).compile().as_text().count('xla_cpu_small_call="true"'))
"""


@pytest.mark.unit
def test_configure_adds_the_small_loop_bound_unless_backend_options_are_set_and_says_what_the_user_set():
  environ = {}
  xla_options.configure(environ)
  assert environ["XLA_FLAGS"] == "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1048576"
  environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  xla_options.configure(environ)
  assert environ["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=8 "
                                  "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1048576")
  assert xla_options.users_flags(environ) == "--xla_force_host_platform_device_count=8"
  mine = "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1000"
  environ = {"XLA_FLAGS": mine}
  xla_options.configure(environ)
  assert environ["XLA_FLAGS"] == mine and xla_options.users_flags(environ) == mine


@pytest.mark.parametrize("flags, compiled_whole", [("", True), ("--xla_backend_extra_options="
                                                                 "xla_cpu_small_while_loop_byte_threshold=1000", False)])
def test_importing_distrl_compiles_small_loops_into_one_function_on_the_cpu(flags, compiled_whole):
  """With distrl imported before JAX starts, the loop and threefry's loops inside it are each compiled into one
  function (3 of them); with the user's own bound, XLA's default of 1,000 bytes, none is."""
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count=1 {flags}".strip(), "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": ROOT}
  out = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, check=True)
  calls = int(out.stdout.split()[-1])
  assert calls == (3 if compiled_whole else 0), out.stdout
