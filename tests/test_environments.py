"""Every environment `envs.names()` lists trains one PPO iteration on 2 devices under both backends, or is refused
in one line; importing them leaves gymnax's rendering libraries unimported until a render uses them."""

import subprocess
import sys

import jax
import numpy as np
import pytest

from distrl import envs, sharding
from distrl.runtime import programs
from distrl.configs import ppo as ppo_config
from distrl.errors import ConfigError

# Environments that may be refused, and why: MNISTBandit-bsuite downloads MNIST when made (offline: a one-line
# ConfigError; online it trains).
MAY_BE_REFUSED = {"MNISTBandit-bsuite": "fetches data"}


@pytest.mark.parametrize("name", envs.names())
def test_environment_trains_an_iteration_on_two_devices_or_is_refused_in_one_line(name):
  """Each environment compiles once (about 2-4 s of CPU, cold), under shard_map, the default backend: Asterix-MinAtar
  failed to trace there before distrl's shard_maps stopped checking varying manual axes (sharding.shard_map). pmap,
  which traces the environment the same way on each device, runs one of them here (CartPole-v1) and every algorithm
  in tests/test_sharding.py."""
  if jax.device_count() < 2:
    pytest.skip("needs 2 devices: run with the default 8 emulated devices")
  mesh = sharding.make_mesh(jax.devices()[:2])
  for backend in sharding.BACKENDS if name == "CartPole-v1" else ("shard_map",):
    config = ppo_config.get_config()
    # The smallest PPO program (a linear policy and value, one step, one gradient step): compiling is the cost.
    config.update(env_name=name, backend=backend, num_envs=2, num_steps=1, num_minibatches=1, update_epochs=1,
                  total_timesteps=2, hidden_sizes=(), anneal_lr=False, norm_adv=False, clip_value_loss=False,
                  eval_episodes=2)
    try:
      program = programs.build(config, mesh)
    except ConfigError as error:
      assert name in MAY_BE_REFUSED, f"{name} refused: {error}"
      assert "\n" not in str(error) and MAY_BE_REFUSED[name] in str(error), str(error)
      return
    runner = program.runner
    state = runner.put(program.state)
    runner.compile(state)
    state, sums, _ = runner(state, 1)
    assert int(runner.get(state).update) == 1, (name, backend)
    assert np.isfinite(float(sums["loss/total"][0])), (name, backend)


def test_gymnax_render_libraries_are_imported_on_first_use():
  """gymnax imports seaborn (with scipy.stats and pandas) and pyplot for rendering only; importing distrl's
  environments does not, their render code still reaches them, and a later `import seaborn` is the real module."""
  code = ("import sys, types; from distrl import envs; envs.make('CartPole-v1'); "
          "print(sorted(m for m in ('seaborn', 'scipy.stats', 'pandas', 'matplotlib.pyplot') if m in sys.modules)); "
          "from gymnax.environments.misc import pong; print(len(pong.sns.color_palette('cubehelix', 3))); "
          "import seaborn; print(type(seaborn) is types.ModuleType, seaborn.color_palette is pong.sns.color_palette)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
  assert out.splitlines() == ["[]", "3", "True True"]
