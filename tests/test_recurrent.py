"""Agents with memory (distrl/rl/recurrent.py): resets at episode ends, the loss's replay of acting, whole-environment
minibatches, and the config's mistakes (device-count invariance in test_sharding.py).

MemoryChain-bsuite (gymnax, memory_length 5) is the task with known episode ends: every episode lasts exactly 6 steps
from its reset, so where a rollout's episodes end is known by hand.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distrl import algorithms, envs, sharding
from distrl.configs import ppo as ppo_config, pqn as pqn_config
from distrl.errors import ConfigError
from distrl.ppo import learner as ppo_learner
from distrl.rl import acting, actor_critic, recurrent, rollout_learner
from distrl.runtime import programs

CHAIN = "MemoryChain-bsuite"


def _config(algo="ppo", cell="gru", **fields):
  config = (ppo_config if algo == "ppo" else pqn_config).get_config()
  config.update(dict(env_name=CHAIN, recurrent=cell, recurrent_size=8, num_envs=16, num_steps=16, num_minibatches=2,
                     update_epochs=2, hidden_sizes=(16,), total_timesteps=16 * 16 * 4))
  config.update(fields)
  return config


@pytest.mark.unit
def test_reset_clears_the_rows_that_ended_only():
  memory = (jnp.arange(6.0).reshape(3, 2), jnp.ones((3, 2)))  # an LSTM's (c, h)
  c, h = recurrent.reset(memory, jnp.array([False, True, False]))
  np.testing.assert_array_equal(c, [[0, 1], [0, 0], [4, 5]])
  np.testing.assert_array_equal(h, [[1, 1], [0, 0], [1, 1]])


@pytest.mark.unit
def test_the_rollout_resets_memory_after_the_step_that_ended_an_episode():
  """A policy whose memory counts its steps: 1, 2, ..., 6 over an episode of 6 steps, then 1 again after the reset."""
  env = envs.make(CHAIN)
  obs, env_state, keys = envs.reset_batch(env, jax.random.PRNGKey(0), jnp.arange(2))
  counter = lambda obs, keys, memory: (jnp.zeros(2, jnp.int32), None, memory + 1)
  start = jnp.array([0.0, 10.0])  # environment 1 carries memory from before (an episode begun in an earlier rollout)
  _, _, memory, steps = acting.recurrent_rollout(env, counter, env_state, obs, start, keys, 8)
  np.testing.assert_array_equal(steps.memory[:, 0], [1, 2, 3, 4, 5, 6, 1, 2])
  np.testing.assert_array_equal(steps.memory[:, 1], [11, 12, 13, 14, 15, 16, 1, 2])  # what it reached, pre-reset
  np.testing.assert_array_equal(steps.episode_end[:, 0], [0, 0, 0, 0, 0, 1, 0, 0])
  np.testing.assert_array_equal(memory, [2, 2])


@pytest.mark.unit
def test_whole_environment_minibatches_deal_one_environment_of_every_block_to_each():
  keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(8))
  order = recurrent.orders(keys, epochs=3, num_minibatches=4)  # blocks 0-3 and 4-7
  assert order.shape == (3, 4, 2)
  for epoch in np.asarray(order):
    assert sorted(epoch.ravel()) == list(range(8))  # every environment in exactly one minibatch
    assert all(0 <= m[0] < 4 <= m[1] < 8 for m in epoch)  # one of each block
  assert not all((order[0] == order[e]).all() for e in (1, 2))  # reshuffled each epoch
  x = jnp.arange(5 * 8).reshape(5, 8)  # (T, E): a leaf of a rollout
  taken = recurrent.minibatches(x, order[0])
  assert taken.shape == (4, 5, 2)
  np.testing.assert_array_equal(taken[1], x[:, order[0, 1]])  # whole sequences, every step in its order


@pytest.mark.program  # a rollout, its batch and the loss's replay compiled: most of an update
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_loss_replays_what_acting_computed_so_the_first_ratio_is_one(cell):
  """The first epoch's minibatches, replayed from the memory at the rollout's start with the episode ends as resets,
  give acting's log-probabilities and values (ratio 1); replayed without the resets, they do not."""
  config = _config(cell=cell)
  program = programs.build(config, sharding.make_mesh(jax.devices()[:1]))
  env, state = program.env, jax.device_get(program.state)
  net, params = actor_critic.network(config, env), state.learner.params
  observe = lambda obs: obs

  @jax.jit  # one program: op by op, the rollout, batch and replays compiled for 20 s
  def replayed(state):
    """(the rollout's episode ends; each first-epoch minibatch's ratios, values as acted, values replayed with the
    resets and without them)."""
    sampler = actor_critic._recurrent_sampler(net, params, observe, env)
    collected = rollout_learner.collect(state, sampler, config=config, env=env)
    batch = actor_critic._batch(net, params, observe, collected, state.actors.memory, ppo_learner.PPO,
                                config=config, env=env)
    order = rollout_learner.epoch_orders(collected.shuffle_key, config)
    minibatches = rollout_learner.split(batch, order[0], config)

    def replay(minibatch):
      distribution, value = actor_critic._outputs(net, params, minibatch, config=config)
      no_resets = minibatch.replace(episode_end=jnp.zeros_like(minibatch.episode_end))
      _, value_without_resets = actor_critic._outputs(net, params, no_resets, config=config)
      ratio = jnp.exp(distribution.log_prob(minibatch.action) - minibatch.log_prob)
      return ratio, minibatch.value, value, value_without_resets

    return batch.episode_end, [replay(jax.tree.map(lambda x: x[m], minibatches)) for m in range(config.num_minibatches)]

  episode_end, minibatches = replayed(state)
  assert 0 < int(episode_end.sum()) < episode_end.size  # episodes end inside the rollout
  for ratio, acted, value, value_without_resets in minibatches:
    np.testing.assert_allclose(ratio, 1.0, rtol=0, atol=1e-5)
    np.testing.assert_allclose(value, acted, rtol=0, atol=1e-5)
    assert np.max(np.abs(value_without_resets - acted)) > 1e-3  # 100 times the tolerance above


