"""One process of a multi-process test run: trains one config or several in turn (in one jax.distributed session)
and saves this process's learner of each (parameters, targets, optimizer states, ...).

  python tests/multiprocess_worker.py PORT NUM_PROCESSES PROCESS_ID ALGO WORKDIR OUT.npz [field=value ...] \
      [-- ALGO WORKDIR OUT.npz [field=value ...] ...]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402


def main():
  port, num_processes, process_id, *rest = sys.argv[1:]
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(f"localhost:{port}", int(num_processes), int(process_id), heartbeat_timeout_seconds=10)
  import importlib

  from distrl import sharding
  from distrl.runtime import trainer

  from tests.runs import override

  runs = [[]]
  for arg in rest:
    runs.append([]) if arg == "--" else runs[-1].append(arg)
  for algo, workdir, out, *overrides in runs:
    config = override(importlib.import_module(f"distrl.configs.{algo}").get_config(), overrides)
    result = trainer.train(config, workdir)
    learner = sharding.to_host(result.state.learner)
    np.savez(out, *jax.tree.leaves(learner))


if __name__ == "__main__":
  main()
