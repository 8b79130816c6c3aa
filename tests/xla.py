"""The suite's XLA options, for its own process (tests/conftest.py) and the processes it starts: no JAX import here,
as they must be in XLA_FLAGS before JAX starts.

The tests compile many small programs and run them for a few updates: compiling is most of their time, and XLA's
CPU backend compiles about twice as fast at its lowest optimisation level (test_sharding.py: 104 s -> 65 s, the same
results). Learning runs (marked `slow`) run for minutes: conftest's `optimised_learning_runs` compiles their programs
at the default level, as users' runs are compiled."""

OPTIMIZATION = "--xla_backend_optimization_level=0"
DEFAULT_LEVEL = 2  # XLA's default xla_backend_optimization_level


def flags(devices: int) -> str:
  """XLA_FLAGS for a process the tests start on `devices` emulated CPU devices."""
  return f"--xla_force_host_platform_device_count={devices} {OPTIMIZATION}"
