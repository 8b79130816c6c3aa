"""Craftax through `envs.make("craftax:...")`: both presets build; on a fixed action sequence the episode statistics
and achievements equal Craftax's own, a death is terminated and Craftax's time limit truncated (bootstrapped from
the observation reached); a short PPO run on every device (8 emulated) beats the random policy.

The PPO run fits the suite because a batch of Craftax environments generates worlds only for those whose episodes
ended (`reset_in_batches`, tests/test_batch_reset.py): with a reset computed for every environment at every step, as
`vmap` of gymnax's step does, 64 environments ran ~215 steps a second on this 2-core CPU; now ~7,500 with PPO."""

import jax
import numpy as np
import pytest

from distrl import envs
from distrl.runtime import trainer
from distrl.configs import ppo as ppo_config
from tests.suites import assert_bootstraps_only_if_truncated

NAME = "Craftax-Classic-Symbolic-v1"
LIMIT = 100  # env_kwargs max_timesteps: Craftax's own time limit, shortened
STEPS = 104


@pytest.mark.parametrize("preset, observation_size, num_actions", [(f"craftax:{NAME}", 1345, 17),
                                                                   ("craftax:Craftax-Symbolic-v1", 8268, 43)])
def test_the_presets_build(preset, observation_size, num_actions):
  config = ppo_config.get_config(preset)
  env = envs.make(config.env_name, config.env_kwargs)
  assert env.observation_shape == (observation_size,) and env.num_actions == num_actions
  assert env.max_steps == (10_000 if "Classic" in preset else 100_000) and env.action_mask_slice is None
  assert env.without_reset is not None  # a batch resets only its ended environments (tests/test_batch_reset.py)


def test_episodes_end_as_craftax_says_and_score_what_craftax_scores():
  """Random (but fixed) action sequences from the same keys through distrl's adapter and through Craftax's own
  step (`step_env` from the same per-step key, as Craftax's auto-reset step calls it). Each first episode ends
  where Craftax's `done` first holds: before step 100 a death (terminated: no bootstrap; random play dies that
  early in some of the 16 episodes), at step 100 the time limit (truncated: bootstrapped from Craftax's observation
  after step 100). Return, length and every achievement (0 or 100) at the end equal Craftax's rewards summed to
  there, the step count and its info."""
  env = envs.make(f"craftax:{NAME}", {"max_timesteps": LIMIT})
  from craftax.craftax_env import make_craftax_env_from_name  # here: importing Craftax takes seconds

  raw = make_craftax_env_from_name(NAME, auto_reset=False)
  params = raw.default_params.replace(max_timesteps=LIMIT)

  @jax.vmap
  def both(key, actions):
    obs, state = env.reset(key)
    raw_state = raw.reset_env(key, params)[1]

    def step(carry, inputs):
      obs, state, raw_state = carry
      key, action = inputs
      next_obs, state, reward, terminated, truncated, info = env.step(key, state, action)
      raw_obs, raw_state, raw_reward, done, raw_info = raw.step_env(jax.random.split(key)[0], raw_state, action, params)
      ours = dict(obs=obs, reward=reward, terminated=terminated, truncated=truncated, end=info["returned_episode"],
                  episode_return=info["returned_episode_returns"], episode_length=info["returned_episode_lengths"],
                  final_obs=info["final_observation"], metrics=info["episode_metrics"])
      theirs = dict(obs=raw_obs, reward=raw_reward, done=done,
                    achievements={k: v for k, v in raw_info.items() if k.startswith("Achievements/")})
      return (next_obs, state, raw_state), (ours, theirs)

    return jax.lax.scan(step, (obs, state, raw_state), (jax.random.split(key, STEPS), actions))[1]

  keys = jax.random.split(jax.random.PRNGKey(0), 16)
  actions = jax.random.randint(jax.random.PRNGKey(1), (16, STEPS), 0, env.num_actions)
  ours_all, theirs_all = jax.tree.map(np.asarray, jax.jit(both)(keys, actions))
  kinds = []
  for i in range(len(keys)):
    ours, theirs = jax.tree.map(lambda x: x[i], (ours_all, theirs_all))
    end = int(np.argmax(theirs["done"]))
    assert theirs["done"].any() and end < LIMIT
    terminal = end + 1 < LIMIT  # done before the time limit: the player died
    np.testing.assert_array_equal(ours["reward"][:end + 1], theirs["reward"][:end + 1])
    assert ours["end"][:end + 1].tolist() == [False] * end + [True]
    assert ours["episode_return"][end] == pytest.approx(theirs["reward"][:end + 1].sum())
    assert ours["episode_length"][end] == end + 1
    assert bool(ours["terminated"][end]) == terminal and not ours["terminated"][:end].any()
    assert bool(ours["truncated"][end]) == (not terminal) and not ours["truncated"][:end].any()
    np.testing.assert_array_equal(ours["final_obs"][end], theirs["obs"][end])
    achieved = {name[len("Achievements/"):]: float(value[end]) for name, value in theirs["achievements"].items()}
    assert len(achieved) == 22 and {name[len("achievements/"):]: float(value[end])
                                    for name, value in ours["metrics"].items()} == achieved
    assert_bootstraps_only_if_truncated(reward=ours["reward"], obs=ours["obs"], final_obs=ours["final_obs"],
                                        terminated=ours["terminated"], episode_end=ours["end"], end=end,
                                        terminal=terminal, reached_obs=theirs["obs"][end])
    kinds.append("terminated" if terminal else "truncated")
  assert set(kinds) == {"terminated", "truncated"}, kinds


@pytest.mark.slow
def test_ppo_beats_the_random_policy(tmp_path):
  """Craftax-Classic with 100-step episodes (`max_timesteps`), reward 1 per new achievement and +-0.1 per health
  point: uniformly random actions score 1.55 +- 1.15 (680 episodes: 64 environments x 1,000 steps through this
  adapter, measured in development with the same envs.make path). A log interval of 10 updates holds ~230 episodes
  (20,480 steps of ~89-step episodes), a standard error of 1.15 / sqrt(230) = 0.08 under the random policy, so 2.5
  is more than ten of them above chance. The preset's PPO, smaller (64 environments x 32 steps, a 128x128 MLP,
  lr 1e-3), scores ~2.0 over its first interval (still learning) and ~3.5 over its third (61,440 steps, 20 s on this
  2-core CPU with the compilation cached, ~50 s without), on one device and on eight; ~4.0 at 200k steps. It
  runs on every device: one device trains the same up to float rounding (resets in batches: test_sharding.py)."""
  config = ppo_config.get_config(f"craftax:{NAME}")
  config.update(dict(num_envs=64, num_steps=32, num_minibatches=4, total_timesteps=30 * 64 * 32, lr=1e-3,
                     hidden_sizes=(128, 128), log_every=10, eval_every=30, eval_episodes=8, checkpoint_every=30))
  config.env_kwargs = {"max_timesteps": LIMIT}
  result = trainer.train(config, str(tmp_path))  # every device
  returns = [round(h["train/episode_return"], 2) for h in result.history]
  assert len(returns) == 3 and returns[-1] >= 2.5, returns
  # Achievements are logged as the percentage of the interval's episodes that unlocked them. Random play collects
  # wood in 39.1% of its episodes (the same 680), a standard error of 3.2 points over ~230 episodes; the trained
  # policy in ~60-67%.
  assert 50 < result.history[-1]["train/achievements/collect_wood"] <= 100, result.history[-1]
