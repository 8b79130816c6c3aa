"""The host loop every algorithm shares: build, open the workdir, resume, compile once, run the loop, save.

The trainer knows an algorithm only through the contract of `distrl.algorithms` (`sizes`, `init`, `update`,
`act`), resolved from `config.algo`. `train` composes the pieces that live beside it in `distrl/runtime/`:
`programs.build` (what a run executes), `session.Session` (the workdir held from lock to unlock), `resume.plan`
(from scratch or from the latest checkpoint), `compiling.compile_all` (compiled while a stop can still end the start
at once), `loop.UpdateLoop` (calls, log intervals, evaluations and checkpoints) and the final save here.
"""

import dataclasses
import os
import time

import jax
import ml_collections

from distrl import architectures, sharding
from distrl.rl.state import TrainState
from distrl.runtime import agents, best, compiling, memory, metrics, programs, resume, stopping, sweep, trackers
from distrl.runtime.loop import UpdateLoop, eval_keys
from distrl.runtime.programs import Program
from distrl.runtime.session import Session
from distrl.runtime.workdir import Workdir


@dataclasses.dataclass
class Result:
  state: TrainState  # the final state, global layout
  history: list[dict]  # every record this start logged: step, update, time and scalars
  compile_seconds: float  # 0 where nothing was compiled (a finished run)
  stopped: bool  # ended early by a stop request (SIGTERM, SIGINT, SIGHUP, a closed stdout), after saving
  compiling: bool = False  # stopped while starting, nothing saved: threads may compile on, which nobody should await


def train(config: ml_collections.ConfigDict, workdir: str, *, devices=None, overwrite: bool = False) -> Result:
  """Trains `config` in `workdir`, resuming from its latest checkpoint if it has one.

  With `overwrite`, a run already in `workdir` is moved aside into `workdir/overwritten-<time>/` and a new one
  starts. Stop requests (`stopping.REQUEST`: SIGTERM, SIGINT, SIGHUP) end the run after the current call with
  a checkpoint.
  """
  stop = stopping.REQUEST
  owned = not stop.installed  # launch installs it at start-up; a library caller gets it for this call
  if owned:
    stop.reason = None
    stop.install()
  try:
    return _train(config, Workdir(workdir, primary=jax.process_index() == 0), devices, overwrite, stop)
  finally:
    if owned:
      stop.uninstall()


def _train(config, workdir: Workdir, devices, overwrite: bool, stop: stopping.StopRequest) -> Result:
  started = time.perf_counter()
  stop.enter(stopping.Phase.STARTING)
  config = sweep.folded(config)
  trackers.check(config, agents.count(config))  # before anything compiles: a tracker's missing package is one line
  program = programs.build(config, programs.mesh_for(config, devices))
  try:
    return _run(program, config, workdir, overwrite, stop, started)
  finally:
    program.close()


def _run(program: Program, config, workdir: Workdir, overwrite: bool, stop: stopping.StopRequest,
         started: float) -> Result:
  console = metrics.Console(enabled=workdir.primary, on_closed=lambda: stop.request("closed stdout"))
  with Session(workdir, console).open(config, overwrite=overwrite) as session:
    plan = resume.plan(workdir, session.checkpoints, program, session.say)
    if plan.finished:
      session.say(f"{workdir.path}: the run is finished (update {plan.update} of {program.sizes.num_updates}, step "
                  f"{plan.update * program.sizes.steps_per_update:,}); to train it longer, raise "
                  f"--config.total_timesteps")
      return Result(state=plan.state, history=[], compile_seconds=0.0, stopped=False)
    resume.announce(plan, program, workdir, jax.process_count(), session.say)
    state = program.runner.put(plan.state)
    evaluate = program.evaluator(config.eval_episodes)
    compile_start = time.perf_counter()
    compiled = _compile(program, state, evaluate, plan.update, console, stop)
    if compiled.stopped:
      doing = "compiling" if compiled.seconds else "starting"  # 0 s: the request came before the compile
      since = f"since update {plan.update}" if plan.restored is not None else "yet"
      session.say(f"stopped by {stop.reason} while {doing}: nothing trained {since}, nothing lost")
      return Result(state=plan.state, history=[], compile_seconds=compiled.seconds, stopped=True, compiling=True)
    compile_seconds = compiled.seconds
    local = [d for d in program.mesh.devices.flat if d.process_index == jax.process_index()]
    memory.check(config, program.runner.memory_analysis(), local, sharding.data_size(program.mesh),
                 lambda smaller: program.algorithm.sizes(smaller, sharding.data_size(program.mesh)))
    session.record_start(plan, config, devices=program.mesh.size, total_steps=program.total_steps,
                         steps_per_update=program.sizes.steps_per_update)
    stop.enter(stopping.Phase.UPDATING)
    end = UpdateLoop(program, session, evaluate, elapsed=plan.elapsed, started=compile_start).run(
        state, plan.update, stop)
    if end.stopped and end.update == 0 and plan.restored is None:
      session.say(f"stopped by {stop.reason} before the first update; nothing to save (run the same command to "
                  f"start)")
    else:
      _save_final(session, program, end, stop, seconds=time.perf_counter() - started, compile_seconds=compile_seconds)
    return Result(state=program.runner.get(end.state), history=end.history, compile_seconds=compile_seconds,
                  stopped=end.stopped)


def _compile(program: Program, state, evaluate, update: int, console: metrics.Console,
             stop: stopping.StopRequest) -> compiling.Compiled:
  """Compiles the update loop and the evaluation (which its first use would otherwise compile mid-run) at once, each
  in a thread; with one process a stop request ends the wait (with several, the first call agrees on it)."""
  learner, keys = program.runner.get(state).learner, eval_keys(program.config)(update)
  return compiling.compile_all([lambda: program.runner.compile(state), lambda: evaluate.compile(learner, keys)],
                               what="the update loop and the evaluation", console=console, stop=stop,
                               stoppable=jax.process_count() == 1)


def _save_final(session: Session, program: Program, end, stop: stopping.StopRequest, *, seconds: float,
                compile_seconds: float) -> None:
  """The checkpoint of the last update (complete on disk before this returns), then the run's summary."""
  checkpoints = session.checkpoints
  stop.enter(stopping.Phase.SAVING, f"update {end.update}")
  last = end.history[-1] if end.history and end.history[-1]["update"] == end.update else None
  checkpoints.save(end.update, program.runner.get(end.state), record=last)
  checkpoints.finish()
  session.best.finish()
  if not end.stopped:
    session.record_finish(end.update)
  stop.enter(stopping.Phase.ENDING)
  if end.stopped:
    session.say(f"stopped by {stop.reason}: saved update {end.update} to {checkpoints.directory}; run the same "
                f"command to resume")
  top = session.best.best()
  swept = sweep.count(program.config) > 1  # best/ holds each member at its best: the ranking says where
  session.writer.summary(end.history, seconds=seconds, compile_seconds=compile_seconds,
                         workdir=session.workdir.path, checkpoint=os.path.join(checkpoints.directory, str(end.update)),
                         best=None if swept else top, greedy=architectures.greedy(program.config))
  kept = best.texts(session.best.metrics(top[0]), sweep.count(program.config)) if top and swept else None
  for line in sweep.ranking(program.config, end.history, kept, session.workdir.path):
    session.say(line)
