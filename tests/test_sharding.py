"""Sharded updates equal the unsharded update on the same global batch, for both backends."""

import jax
import numpy as np
import pytest

from distrl import sharding
from distrl.configs import impala as impala_config
from distrl.runtime import programs

pytestmark = pytest.mark.unit


def _run(config, devices, backend, num_updates):
  """`num_updates` updates on `devices`; returns (global state, metric sums, runner, initial state)."""
  config = config.copy_and_resolve_references()
  config.backend = backend
  program = programs.build(config, sharding.make_mesh(devices))
  runner, initial = program.runner, jax.device_get(program.state)  # the runner donates the state it is given
  state, sums, _ = runner(runner.put(program.state), num_updates)
  return jax.device_get(runner.get(state)), jax.device_get(sums), runner, initial


@pytest.fixture(params=["ppo", "impala"])
def small(request, ppo_cfg):
  """PPO, or IMPALA with two minibatches: its V-trace targets are computed on each device's environments."""
  config = ppo_cfg if request.param == "ppo" else impala_config.get_config()
  config.num_envs = 8
  config.num_steps = 32
  config.seed = 3
  if request.param == "impala":
    config.num_minibatches = 2
  return config


def _assert_close(a, b, atol):
  for path, x, y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, atol=atol, rtol=atol, err_msg=jax.tree_util.keystr(path[0]))


@pytest.mark.parametrize("backend", sharding.BACKENDS)
def test_sharded_update_equals_unsharded(small, backend):
  if jax.device_count() < 2:
    pytest.skip("needs several devices: run with the default 8 emulated devices")
  reference, reference_sums, _, _ = _run(small, jax.devices()[:1], "shard_map", 2)
  state, sums, runner, initial = _run(small, jax.devices(), backend, 2)
  assert runner.mesh.size == jax.device_count()
  _assert_close(state.learner.params, reference.learner.params, atol=1e-5)
  _assert_close(state.learner.opt_state, reference.learner.opt_state, atol=1e-5)
  # Environments follow their own keys, so the rollouts are the same too, wherever they ran.
  np.testing.assert_array_equal(state.actors.key, reference.actors.key)
  np.testing.assert_allclose(state.actors.obs, reference.actors.obs, atol=1e-5)
  _assert_close(sums, reference_sums, atol=1e-4)
  assert int(state.update) == 2
  # ... and the updates were not two no-ops: the parameters moved, and both updates were counted.
  delta = max(float(np.max(np.abs(a - b))) for a, b in
              zip(jax.tree.leaves(state.learner.params), jax.tree.leaves(initial.learner.params)))
  assert delta > 1e-4
  assert sums["loss/total"][1] == 2


def test_state_layout(small):
  state = programs.build(small, sharding.make_mesh()).state
  assert state.actors.obs.shape == (small.num_envs, 4)
  assert state.actors.obs.sharding.spec == jax.sharding.PartitionSpec(sharding.DATA_AXIS)
  assert len(state.actors.obs.addressable_shards) == jax.device_count()
  assert state.actors.obs.addressable_shards[0].data.shape == (small.num_envs // jax.device_count(), 4)
  kernel = jax.tree.leaves(state.learner.params)[0]
  assert kernel.sharding.is_fully_replicated
