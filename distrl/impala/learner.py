"""IMPALA (Espeholt et al. 2018): an actor-critic learning from V-trace's targets, which correct for acting with
older parameters than the learner's, so that host environments' actors can run several updates behind
(`config.actor_lag`, `distrl.architectures.host`).

It is the actor-critic iteration of `distrl.rl.actor_critic` (networks, acting, rollouts, epochs of
environment-stratified minibatch steps, `pmean` over devices), PPO's too, with its own `Objective`: V-trace's
advantages and targets, computed once per rollout with the parameters the learner starts it with, and the unclipped
policy gradient. On the compiled path and with `actor_lag=0` the behaviour is the learner's own policy (rho = 1), and
V-trace is GAE(lambda) advantages.
"""

import functools

import ml_collections

from distrl.errors import require
from distrl.impala import losses
from distrl.rl import acting, actor_critic, returns, rollout_learner

MAX_ACTOR_LAG = None  # any: V-trace corrects for it (the host path reads this; PPO's is 1)


def sizes(config: ml_collections.ConfigDict, num_devices: int) -> rollout_learner.Sizes:
  """Validates the config's sizes and V-trace's fields against the device count and derives the rest."""
  require(0 <= config.vtrace_lambda <= 1, f"vtrace_lambda={config.vtrace_lambda} must be in [0, 1]")
  require(config.rho_clip > 0, f"rho_clip={config.rho_clip} must be positive")
  require(config.pg_rho_clip > 0, f"pg_rho_clip={config.pg_rho_clip} must be positive")
  require(not config.get("recurrent"), f"recurrent={config.recurrent!r}: impala learns without memory for now "
                                       f"(ppo and pqn have it)")
  return rollout_learner.sizes(config, num_devices)


def _vtrace_targets(reward, value, value_tp1, steps: acting.Step, log_rho, config):
  out = returns.vtrace(reward, value, value_tp1, steps.terminated, steps.episode_end, log_rho(), gamma=config.gamma,
                       lambda_=config.vtrace_lambda, rho_clip=config.rho_clip, pg_rho_clip=config.pg_rho_clip)
  return out.advantage, out.target


def _loss(distribution, value, batch: actor_critic.Batch, advantage, config):
  return losses.impala_loss(log_prob=distribution.log_prob(batch.action), behaviour_log_prob=batch.log_prob,
                            advantage=advantage, value=value, target=batch.target, entropy=distribution.entropy(),
                            vf_coef=config.vf_coef, ent_coef=config.ent_coef, rho_clip=config.rho_clip)


IMPALA = actor_critic.Objective(name="impala", targets=_vtrace_targets, loss=_loss)

init, act, behaviour = actor_critic.init, actor_critic.act, actor_critic.behaviour
update = functools.partial(actor_critic.update, objective=IMPALA)
learn = functools.partial(actor_critic.learn, objective=IMPALA)
