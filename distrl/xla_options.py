"""The XLA options distrl's programs compile with, put in XLA_FLAGS when distrl is imported (JAX reads XLA_FLAGS
when its backend starts, so a process that started it before importing distrl keeps XLA's defaults).

On the CPU, XLA runs a compiled program as a sequence of calls into its runtime, one per operation (or fusion of
operations), each costing ~1 us however small its arrays; a while loop whose buffers are small is instead compiled
into one function (`xla_cpu_small_while_loop_byte_threshold`, an option of XLA's CPU backend: the bytes a loop may
access, ~1 kB by default). The loops that an RL update runs on small arrays are many: threefry's rounds in every
key split and random draw (per environment, for device-count invariance), and the rollouts of small
environments. distrl raises the bound to 1 MiB, which those loops fit in: an update makes fewer calls into the
runtime and runs faster (PPO on CartPole by a few percent, DQN by more), and computes the same state bit for bit,
as the option changes how a loop runs, not what it computes. A user who sets `--xla_backend_extra_options` in
XLA_FLAGS keeps theirs (XLA's default is `--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1000`;
an empty value stops XLA at start). Other backends ignore the option.
"""

import os

SMALL_LOOP_BYTES = 1 << 20
ADDED = f"--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold={SMALL_LOOP_BYTES}"


def configure(environ=os.environ) -> None:
  """Adds distrl's backend options to `environ`'s XLA_FLAGS unless it sets backend options already."""
  flags = environ.get("XLA_FLAGS", "")
  if "--xla_backend_extra_options" not in flags:
    environ["XLA_FLAGS"] = f"{flags} {ADDED}".strip()


def users_flags(environ=os.environ) -> str:
  """XLA_FLAGS as the user set them: without what `configure` added."""
  return environ.get("XLA_FLAGS", "").replace(ADDED, "").strip()