def test_memory_is_one_row_per_environment_split_over_devices():
  state = programs.build(_config("ppo", "lstm", num_envs=16), sharding.make_mesh()).state
  c, h = state.actors.memory
  assert c.shape == h.shape == (16, 8)
  assert h.sharding.spec == jax.sharding.PartitionSpec(sharding.DATA_AXIS)


@pytest.mark.unit
@pytest.mark.parametrize("fields,said", [
    ({"recurrent": "rnn"}, "recurrent='rnn' must be 'gru' or 'lstm', or '' for none"),
    ({"recurrent_size": 0}, "recurrent_size=0 must be a positive integer"),
    ({"num_envs": 16, "num_minibatches": 3}, "minibatches take whole environments"),
])
def test_mistakes_are_one_config_error(fields, said):
  with pytest.raises(ConfigError, match=said.replace("(", r"\(").replace(")", r"\)")):
    programs.build(_config(**fields), sharding.make_mesh(jax.devices()[:1]))


@pytest.mark.unit
def test_a_minibatch_count_that_does_not_split_a_device_share_suggests_one():
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices")
  with pytest.raises(ConfigError, match=r"each device's 2 of num_envs=16 .* \(try --config.num_minibatches=2"):
    programs.build(_config(num_minibatches=4), sharding.make_mesh())


def test_greedy_acting_threads_memory_through_the_contract():
  """`algorithms.act` with the memory `initial_memory` gives: the memory changes step to step, and acting on it
  differs from acting on fresh memory (the untrained network's actions depend on what it saw)."""
  config = _config()
  program = programs.build(config, sharding.make_mesh(jax.devices()[:1]))
  algorithm, env, learner = program.algorithm, program.env, jax.device_get(program.state.learner)
  act = functools.partial(algorithms.act, algorithm, learner, config=config, env=env, greedy=True)
  obs, env_state, keys = envs.reset_batch(env, jax.random.PRNGKey(1), jnp.arange(4))
  memory = algorithms.initial_memory(algorithm, 4, config=config, env=env)
  _, after = act(obs, None, memory)
  assert float(jnp.max(jnp.abs(after - memory))) > 0
  assert algorithms.initial_memory(algorithm, 4, config=_config(cell=""), env=env) is None


@pytest.mark.unit
def test_a_run_recorded_before_memory_existed_gets_the_fields_at_their_defaults():
  import ml_collections

  from distrl import configs

  recorded = ml_collections.ConfigDict({k: v for k, v in ppo_config.get_config().items()
                                        if k not in ("recurrent", "recurrent_size")})
  assert configs.with_new_fields(recorded) == ["recurrent", "recurrent_size"]
  assert (recorded.recurrent, recorded.recurrent_size) == ("", 128)
  assert configs.with_new_fields(ml_collections.ConfigDict({"algo": "examples.a2c"})) == []
