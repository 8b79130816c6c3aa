"""The actor: a thread that steps this process's host environments with the policy and hands whole rollouts to the
learner through a queue (of `lag` rollouts, at least one).

Rollout u (the one update u learns from) acts with the parameters of update max(first, u - lag), where `first` is the
update this start began from: with `lag = 0` acting waits for the learner, with `lag = 1` (Cleanba's) rollout u + 1
is collected while update u learns, with larger lags (for an algorithm that corrects for them, as V-trace does) the
actor runs further ahead. The actor waits for exactly that version, so the same seed and layout give the same
rollouts, however fast either side runs. Its random streams are the compiled path's: each environment's key splits
into (next, rollout, minibatch orders) per iteration, the rollout key into one key per step, and each of those into
the policy's and the environment's.
"""

import dataclasses
import functools
import queue
import threading
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from distrl import sharding
from distrl.envs.host import Batch, Stepped
from distrl.rl import acting, rollout_learner

_POLL_SECONDS = 0.25  # how often a waiting side looks whether the other has failed or closed


@dataclasses.dataclass
class Rollout:
  update: int  # the update that learns from it
  steps: acting.Step  # numpy leaves (T, E_local, ...)
  last_obs: np.ndarray  # (E_local, ...): the observations the rollout ends on
  version: int  # the update whose parameters acted


class Closed(Exception):
  """The actor was closed while a side waited."""


def _keys(key: jax.Array, num_steps: int):
  """(next keys (E, 2), every step's (policy, environment) keys (T, E, 2, 2)) of an iteration, as `acting` splits."""
  next_key, rollout_key, _ = rollout_learner.iteration_keys(key)
  step_keys = jnp.swapaxes(jax.vmap(functools.partial(jax.random.split, num=num_steps))(rollout_key), 0, 1)
  return next_key, jax.vmap(jax.vmap(jax.random.split))(step_keys)


class Actor:
  """Steps `envs` with `policy(learner, obs, keys) -> (action, action for the environment, extras)` on `device`."""

  def __init__(self, envs: Batch, policy: Callable, *, num_steps: int, lag: int, device):
    self.envs, self.num_steps, self.lag, self.device = envs, num_steps, lag, device
    self._policy = jax.jit(policy)
    self._split = jax.jit(functools.partial(_keys, num_steps=num_steps))
    # Up to `lag` rollouts wait for the learner, so that acting never waits while it may run ahead.
    self._rollouts: queue.Queue[Rollout] = queue.Queue(maxsize=max(1, lag))
    self._params: dict[int, Any] = {}
    self._changed = threading.Condition()
    self._error: BaseException | None = None
    self._closed = False
    self._thread: threading.Thread | None = None
    self.versions: list[tuple[int, int]] = []  # (update, version that acted) of every rollout: for the lag's test

  def start(self, learner, update: int, keys: np.ndarray) -> None:
    """Starts acting from `update` with its parameters (`learner`) and the environments' keys (E_local, 2)."""
    self.first = update
    self.publish(update, learner)
    self._thread = threading.Thread(target=self._run, args=(update, keys), name="distrl-actor", daemon=True)
    self._thread.start()

  def publish(self, update: int, learner) -> None:
    """The learner after `update` updates, for the rollouts that act with it."""
    # A copy through the host: the learner's buffers are donated to its next update, and a device-to-device put of a
    # replicated array may alias them.
    learner = jax.device_put(sharding.to_host(learner), self.device)
    with self._changed:
      self._params[update] = learner
      for old in [v for v in self._params if v < update - self.lag]:
        del self._params[old]
      self._changed.notify_all()

  def next(self) -> Rollout:
    """The next rollout (blocking); the actor's failure is raised here, once the rollouts made before it are taken
    (so a failure is said at the update whose rollout it cut short)."""
    while True:
      failed = self._error is not None
      try:
        return self._rollouts.get_nowait() if failed else self._rollouts.get(timeout=_POLL_SECONDS)
      except queue.Empty:
        if failed:
          raise self._error from None
        if self._closed:
          raise Closed()

  def close(self) -> None:
    with self._changed:
      self._closed = True
      self._changed.notify_all()
    if self._thread is not None:
      self._thread.join(timeout=10)
    self.envs.close()

  def _wait_for(self, version: int):
    with self._changed:
      while version not in self._params:
        if self._closed:
          raise Closed()
        self._changed.wait(_POLL_SECONDS)
      return self._params[version]

  def _run(self, update: int, keys) -> None:
    try:
      with jax.default_device(self.device):
        self._act(update, keys)
    except Closed:
      pass
    except BaseException as error:  # handed to the learner, which raises it on its side
      self._error = error

  def _act(self, update: int, keys) -> None:
    key = jax.device_put(jnp.asarray(keys), self.device)
    obs = self.envs.reset()
    while not self._closed:
      version = max(self.first, update - self.lag)
      learner = self._wait_for(version)
      key, step_keys = self._split(key)
      steps, obs = self._rollout(learner, obs, step_keys)
      rollout = Rollout(update=update, steps=steps, last_obs=obs, version=version)
      while not self._closed:
        try:
          self._rollouts.put(rollout, timeout=_POLL_SECONDS)
          break
        except queue.Full:
          pass
      self.versions.append((update, version))
      update += 1

  def _rollout(self, learner, obs: np.ndarray, step_keys: jax.Array):
    """`num_steps` steps of every environment; -> (steps with numpy leaves (T, E, ...), the last observations)."""
    records = []
    step_keys = np.asarray(step_keys)  # one transfer: indexing the device array would cost two dispatches a step
    for t in range(self.num_steps):
      action, env_action, extras = self._policy(learner, obs, step_keys[t, :, 0])
      stepped: Stepped = self.envs.step(np.asarray(env_action), step_keys[t, :, 1])
      records.append((obs, action, extras, stepped))
      obs = stepped.obs
    stack = lambda *xs: np.stack([np.asarray(x) for x in xs])
    obs_t, action, extras, stepped = (jax.tree.map(stack, *field) for field in zip(*records))  # Stepped: a pytree
    steps = acting.Step(obs=obs_t, action=action, extras=extras, reward=stepped.reward,
                        terminated=stepped.terminated, episode_end=stepped.episode_end, final_obs=stepped.final_obs,
                        episode_return=stepped.episode_return, episode_length=stepped.episode_length,
                        episode_metrics={}, counted=stepped.counted)
    return steps, obs
