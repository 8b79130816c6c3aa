"""Acting in the environments, shared by every algorithm: the rollout and its episode statistics.

Each environment steps with its own random stream (its key in `actors`, derived from its global
index), so a rollout is the same whichever device runs it.
"""

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from distrl import sharding
from distrl.envs import Env
from distrl.rl import recurrent


@struct.dataclass
class Step:
  """One step of every local environment: leaves shaped (E, ...), stacked by `rollout` to (T, E, ...)."""

  obs: Any  # the observation the action was chosen on
  action: jax.Array  # as the policy chose it (continuous actions unclipped; the environment got them clipped)
  extras: Any  # whatever the policy returned beside the action (e.g. log-probabilities)
  reward: jax.Array
  terminated: jax.Array  # the step reached a terminal state: no bootstrap
  episode_end: jax.Array  # terminated or truncated: the environment reset after this step
  final_obs: Any  # the observation the step reached, before any reset: bootstrap from it
  episode_return: jax.Array  # return of the episode that ended here (valid where episode_end)
  episode_length: jax.Array
  episode_metrics: dict  # the environment's own statistics of the episode that ended here (info["episode_metrics"])
  memory: Any = None  # a recurrent policy's memory after the step, before any reset (`recurrent_rollout`); else None
  # Where an episode for the statistics ended, if not at every episode_end: an Atari game over under envpool's
  # episodic life, whose lost lives end episodes for learning (host environments); else None.
  counted: jax.Array | None = None


Policy = Callable[[Any, jax.Array], tuple[jax.Array, Any]]  # (obs (E, ...), keys (E, 2)) -> (action, extras)
# With memory: (obs, keys, memory (E, ...)) -> (action, extras, the memory after this step).
RecurrentPolicy = Callable[[Any, jax.Array, Any], tuple[jax.Array, Any, Any]]


def rollout(env: Env, policy: Policy, env_state, obs, keys: jax.Array, num_steps: int):
  """`num_steps` steps of every local environment; -> (env_state, obs, steps (T, E, ...)).

  `keys` (E, 2) are this rollout's keys, one per environment; each environment splits its key
  into one per step, and each of those into the policy's key and the environment's.
  """
  with_memory = lambda obs, keys, memory: (*policy(obs, keys), None)
  env_state, obs, _, steps = recurrent_rollout(env, with_memory, env_state, obs, None, keys, num_steps)
  return env_state, obs, steps


def recurrent_rollout(env: Env, policy: RecurrentPolicy, env_state, obs, memory, keys: jax.Array, num_steps: int):
  """`rollout` of a policy with memory (leaves (E, ...), `distrl.rl.recurrent`); -> (env_state, obs, memory, steps).

  The policy returns each step's memory beside its action; where the step ended an episode, the memory is reset to
  zeros before the next step (the returned memory too). Each Step's `memory` is the policy's, before that reset:
  the memory the step's `final_obs` was reached with.
  """
  def step(carry, keys):
    env_state, obs, memory = carry
    act_keys, env_keys = keys[:, 0], keys[:, 1]
    with jax.named_scope("policy"):  # named scopes: the parts benchmarks/profile.py times
      action, extras, memory = policy(obs, act_keys, memory)
    with jax.named_scope("environment"):
      next_obs, env_state, reward, terminated, _, info = env.step_batch(env_keys, env_state, env.clip(action))
    transition = Step(obs=obs, action=action, extras=extras, reward=reward, terminated=terminated,
                      episode_end=info["returned_episode"], final_obs=info["final_observation"],
                      episode_return=info["returned_episode_returns"],
                      episode_length=info["returned_episode_lengths"],
                      episode_metrics=info.get("episode_metrics", {}), memory=memory)
    return (env_state, next_obs, recurrent.reset(memory, info["returned_episode"])), transition

  with jax.named_scope("acting"):
    step_keys = jnp.swapaxes(jax.vmap(functools.partial(jax.random.split, num=num_steps))(keys), 0, 1)  # (T, E, 2)
    # Every step's policy and environment keys at once, before the loop: one vectorised split, not one per step.
    act_env_keys = jax.vmap(jax.vmap(jax.random.split))(step_keys)  # (T, E, 2, 2)
    (env_state, obs, memory), steps = jax.lax.scan(step, (env_state, obs, memory), act_env_keys)
  return env_state, obs, memory, steps


def episode_metrics(steps: Step) -> dict:
  """Return and length of every episode that ended in `steps`, and the environment's own episode statistics
  (`train/<name>`, e.g. Craftax's achievements), each averaged over those episodes on all devices, as (sum, count)
  metrics."""
  with jax.named_scope("metrics"):
    ends = (steps.episode_end if steps.counted is None else steps.counted).astype(jnp.float32)
    per_episode = {"train/episode_return": steps.episode_return, "train/episode_length": steps.episode_length,
                   **{f"train/{name}": value for name, value in steps.episode_metrics.items()}}
    episodes, sums = sharding.psum((jnp.sum(ends), {name: jnp.sum(value * ends) for name, value in per_episode.items()}))
  return {name: (total, episodes) for name, total in sums.items()}
