"""Craftax through `envs.make("craftax:...")`: both presets build; on a fixed action sequence the episode statistics
and achievements equal Craftax's own, a death is terminated and Craftax's time limit truncated (bootstrapped from
the observation reached).

No PPO run here: on this 2-core CPU a Craftax step that resets itself costs a world generation (Craftax's
`reset_env`: ~256 a second for 64 environments, against ~8,700 steps a second of `step_env` alone), and the
training program compiles in minutes, so a run that beats the random policy does not fit the suite's test
budget (see BUILD.md, "Suites")."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from craftax.craftax_env import make_craftax_env_from_name

from distrl import envs
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


def test_episodes_end_as_craftax_says_and_score_what_craftax_scores():
  """Random (but fixed) action sequences from the same keys through distrl's adapter and through Craftax's own
  step (`step_env` from the same per-step key, as Craftax's auto-reset step calls it). Each first episode ends
  where Craftax's `done` first holds: before step 100 a death (terminated: no bootstrap; random play dies that
  early in some of the 16 episodes), at step 100 the time limit (truncated: bootstrapped from Craftax's observation
  after step 100). Return, length and every achievement (0 or 100) at the end equal Craftax's rewards summed to
  there, the step count and its info."""
  env = envs.make(f"craftax:{NAME}", {"max_timesteps": LIMIT})
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
