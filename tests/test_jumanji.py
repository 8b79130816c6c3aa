"""Jumanji through `envs.make("jumanji:...")`: TimeStep semantics (terminal vs time limit), episode statistics equal
to Jumanji's own, action masks, and a short PPO run on Maze-v0 on one device and on eight."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jumanji = pytest.importorskip("jumanji", reason="the jumanji extra is not installed: pip install -e '.[jumanji]'")

from distrl.configs import ppo as ppo_config  # noqa: E402
from distrl import envs, trainer  # noqa: E402
from distrl.errors import ConfigError  # noqa: E402

# Fixed action sequences: Maze moves about (0 up, 1 right, 2 down, 3 left); Snake heads up into the wall of its 12
# rows within 12 steps.
ACTIONS = {"Maze-v0": [0, 1, 2, 3, 3, 3, 0, 0, 1, 1, 2, 1], "Snake-v1": [0] * 12}


def _flat(observation) -> np.ndarray:
  return np.concatenate([np.ravel(np.asarray(x, np.float32)) for x in jax.tree.leaves(observation)])


@pytest.mark.parametrize("name, kwargs", [("Maze-v0", {"time_limit": 8}), ("Snake-v1", {})])
def test_episodes_end_as_jumanji_says_and_score_what_jumanji_scores(name, kwargs):
  """A fixed action sequence from the same reset key through distrl's adapter and through Jumanji itself: each first
  episode's return and length match Jumanji's sum of rewards up to its LAST step; LAST with discount 0 is
  terminated (no bootstrap), LAST with discount 1 (the time limit) truncated only (bootstrapped), and the step's final_observation is Jumanji's
  observation before the reset. Maze with an 8-step limit ends episodes by time and some at the target; Snake runs
  into a wall."""
  env = envs.make(f"jumanji:{name}", kwargs)
  raw = jumanji.make(name, **kwargs)
  actions = jnp.array(ACTIONS[name])
  keys = jax.random.split(jax.random.PRNGKey(3), 16)

  @jax.jit
  def both(key):
    obs, state = env.reset(key)
    raw_state, timestep = raw.reset(key)

    def step(carry, action):
      state, raw_state = carry
      _, state, reward, terminated, truncated, info = env.step(key, state, action)
      raw_state, timestep = raw.step(raw_state, action)
      ours = dict(reward=reward, terminated=terminated, truncated=truncated, end=info["returned_episode"],
                  episode_return=info["returned_episode_returns"], episode_length=info["returned_episode_lengths"],
                  final_obs=info["final_observation"])
      return (state, raw_state), (ours, timestep)

    return obs, timestep.observation, jax.lax.scan(step, (state, raw_state), actions)[1]

  kinds = set()
  for key in keys:
    obs, raw_obs, (ours, timesteps) = jax.tree.map(np.asarray, both(key))
    np.testing.assert_array_equal(obs, _flat(raw_obs))
    last = timesteps.step_type == 2  # StepType.LAST
    end = int(np.argmax(last)) if last.any() else None
    if end is None:  # no episode ended within the sequence: nothing to compare but the flags
      assert not ours["end"].any()
      continue
    np.testing.assert_array_equal(ours["reward"][:end + 1], timesteps.reward[:end + 1])
    assert ours["end"][:end + 1].tolist() == [False] * end + [True]
    assert ours["episode_return"][end] == pytest.approx(timesteps.reward[:end + 1].sum())
    assert ours["episode_length"][end] == end + 1
    terminal = timesteps.discount[end] == 0
    assert bool(ours["terminated"][end]) == terminal  # truncated is also set where the limit and a terminal meet
    assert terminal or bool(ours["truncated"][end])
    np.testing.assert_array_equal(ours["final_obs"][end], _flat(jax.tree.map(lambda x: x[end], timesteps.observation)))
    kinds.add("terminated" if terminal else "truncated")
  assert kinds == ({"terminated", "truncated"} if name == "Maze-v0" else {"terminated"}), kinds


def test_a_maze_observation_is_flattened_with_its_action_mask():
  env = envs.make("jumanji:Maze-v0")
  # agent (row, col), target (row, col), walls 10x10, then the mask of 4 moves, then the step count.
  assert env.observation_shape == (4 + 100 + 4 + 1,) and env.action_mask_slice == (104, 108)
  assert env.num_actions == 4 and env.max_steps == 100


@pytest.mark.parametrize("name, kwargs, message", [
    ("Snake-v2", {}, "unknown Jumanji environment 'Snake-v2': did you mean jumanji:Snake-v1?"),
    ("Cleaner-v0", {}, "jumanji:Cleaner-v0 takes MultiDiscreteArray actions"),
    ("Game2048-v1", {}, "jumanji:Game2048-v1 has no time limit"),
    ("Snake-v1", {"num_rowz": 6}, "jumanji:Snake-v1 with env_kwargs {'num_rowz': 6} failed: TypeError"),
])
def test_what_jumanji_cannot_train_is_one_clear_error(name, kwargs, message):
  with pytest.raises(ConfigError) as error:
    envs.make(f"jumanji:{name}", kwargs)
  assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow
@pytest.mark.parametrize("devices", [1, 8])
def test_ppo_learns_to_walk_mazes(devices, tmp_path):
  """Maze-v0: a new 10x10 maze each episode, reward 1 for reaching the target within 100 steps. A uniformly random
  policy over the allowed moves reaches it in 30% of episodes (mean return 0.299 +- 0.458 over 3,043 episodes,
  256 environments x 1000 steps, measured with this adapter); a mean over the >= 500 episodes of the last log
  interval has a standard error of ~0.02, so 0.45 is more than seven of them above chance. The preset's network
  with 64 environments reaches ... in development."""
  if devices > jax.device_count():
    pytest.skip(f"needs {devices} devices")
  config = ppo_config.get_config("jumanji:Maze-v0")
  config.update(dict(num_envs=64, num_steps=64, total_timesteps=20 * 64 * 64, log_every=10, eval_every=20,
                     eval_episodes=64))
  result = trainer.train(config, str(tmp_path), devices=jax.devices()[:devices])
  returns = [h["train/episode_return"] for h in result.history]
  assert returns[0] < 0.4 and returns[-1] >= 0.45, returns
