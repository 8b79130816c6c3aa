"""Export a trained run's greedy policy, to run with JAX and numpy alone (no distrl).

  python -m distrl.export --workdir=runs/cartpole --out=cartpole-policy            # the latest checkpoint
  python -m distrl.export --workdir=runs/cartpole --out=cartpole-policy --best     # the best evaluation's
  python -m distrl.export --workdir=runs/sweep --out=policy-3 --member=3           # one member of a sweep

OUT (a new directory) holds policy.jax, the policy serialized by `jax.export` for a batch of any size and lowered for
CPU, CUDA GPUs and TPUs (`--platforms`); params.npz, the parameters it takes (what acting reads of the learner); and
about.json, where it came from. Load and run it:

  exported = jax.export.deserialize(open("cartpole-policy/policy.jax", "rb").read())
  params = dict(np.load("cartpole-policy/params.npz"))
  actions = exported.call(params, observations)            # observations (B, *observation_shape), any B

An agent with memory (config.recurrent) also gets initial_memory.jax: `memory = initial.call(observations)`, then
`actions, memory = exported.call(params, observations, memory)`; reset the rows whose episode ended to the initial
memory's. The files load in the JAX that wrote them or a newer one (jax.export keeps 6 months of compatibility).
"""

import os
import sys

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "The run whose policy to export (a --workdir of distrl.launch).")
_OUT = flags.DEFINE_string("out", None, "The directory to write (it must not exist yet).")
_BEST = flags.DEFINE_boolean("best", False, "Export the checkpoint of the best evaluation during training instead.")
_CHECKPOINT = flags.DEFINE_integer("checkpoint", None, "Which saved update to export (default: the latest).")
_MEMBER = flags.DEFINE_integer("member", None, "Of a sweep (--config.sweep.*), member K (a sweep needs one).")
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # those jax.export lowers for
_PLATFORMS = flags.DEFINE_list("platforms", ["cpu", "cuda", "tpu"], f"The platforms to lower the policy for (of "
                               f"{', '.join(PLATFORMS)}); it runs on these only.")


def _fail(message: str) -> None:
  print(f"distrl: error: {message}", file=sys.stderr, flush=True)
  sys.exit(1)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  for flag in (_WORKDIR, _OUT):
    if not flag.value:
      _fail(f"--{flag.name} is required (python -m distrl.export --workdir=RUN --out=DIRECTORY)")
  out, workdir = os.path.expanduser(_OUT.value), os.path.expanduser(_WORKDIR.value)
  if os.path.lexists(out):
    _fail(f"--out={_OUT.value} exists; give a new path (nothing is written over)")
  if not os.path.isdir(workdir):
    _fail(f"no run in --workdir={_WORKDIR.value}: no such directory")
  platforms = tuple(p.strip().lower() for p in _PLATFORMS.value)
  unknown = [p for p in platforms if p not in PLATFORMS]
  if unknown or not platforms:
    _fail(f"--platforms={','.join(_PLATFORMS.value)}: " + (f"unknown {', '.join(unknown)}; " if unknown else "") +
          f"choose among {', '.join(PLATFORMS)}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  from distrl.cli import noise

  noise.switch_on("distrl.export")  # before JAX starts, as distrl.evaluate: a damaged checkpoint's noise is kept
  if os.path.isfile(os.path.join(workdir, "config.json")):  # a run's directory, not any other
    noise.keep_in(workdir)
  from distrl import errors, policy
  from distrl.errors import ConfigError

  try:
    greedy = policy.restore(workdir, best=_BEST.value, member=_MEMBER.value, checkpoint=_CHECKPOINT.value)
    exported = policy.export(greedy, platforms)
  except ConfigError as error:
    _fail(str(error))
  except NotImplementedError as error:  # jax.export: an operation without a lowering for one of the platforms
    _fail(f"--platforms={','.join(platforms)}: {errors.first_line(error)}; export for fewer platforms")
  about = exported.about
  try:
    policy.write(out, exported)
  except OSError as error:
    _fail(f"cannot write --out={_OUT.value}: {error.strerror}")
  which = "best evaluation" if _BEST.value else f"update {about['update']}"
  member = f", member {_MEMBER.value}" if _MEMBER.value is not None else ""
  print(f"wrote the greedy policy of {_WORKDIR.value} ({which}{member}; {about['algo']} on {about['env_name']}) to "
        f"{_OUT.value}: {', '.join(sorted(os.listdir(out)))}; for {', '.join(platforms)}")


if __name__ == "__main__":
  app.run(main)
