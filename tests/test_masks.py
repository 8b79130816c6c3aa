"""Action masks: the masked categorical policy and argmax on hand-computed numbers, and PPO honouring an
environment's mask (a pytree observation's `action_mask` leaf) in training and in greedy evaluation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distrl import envs
from distrl.rl import distributions
from distrl.runtime import trainer
from distrl.errors import ConfigError


@pytest.mark.unit
def test_a_masked_categorical_renormalises_over_the_allowed_actions():
  policy = distributions.Categorical(logits=jnp.log(jnp.array([[0.2, 0.3, 0.5]]))).masked(jnp.array([[True, False,
                                                                                                       True]]))
  # Allowed: 0.2 and 0.5 of a total 0.7, so p = (2/7, 0, 5/7).
  assert float(policy.log_prob(jnp.array([2]))[0]) == pytest.approx(math.log(5 / 7), rel=1e-6)
  assert float(policy.log_prob(jnp.array([0]))[0]) == pytest.approx(math.log(2 / 7), rel=1e-6)
  assert float(policy.entropy()[0]) == pytest.approx(-(2 / 7 * math.log(2 / 7) + 5 / 7 * math.log(5 / 7)), rel=1e-6)
  assert int(policy.mode()[0]) == 2
  samples = jax.vmap(lambda key: policy.sample(key)[0])(jax.random.split(jax.random.PRNGKey(0), 10_000))
  assert not np.any(samples == 1)
  assert np.mean(samples == 2) == pytest.approx(5 / 7, abs=0.02)
  # The entropy's gradient is finite although a log-probability is ~ -3.4e38.
  grad = jax.grad(lambda logits: distributions.Categorical(logits=logits).masked(jnp.array([True, False, True]))
                  .entropy())(jnp.zeros(3))
  assert np.all(np.isfinite(grad)) and grad[1] == 0.0
  unmasked = distributions.Categorical(logits=jnp.zeros(3))
  assert unmasked.masked(None) is unmasked


@pytest.mark.unit
def test_masked_argmax_picks_the_best_allowed_action():
  q = jnp.array([[1.0, 5.0, 2.0], [-3.0, -1.0, -2.0]])
  np.testing.assert_array_equal(distributions.masked_argmax(q, jnp.array([[True, False, True], [True, False, True]])),
                                [2, 2])
  np.testing.assert_array_equal(distributions.masked_argmax(q, None), [1, 1])


@pytest.mark.unit
def test_the_mask_is_found_in_the_flattened_observation_and_a_wrong_one_is_refused():
  env = envs.make("tests.user_code:masked_walk")
  assert env.observation_shape == (3,)  # action_mask (2), then position (1): dict keys in sorted order
  assert env.action_mask_slice == (0, 2)
  obs, _ = env.reset(jax.random.PRNGKey(0))
  np.testing.assert_array_equal(env.action_mask(obs[None]), [[True, False]])
  assert envs.make("tests.user_code:dict_observations").action_mask(obs) is None
  with pytest.raises(ConfigError, match=r"action_mask has 3 values, but the action space is Discrete\(2\)"):
    envs.make("tests.user_code:badly_masked_walk")


def test_ppo_never_takes_a_forbidden_action(ppo_cfg, tmp_path):
  """Walk rewards the position after each step, so anything unmasked drifts right; with right forbidden every
  training episode and the greedy evaluation walk left: -1 - 2 - 3 - 4 - 5 = -15 exactly, on every device."""
  n = jax.device_count()
  ppo_cfg.update(dict(env_name="tests.user_code:masked_walk", num_envs=n, num_steps=10, num_minibatches=2,
                      total_timesteps=4 * n * 10, log_every=2, eval_episodes=n))
  result = trainer.train(ppo_cfg, str(tmp_path))
  assert [h["train/episode_return"] for h in result.history] == [-15.0, -15.0]
  assert result.history[-1]["eval/return"] == -15.0
  assert result.history[-1]["loss/entropy"] == 0.0  # one allowed action: a certain policy


@pytest.mark.unit
def test_a_random_allowed_action_is_uniform_over_the_allowed_ones():
  mask = jnp.array([True, False, True, True])
  # k = 3 allowed: u in [0, 1/3) -> the first (0), [1/3, 2/3) -> the second (2), [2/3, 1) -> the third (3).
  choose = lambda u, m=mask: int(distributions.uniform_allowed(jnp.float32(u), m, 4))
  assert [choose(0.0), choose(0.3), choose(0.34), choose(0.66), choose(0.67), choose(0.999)] == [0, 0, 2, 2, 3, 3]
  assert [choose(u, None) for u in (0.0, 0.26, 0.74, 0.999)] == [0, 1, 2, 3]  # no mask: floor(4u)
  assert choose(0.5, jnp.zeros(4, bool)) == 0  # nothing allowed: action 0, not an index past the end
  u = jax.random.uniform(jax.random.PRNGKey(0), (30_000,))
  counts = np.bincount(distributions.uniform_allowed(u, jnp.broadcast_to(mask, (30_000, 4)), 4), minlength=4)
  # Each allowed action has p = 1/3: the standard deviation of its frequency is sqrt(p (1-p) / n) = 0.0027.
  assert counts[1] == 0
  np.testing.assert_allclose(counts[[0, 2, 3]] / 30_000, 1 / 3, atol=5 * 0.0027)


@pytest.mark.unit
def test_masked_targets_bootstrap_from_the_best_allowed_action():
  from distrl.rl import returns
  q = jnp.array([[1.0, 5.0, 2.0], [4.0, 3.0, 0.0]])
  mask = jnp.array([[True, False, True], [False, False, False]])
  np.testing.assert_array_equal(distributions.masked_max(q, mask), [2.0, 4.0])  # nothing allowed: action 0's, finite
  # y = r + discount * Q(s', a*): 1 + 0.5 * 2 with action 1 forbidden (5 without the mask); a terminal row has
  # discount 0 and nothing allowed, and its target is r exactly, not NaN.
  r, discount = jnp.array([1.0, 1.0]), jnp.array([0.5, 0.0])
  np.testing.assert_array_equal(returns.double_q_target(r, discount, q, None, mask), [2.0, 1.0])
  np.testing.assert_array_equal(returns.double_q_target(r, discount, q), [3.5, 1.0])
  # Double DQN: the online values choose among the allowed actions (action 2, not 0), the target values score it.
  online = jnp.array([[3.0, 9.0, 4.0], [0.0, 0.0, 0.0]])
  np.testing.assert_array_equal(returns.double_q_target(r, discount, q, online, mask), [2.0, 1.0])


@pytest.mark.parametrize("algo", ["dqn", "pqn"])
def test_value_based_agents_never_take_a_forbidden_action(algo, tmp_path):
  """As for PPO: with epsilon 1 every training action is a random *allowed* one, and the greedy evaluation's masked
  argmax walks left too, whatever the (never trained) Q-value of stepping right: every return is -15."""
  from distrl.configs import dqn as dqn_config, pqn as pqn_config
  n = jax.device_count()
  config = {"dqn": dqn_config, "pqn": pqn_config}[algo].get_config()
  config.update(dict(env_name="tests.user_code:masked_walk", num_envs=n, start_e=1.0, end_e=1.0, log_every=2,
                     eval_episodes=n, hidden_sizes=(16,)))
  if algo == "dqn":
    config.update(dict(buffer_size=20 * n, batch_size=8, train_frequency=1, learning_starts=0,
                       total_timesteps=4 * n * 5, target_update_interval=10))
  else:
    config.update(dict(num_steps=10, num_minibatches=2, total_timesteps=4 * n * 10))
  result = trainer.train(config, str(tmp_path))
  returns = [h["train/episode_return"] for h in result.history if "train/episode_return" in h]
  assert len(returns) >= 2 and set(returns) == {-15.0}
  assert result.history[-1]["eval/return"] == -15.0
  assert np.isfinite(result.history[-1]["loss/total"]) and result.history[-1]["loss/total"] > 0
