"""Evaluate a trained run: greedy episodes from one of its checkpoints.

  python -m distrl.evaluate --workdir=runs/cartpole                     # latest checkpoint, 16 episodes
  python -m distrl.evaluate --workdir=runs/cartpole --checkpoint=500 --episodes=64
  python -m distrl.evaluate --workdir=runs/cartpole --gif=cartpole.gif  # also render one episode
  python -m distrl.evaluate --workdir=runs/sweep --member=3              # one member of a sweep

The run's config comes from WORKDIR/config.json; episodes are split over the devices.
"""

import os
import sys

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "The run to evaluate (a --workdir of distrl.launch).")
_CHECKPOINT = flags.DEFINE_integer("checkpoint", None, "Which saved update to load (default: the latest).")
_BEST = flags.DEFINE_boolean("best", False, "Load the checkpoint of the best evaluation during training instead.")
_EPISODES = flags.DEFINE_integer("episodes", 16, "Episodes to run (each in its own environment).")
_POLICY = flags.DEFINE_enum("policy", None, ["greedy", "sampled"], "How the agent acts: greedy (the likeliest action) "
                            "or sampled (as in training). Default: the run's eval_policy (greedy). --gif: greedy.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the evaluation environments.")
_MEMBER = flags.DEFINE_integer("member", None, "Of a sweep (--config.sweep.*), only member K: its results, its GIF.")
_GIF = flags.DEFINE_string("gif", None, "Also render one greedy episode to this .gif file (needs pygame for "
                           "classic-control environments: pip install -e '.[render]').")


def _limit(env) -> str:
  """How long an evaluation episode runs: to its end or the environment's time limit (distrl's cap where the
  environment declares none, as a user's gymnasium factory may truncate itself without saying so)."""
  if getattr(env, "declared_limit", True):
    return f"each to its end or the {env.max_steps}-step time limit"
  return f"each to its end, at most {env.max_steps} steps (the environment declares no time limit)"


def load_run(workdir: str, checkpoint: int | None, best: bool = False):
  """-> (program, state, update): `programs.load` (imported here, after the noise filter is on)."""
  from distrl.runtime import programs

  return programs.load(workdir, checkpoint, best)


def _summary(returns, lengths) -> str:
  return (f"return {returns.mean():.2f} ± {returns.std():.2f} (min {returns.min():.1f}, max {returns.max():.1f}); "
          f"length {lengths.mean():.1f} ± {lengths.std():.1f}")


def _print_results(config, returns, lengths, agents: list[int], shown: list[int]) -> None:
  """A line for each agent `shown` (of a run of several) and one for all of them; one line for a single agent."""
  from distrl.runtime import sweep

  if len(agents) == 1:
    print(_summary(returns, lengths))
    return
  for i in shown:
    print(f"{sweep.names(config)[i]}: {_summary(returns[i], lengths[i])}")
  if len(shown) > 1:
    print(f"all {'of them' if len(shown) < len(agents) else 'agents'}: {_summary(returns[shown], lengths[shown])}")


def _heading(update: int, members: int) -> tuple[str, str]:
  """Where the results line says the state came from: (the workdir and update, which checkpoint)."""
  from distrl.runtime import best

  heading, which = f"{_WORKDIR.value} at update {update}", "best evaluation, " if _BEST.value else ""
  if _BEST.value and members > 1:  # best/ of a sweep: each member at its own best evaluation
    at = best.member_updates(os.path.join(os.path.expanduser(_WORKDIR.value), "best"), update, members)
    if at is not None and _MEMBER.value is not None:
      return f"{_WORKDIR.value} at update {at[_MEMBER.value]}", f"member {_MEMBER.value}'s best evaluation, "
    return f"{_WORKDIR.value} (best/ of update {update})", "each member at its best evaluation, "
  return heading, which


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _WORKDIR.value is None:
    raise app.UsageError("--workdir is required")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  from distrl.cli import noise

  noise.switch_on("distrl.evaluate")  # before JAX starts: keeps tensorstore's noise of a damaged checkpoint away
  noise.keep_in(os.path.expanduser(_WORKDIR.value))
  import jax
  import numpy as np

  from distrl import architectures, sharding
  from distrl.cli import render
  from distrl.runtime import agents as run_agents, metrics, sweep
  from distrl.errors import ConfigError

  try:
    program, state, update = load_run(os.path.expanduser(_WORKDIR.value), _CHECKPOINT.value, _BEST.value)
    config, mesh = program.config, program.mesh
    if _GIF.value and config.env_name not in render.RENDERABLE:
      raise ConfigError(f"--gif draws gymnax's own environments ({', '.join(render.RENDERABLE)}); "
                        f"{config.env_name} has no renderer")
    members = sweep.count(config)
    sweep.check_member(config, _MEMBER.value)
    if _EPISODES.value <= 0 or _EPISODES.value % mesh.size:
      raise ConfigError(f"--episodes={_EPISODES.value} must be a positive multiple of the {mesh.size} devices used")
    if _POLICY.value is not None:
      with config.unlocked():
        config.eval_policy = _POLICY.value
    evaluate = program.evaluator(_EPISODES.value)
    key = jax.random.PRNGKey(_SEED.value)  # the same evaluation environments for every agent
    key = key if run_agents.count(config) == 1 else jax.numpy.tile(key, (run_agents.count(config), 1))
    results = sharding.to_host(evaluate(state.learner, key))
  except ConfigError as error:
    print(f"distrl: error: {error}", file=sys.stderr)
    sys.exit(1)
  returns, lengths = np.asarray(results["return"]), np.asarray(results["length"])
  heading, which = _heading(update, members)
  agents = shown = list(range(run_agents.count(config)))
  if _MEMBER.value is not None:
    shown = [a for a in agents if a // config.num_seeds == _MEMBER.value]
  greedy = architectures.greedy(config)
  action = ("the most likely action" if program.env.discrete else "the mean action") if greedy else \
      "actions sampled as in training"
  print(f"{heading} ({which}{config.algo} on {config.env_name}): {returns.shape[-1]} "
        f"{'greedy' if greedy else 'sampled'} episodes" + (f" for each of {len(shown)} agents" if len(shown) > 1 else "")
        + f" ({action}, {_limit(program.env)})")
  _print_results(config, returns, lengths, agents, shown)
  if _GIF.value:
    learner = sharding.to_host(state.learner)
    if len(agents) > 1:
      learner = jax.tree.map(lambda x: x[shown[0]], learner)
    states, returns = render.play(program, learner, _SEED.value)
    console = metrics.Console()
    shown = set()

    def progress(done: int, total: int) -> None:  # a live line on a terminal, every 10% otherwise
      tenth = 10 * done // total
      if console.live or tenth not in shown:
        shown.add(tenth)
        console.redraw(f"drawing {os.path.basename(_GIF.value)}: frame {done}/{total}")

    gif = os.path.expanduser(_GIF.value)
    try:
      os.makedirs(os.path.dirname(gif) or ".", exist_ok=True)
      render.gif(program, states, returns, gif, progress)
    except ImportError as error:
      print(f"distrl: error: --gif needs {error.name}: pip install -e '.[render]'", file=sys.stderr)
      sys.exit(1)
    except OSError as error:
      print(f"distrl: error: cannot write --gif={_GIF.value}: {error.strerror}", file=sys.stderr)
      sys.exit(1)
    console.end()
    print(f"wrote a {len(states) - 1}-step episode{f' of {sweep.names(config)[shown[0]]}' if len(agents) > 1 else ''} "
          f"to {gif}")

if __name__ == "__main__":
  app.run(main)
