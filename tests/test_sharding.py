"""Sharded updates equal the unsharded update on the same global batch: every algorithm, its options that touch the
devices (replay draws, priorities, memory, normalisation), both backends.

One test over a list of cases; a new algorithm (the registry is checked against the list) or another way to run
(`config.architecture`) is one more case: an algorithm, the config fields it changes, and what must have happened in
its updates for the comparison to mean anything.
"""

import dataclasses
import importlib
from collections.abc import Callable

import jax
import numpy as np
import pytest

from distrl import algorithms, architectures, sharding
from distrl.runtime import programs
from tests.runs import FAST, updates

BOX = {"env_name": FAST, "env_kwargs": {"continuous": True}}  # a Box of one axis in [-2, 2]
# The replay family: 8 environments a step each per update, gradient steps from update 10 on.
REPLAY = {"num_envs": 8, "train_frequency": 8, "batch_size": 32, "buffer_size": 8 * 40, "learning_starts": 8 * 10,
          "hidden_sizes": (32, 32)}


def _memory_carried(state, initial):
  """Memory is carried mid-episode into the next update: some rows are not zeros."""
  assert any(float(np.max(np.abs(leaf))) > 0 for leaf in jax.tree.leaves(state.actors.memory))


def _priorities_written(state, initial):
  """New priorities were written back to the rows of whichever device holds them."""
  assert len(np.unique(state.actors.priority)) > 100


def _noise_learned(state, initial):
  """The noisy layers' scales trained (their gradients come through the noise), and priorities were written back."""
  sigmas = [(path, leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(state.learner.params)
            if "sigma" in jax.tree_util.keystr(path)]
  assert len(sigmas) == 4  # kernel and bias of both dueling heads
  start = dict(jax.tree_util.tree_leaves_with_path(initial.learner.params))
  assert all(not np.allclose(leaf, start[path]) for path, leaf in sigmas)
  _priorities_written(state, initial)


def _actor_moved(state, initial):
  """The actor (not only the critics) trained."""
  for x, y in zip(jax.tree.leaves(initial.learner.actor.params), jax.tree.leaves(state.learner.actor.params)):
    assert not np.allclose(x, y)


@dataclasses.dataclass(frozen=True)
class Case:
  """An algorithm and the config fields of one comparison, `updates` updates long."""

  algo: str
  fields: dict
  updates: int
  counted: tuple[str, int]  # a metric and the number of updates that counted it: the updates were not no-ops
  check: Callable | None = None  # what else holds after the updates: check(state, initial)
  atol: float = 1e-5  # float rounding of the all-reduces


# PPO's environments reset in batches (as Craftax's): each device resets its own ended environments, a few at a time;
# its observation and reward statistics are over every device.
PPO = {"env_name": FAST, "env_kwargs": {"in_batches": True}, "num_envs": 32, "num_steps": 16, "num_minibatches": 2,
       "normalize_obs": True, "scale_rewards": True}

CASES = {
    "ppo": Case("ppo", PPO, 2, ("loss/total", 2)),
    "ppo-pmap": Case("ppo", {**PPO, "backend": "pmap"}, 2, ("loss/total", 2)),
    # Memory replayed from the rollout's start, observation and reward statistics over every device.
    "ppo-gru-normalised": Case("ppo", {"env_name": FAST, "recurrent": "gru", "recurrent_size": 8, "num_envs": 16,
                                       "num_steps": 16, "num_minibatches": 2, "update_epochs": 2,
                                       "hidden_sizes": (16,), "normalize_obs": True, "scale_rewards": True},
                               2, ("loss/total", 2), _memory_carried),
    # V-trace targets are computed on each device's environments.
    "impala-pmap": Case("impala", {"env_name": FAST, "num_envs": 8, "num_steps": 16, "num_minibatches": 2,
                                   "backend": "pmap"}, 2, ("loss/total", 2)),
    "pqn-normalised": Case("pqn", {"env_name": FAST, "num_envs": 8, "num_steps": 16, "num_minibatches": 4,
                                   "update_epochs": 2, "normalize_obs": True, "hidden_sizes": (32, 32)},
                           3, ("loss/total", 3)),
    "pqn-lstm": Case("pqn", {"env_name": FAST, "recurrent": "lstm", "recurrent_size": 8, "num_envs": 16,
                             "num_steps": 16, "num_minibatches": 2, "update_epochs": 2, "hidden_sizes": (16,)},
                     2, ("loss/total", 2), _memory_carried),
    # Batches are drawn from the whole buffer with a replicated key and shared; the target network moves every 10.
    # Rainbow: C51's distributions, their priorities (KL) written back wherever the rows are, double Q, the dueling
    # heads, 3-step targets, and noisy heads (each environment's acting noise from its own key; the online and target
    # networks' noise from the replicated key, the same sample on every device's slice of the batch).
    "dqn-noisy-rainbow": Case("dqn", {"env_name": FAST, **REPLAY, "n_step": 3, "double_dqn": True, "dueling": True,
                                      "prioritized": True, "distributional": "c51", "num_atoms": 11, "v_min": -5.0,
                                      "v_max": 5.0, "noisy": True, "target_update_interval": 8 * 10},
                              30, ("loss/total", 20), _noise_learned, atol=1e-4),
    # QR-DQN's quantiles with 3-step targets.
    "dqn-qr-n-step": Case("dqn", {"env_name": FAST, **REPLAY, "n_step": 3, "distributional": "qr", "num_atoms": 8,
                                  "target_update_interval": 8 * 10}, 30, ("loss/total", 20)),
    # IQN: each sample's fractions drawn for the global batch from the replicated key (online, target and a*'s passes),
    # double Q's a*, the dueling heads on psi(s) * phi(tau), priorities from the quantile loss.
    "dqn-iqn-double-prioritised": Case("dqn", {"env_name": FAST, **REPLAY, "n_step": 1, "double_dqn": True,
                                               "dueling": True, "prioritized": True, "distributional": "iqn",
                                               "num_tau_samples": 8, "num_tau_prime_samples": 6,
                                               "num_quantile_samples": 4, "quantile_embedding_dim": 8,
                                               "target_update_interval": 8 * 10},
                                       30, ("loss/total", 20), _priorities_written, atol=1e-4),
    # From the first update on: trained in every update from the first whose rows hold a complete n-step window.
    "dqn-prioritised-pmap": Case("dqn", {"env_name": FAST, **REPLAY, "learning_starts": 0, "prioritized": True,
                                         "n_step": 2, "loss": "huber", "scale_rewards": True, "normalize_obs": True,
                                         "target_update_interval": 8 * 10, "backend": "pmap"},
                                 30, ("loss/total", 29), _priorities_written, atol=1e-4),
    # The batch's noise too is drawn for the global batch from the replicated key.
    "sac-normalised-n-step": Case("sac", {**BOX, **REPLAY, "gradient_steps": 2, "normalize_obs": True,
                                          "scale_rewards": True, "n_step": 2}, 20, ("loss/critic", 10), _actor_moved,
                                  atol=2e-5),
    "td3-layer-norm-delayed": Case("td3", {**BOX, **REPLAY, "gradient_steps": 2, "critic_layer_norm": True,
                                           "policy_frequency": 3}, 20, ("loss/critic", 10), _actor_moved, atol=2e-5),
    # The host architecture: the same rollouts (host environments seeded alike, the actor on the first device) learned
    # on one device or split over all of them.
    "ppo-host": Case("ppo", {"architecture": "host", "env_name": "gymnasium:CartPole-v1", "num_envs": 8,
                             "num_steps": 16, "num_minibatches": 2, "actor_lag": 0}, 2, ("loss/total", 2)),
}


def config_of(case: Case):
  """The algorithm's shipped config with the case's fields."""
  config = importlib.import_module(f"distrl.configs.{case.algo}").get_config()
  config.update(dict(seed=3, eval_episodes=8, total_timesteps=10**6, **case.fields))
  return config


def _assert_close(a, b, atol):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, atol=atol, rtol=atol, err_msg=jax.tree_util.keystr(path))


