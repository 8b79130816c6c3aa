"""Whether the compiled update fits in memory, checked once it is compiled and before the first update: XLA's memory
analysis of the program against what its devices have (an accelerator's own memory; on a CPU the host's available
RAM, which every CPU device of the process shares). A run that cannot fit is refused in one line, with both numbers,
the fields that scale it and a value that fits, instead of failing in the allocator after its compile."""

from typing import Callable

import ml_collections

from distrl.errors import ConfigError

HEADROOM = 0.9  # of what is available, what a suggested size may use: the environments and the evaluation need some


def needed(stats) -> int | None:
  """Bytes one device holds while the compiled call runs (its arguments, outputs that do not alias them, its
  temporaries and code), from `compiled.memory_analysis()`; None where XLA gives none."""
  if stats is None:
    return None
  return (stats.argument_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes
          + stats.temp_size_in_bytes + stats.generated_code_size_in_bytes)


def available(devices) -> tuple[int, str] | None:
  """(bytes, what they are) that each of `devices` (this process's, of one kind) may use, or None if unknown."""
  device = devices[0]
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"{device.device_kind} memory"
  if device.platform != "cpu":
    return None
  try:
    with open("/proc/meminfo") as f:
      kilobytes = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
  except (OSError, StopIteration, ValueError):
    return None
  share = f", shared by {len(devices)} CPU devices" if len(devices) > 1 else ""
  return kilobytes * 1024 // len(devices), f"the host's available RAM{share}"


def check(config: ml_collections.ConfigDict, stats, devices, num_devices: int,
          accepted: Callable[[ml_collections.ConfigDict], object] = lambda config: None) -> None:
  """ConfigError if the compiled call (`stats`, its memory analysis) needs more than each of `devices` has; the
  message names the field that scales it and a value that fits (sizes scale the program about linearly) and that
  `accepted` (the algorithm's `sizes`) takes without a ConfigError."""
  need, have = needed(stats), available(devices)
  if need is None or have is None or need <= have[0]:
    return
  field, unit = ("buffer_size", 1) if _replay_dominates(config, stats) else ("num_envs", num_devices)
  value = int(config[field])
  fits = int(value * HEADROOM * have[0] / need) // unit * unit
  while fits >= unit and not _accepts(accepted, config, field, fits):
    fits -= unit
  scales = "buffer_size (and batch_size)" if field == "buffer_size" else \
      "num_envs" + (" and num_steps" if "num_steps" in config else "")
  hint = (f"--config.{field}={fits} fits (about {_size(need * fits / value)})" if fits >= unit else
          "even the smallest run does not fit: use a device with more memory")
  raise ConfigError(f"the compiled update needs {_size(need)} on each device and {have[1]} is {_size(have[0])}: "
                    f"{scales} scale it ({field}={value}); {hint}")


def _accepts(accepted: Callable, config: ml_collections.ConfigDict, field: str, value: int) -> bool:
  smaller = config.copy_and_resolve_references()
  smaller[field] = value
  try:
    accepted(smaller)
  except ConfigError:
    return False
  return True


def _replay_dominates(config, stats) -> bool:
  """A replay buffer is the state's bulk: arguments (the state) outweigh the call's temporaries."""
  return "buffer_size" in config and stats.argument_size_in_bytes > stats.temp_size_in_bytes


def _size(n: float) -> str:
  for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
    if n >= scale:
      return f"{n / scale:.1f} {unit}"
  return f"{n:.0f} bytes"
