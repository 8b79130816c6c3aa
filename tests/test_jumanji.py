"""Jumanji through `envs.make("jumanji:...")`: TimeStep semantics (terminal vs time limit), episode statistics equal
to Jumanji's own, action masks, and a short PPO run on Snake-v1 on every device (8 emulated)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distrl.configs import ppo as ppo_config
from distrl import envs
from distrl.runtime import trainer
from distrl.errors import ConfigError

# Fixed action sequences: Maze moves about (0 up, 1 right, 2 down, 3 left); Snake heads up into the wall of its 12
# rows within 12 steps.
ACTIONS = {"Maze-v0": [0, 1, 2, 3, 3, 3, 0, 0, 1, 1, 2, 1], "Snake-v1": [0] * 12}


def _flat(observation) -> np.ndarray:
  return np.concatenate([np.ravel(np.asarray(x, np.float32)) for x in jax.tree.leaves(observation)])


@pytest.mark.parametrize("name, kwargs", [("Maze-v0", {"time_limit": 8}), ("Maze-v0", {"max_steps_in_episode": 5}),
                                          ("Snake-v1", {})])
def test_episodes_end_as_jumanji_says_and_score_what_jumanji_scores(name, kwargs):
  """A fixed action sequence from the same reset key through distrl's adapter and through Jumanji itself. Each first
  episode ends where Jumanji's TimeStep is LAST or distrl's limit (`max_steps_in_episode`) comes first; its return
  and length are Jumanji's sum of rewards and step count up to there. LAST with discount 0 is terminated (no
  bootstrap); an episode cut by distrl's limit is truncated only (bootstrapped from final_observation, Jumanji's
  observation before the reset). Jumanji's discrete environments end their own time limit with discount 0 (Maze with
  time_limit=8: terminated at step 8; their observations carry the step count), so only distrl's shorter limit
  truncates (Maze with max_steps_in_episode=5); Snake heading up runs into the wall (terminated)."""
  env = envs.make(f"jumanji:{name}", kwargs)
  import jumanji  # the test extra installs every suite; here, as importing it takes seconds

  raw = jumanji.make(name, **{k: v for k, v in kwargs.items() if k != "max_steps_in_episode"})
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
    cut = np.arange(len(actions)) + 1 >= env.max_steps  # distrl's own limit
    end = int(np.argmax(last | cut)) if (last | cut).any() else None
    if end is None:  # no episode ended within the sequence: nothing to compare but the flags
      assert not ours["end"].any()
      continue
    np.testing.assert_array_equal(ours["reward"][:end + 1], timesteps.reward[:end + 1])
    assert ours["end"][:end + 1].tolist() == [False] * end + [True]
    assert not ours["terminated"][:end].any() and not ours["truncated"][:end].any()
    assert ours["episode_return"][end] == pytest.approx(timesteps.reward[:end + 1].sum())
    assert ours["episode_length"][end] == end + 1
    terminal = bool(last[end] and timesteps.discount[end] == 0)
    assert bool(ours["terminated"][end]) == terminal
    # Truncated where distrl's limit is reached (also alongside a terminal step: terminated decides the bootstrap).
    assert bool(ours["truncated"][end]) == bool(cut[end] or (last[end] and timesteps.discount[end] > 0))
    np.testing.assert_array_equal(ours["final_obs"][end], _flat(jax.tree.map(lambda x: x[end], timesteps.observation)))
    kinds.add("terminated" if terminal else "truncated")
  if "max_steps_in_episode" in kwargs:
    assert "truncated" in kinds, kinds  # (an episode may also reach the target within 5 steps)
  else:
    assert kinds == {"terminated"}, kinds


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
    ("Snake-v1", {"max_steps_in_episode": 0}, "env_kwargs max_steps_in_episode=0 must be a positive number of steps"),
    ("Snake-v1", {"max_steps_in_episode": -5}, "env_kwargs max_steps_in_episode=-5 must be a positive number"),
])
def test_what_jumanji_cannot_train_is_one_clear_error(name, kwargs, message):
  with pytest.raises(ConfigError) as error:
    envs.make(f"jumanji:{name}", kwargs)
  assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow
def test_ppo_learns_to_eat_on_a_small_snake_board(tmp_path):
  """Snake on a 6x6 board, 100 steps an episode, reward 1 per fruit: a uniformly random policy over the allowed
  moves scores 1.71 +- 1.57 (2,560 episodes: 256 environments x 1,000 steps through this adapter, measured in
  development with the same envs.make path). The last log interval holds ~50 episodes (5,120 steps of ~100-step
  episodes), a standard error of 1.57 / sqrt(50) = 0.22 under the random policy, so 2.6 is four of them above
  chance; the first interval (the untrained policy) stays below it. PPO with the preset's normalised observations
  and a small network reaches ~3.3 in 40,960 steps (~30 s on this 2-core CPU, compile included)."""
  config = ppo_config.get_config("jumanji:Snake-v1")
  config.update(dict(num_envs=32, num_steps=32, num_minibatches=4, total_timesteps=40 * 32 * 32, lr=1e-3,
                     hidden_sizes=(64, 64), log_every=5, eval_every=40, eval_episodes=8))
  config.env_kwargs = {"num_rows": 6, "num_cols": 6, "time_limit": 100}
  result = trainer.train(config, str(tmp_path))  # every device
  returns = [round(h["train/episode_return"], 2) for h in result.history]
  assert returns[0] < 2.6 <= returns[-1], returns