@pytest.mark.unit
def test_the_cases_cover_every_registered_algorithm_and_architecture():
  assert {case.algo for case in CASES.values()} >= set(algorithms.names())
  assert {case.fields.get("architecture", "compiled") for case in CASES.values()} >= set(architectures.names())


@pytest.mark.program
@pytest.mark.parametrize("name", list(CASES))
def test_sharded_updates_equal_the_unsharded_updates(name):
  if jax.device_count() < 2:
    pytest.skip("needs several devices: run with the default 8 emulated devices")
  case = CASES[name]
  config = config_of(case)
  unsharded = config.copy_and_resolve_references()
  unsharded.backend = "shard_map"  # the reference is the same program for both backends: compiled once
  reference = updates(unsharded, case.updates, jax.devices()[:1])
  sharded = updates(config, case.updates)
  assert sharded.mesh_size == jax.device_count() and int(sharded.state.update) == case.updates
  # Everything: parameters, optimizer states, targets, statistics; and every environment's row (states,
  # observations, keys, replay, priorities, memory), wherever it ran: each environment follows its own keys.
  _assert_close(sharded.state, reference.state, case.atol)
  _assert_close(sharded.sums, reference.sums, max(case.atol, 1e-4))
  # ... and the updates were not no-ops: they counted what they learned from, and the parameters moved.
  metric, count = case.counted
  assert reference.sums[metric][1] == count
  moved = max(float(np.max(np.abs(a - b))) for a, b in
              zip(jax.tree.leaves(sharded.state.learner), jax.tree.leaves(sharded.initial.learner))
              if np.issubdtype(a.dtype, np.floating))
  assert moved > 1e-4
  if case.check is not None:
    case.check(sharded.state, sharded.initial)


@pytest.mark.unit
def test_state_layout(ppo_cfg):
  ppo_cfg.update(dict(env_name=FAST, num_envs=8))
  state = programs.build(ppo_cfg, sharding.make_mesh()).state
  assert state.actors.obs.shape == (8, 2)
  assert state.actors.obs.sharding.spec == jax.sharding.PartitionSpec(sharding.DATA_AXIS)
  assert len(state.actors.obs.addressable_shards) == jax.device_count()
  assert state.actors.obs.addressable_shards[0].data.shape == (8 // jax.device_count(), 2)
  kernel = jax.tree.leaves(state.learner.params)[0]
  assert kernel.sharding.is_fully_replicated
