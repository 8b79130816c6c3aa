"""best/: the state of the best greedy evaluation so far, updated as evaluations come.

A run keeps the state of its best evaluation return (the mean over its agents). A sweep keeps one state in which
every member's agents hold that member's learner of its own best evaluation (the mean over its seeds), so that
`distrl.evaluate --best --member=K` plays member K at its best: a save after each evaluation where some member
improved, its metrics each member's best return and update (`eval/return/member_<m>`, `update/member_<m>`) and their
mean as `eval/return`, which therefore never falls: the newest save is the best.
"""

import json
import os
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from distrl.runtime.checkpoint import Checkpoints, DamagedCheckpoint


def member_key(name: str, member: int) -> str:
  return f"{name}/member_{member}"


def member_updates(directory: str, update: int, members: int) -> list[int] | None:
  """The update of each member's best in a sweep's best/ checkpoint `update`; None where its metrics do not say."""
  try:
    with open(os.path.join(directory, str(update), "metrics", "metrics")) as f:
      kept = json.load(f)
    return [int(kept[member_key("update", m)]) for m in range(members)]
  except (OSError, ValueError, KeyError, TypeError):
    return None


def texts(kept: dict, members: int) -> list[str]:
  """Each member's best evaluation and its update ("473.2 (40)") from a sweep's best/ metrics; "" where missing."""
  said = []
  for m in range(members):
    try:
      said.append(f"{kept[member_key('eval/return', m)]:.4g} ({kept[member_key('update', m)]})")
    except KeyError:
      said.append("")
  return said


@jax.jit
def _merge(improved: jax.Array, new, old):
  """Per agent (the learner's leading axis), `new` where `improved`, else `old`; always new buffers."""
  pick = lambda n, o: jnp.where(improved.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)
  return jax.tree.map(pick, new, old)


class Best:
  """Keeps best/ (`checkpoints`) for a run of `members` sweep members of `seeds` seeds each."""

  def __init__(self, checkpoints: Checkpoints, members: int, seeds: int, say: Callable[[str], None] = print):
    self.checkpoints, self.members, self.seeds, self.say = checkpoints, members, seeds, say
    self._returns: np.ndarray | None = None  # each member's best evaluation (a sweep), read from best/ at first use
    self._updates: np.ndarray | None = None
    self._learner = None  # the learner saved last (a sweep), on the devices

  def keep(self, update: int, state, agent_returns: np.ndarray) -> None:
    """After the evaluation of `update` (`state` in the global layout; each agent's mean return, shaped (A,) or
    ()), saves best/ where it improved."""
    if self.members == 1:
      mean = float(np.mean(np.atleast_1d(agent_returns)))
      best = self.checkpoints.best()
      if best is None or mean > best[1]:  # a tie keeps the earlier best: best/ loses no best
        self.checkpoints.save(update, state, metrics={"eval/return": mean})
      return
    if self._returns is None:
      trouble = self._open(state)
      if trouble:
        self.say(f"warning: {trouble}")
    returns = np.asarray(agent_returns, np.float64).reshape(self.members, self.seeds).mean(1)
    improved = returns > self._returns
    if not improved.any():
      return
    self._returns = np.where(improved, returns, self._returns)
    self._updates = np.where(improved, update, self._updates)
    old = state.learner if self._learner is None else self._learner
    self._learner = _merge(jnp.asarray(np.repeat(improved, self.seeds)), state.learner, old)
    self.checkpoints.save(update, state.replace(learner=self._learner), metrics=self.metrics())

  def metrics(self) -> dict[str, float]:
    """best/'s metrics of a sweep: each member's best return and its update, and their mean."""
    kept = {"eval/return": float(self._returns.mean())}
    for m in range(self.members):
      kept[member_key("eval/return", m)] = float(self._returns[m])
      kept[member_key("update", m)] = int(self._updates[m])
    return kept

  def _open(self, state) -> Optional[str]:
    """A sweep's bests so far: none, or what best/ holds (a resumed run). A best/ that cannot be read is started
    again (each member's next evaluation its best so far), and the reason returned, for the caller to say."""
    self._returns, self._updates = np.full(self.members, -np.inf), np.zeros(self.members, np.int64)
    best = self.checkpoints.best()
    if best is None:
      return None
    try:
      kept = self.checkpoints.metrics(best[0])
      returns = np.array([kept[member_key("eval/return", m)] for m in range(self.members)])
      updates = np.array([kept[member_key("update", m)] for m in range(self.members)])
      self._learner = self.checkpoints.restore(best[0], like=state).learner
    except (DamagedCheckpoint, KeyError) as error:
      return f"{self.checkpoints.directory}/{best[0]} cannot give each member's best ({error}): best/ starts again"
    self._returns, self._updates = returns, updates
    return None
