"""distrl's shipped configs: `configs/<algo>.py` from the repository root, `--config=<algo>` from anywhere.

This folder is installed as the package `distrl.configs` (pyproject.toml), so the same files serve both forms.
Each module defines `get_config(arg=None)`, `arg` naming a preset; a user's own config file is named by its path
(`--config=my_configs/ppo_big.py:preset`). The fields every config has are written once, in `run_fields`.
"""

import difflib
import importlib
import os

import ml_collections

DIRECTORY = os.path.dirname(os.path.abspath(__file__))

# Fields the trainer reads from every config, whatever the algorithm (distrl/algorithms.py states the contract).
RUN_FIELDS = ("algo", "env_name", "env_kwargs", "architecture", "seed", "num_seeds", "backend", "num_envs",
              "log_every", "eval_every", "eval_episodes", "checkpoint_every", "keep_checkpoints")


def run_fields(algo: str, *, total_timesteps: int, num_envs: int, log_every: int, eval_every: int,
               checkpoint_every: int, eval_episodes: int = 16,
               env_name: str = "CartPole-v1") -> ml_collections.ConfigDict:
  """A new config with the fields every algorithm's config has, and this algorithm's defaults for them."""
  config = ml_collections.ConfigDict()
  config.algo = algo  # which algorithm trains this config: a shipped name, or package.module of your own
  config.env_name = env_name  # a gymnax id, a suite's suite:id, or package.module:factory of your own (README)
  config.env_kwargs = ml_collections.ConfigDict()  # keyword arguments of the environment's constructor / factory
  config.architecture = "compiled"  # "compiled" (JAX environments in the program) or "host" (envpool:, gymnasium:)
  config.seed = 0  # parameters, environments and every random draw of the run derive from it
  config.num_seeds = 1  # independent agents trained at once, of seeds seed, seed+1, ... (see distrl.runtime.seeds)
  config.backend = "shard_map"  # "shard_map" or "pmap": how the update is split over devices
  config.member_groups = 1  # groups of devices the agents (sweep members x seeds) are split over (README: Sweeps)

  # Sizes are global: each of D devices runs num_envs / D environments.
  config.total_timesteps = total_timesteps  # environment steps in the whole run
  config.num_envs = num_envs  # parallel environments

  config.log_every = log_every  # iterations per log line (run as one or more calls of the compiled update loop)
  config.eval_every = eval_every  # iterations between evaluations (rounded up to a log line)
  config.eval_episodes = eval_episodes  # evaluation episodes, split over devices
  config.eval_policy = "greedy"  # how evaluations act (best/ ranks them): "greedy" (likeliest action) or "sampled"
  config.checkpoint_every = checkpoint_every  # iterations between checkpoints (rounded up to a log line)
  config.keep_checkpoints = 3  # how many recent checkpoints to keep
  tracker_fields(config)
  return config


def tracker_fields(config: ml_collections.ConfigDict) -> None:
  """Adds the experiment trackers' groups (`distrl.runtime.trackers`; README: Experiment trackers), both off, to
  `config`."""
  config.wandb = ml_collections.ConfigDict()  # Weights & Biases beside metrics.jsonl: pip install 'distrl[wandb]'
  config.wandb.project = ""  # the W&B project to log to; "" for none (WANDB_MODE, WANDB_DIR, ... as W&B reads them)
  config.wandb.entity = ""  # the team or user that owns the project; "" for your default entity
  config.wandb.group = ""  # a group of runs (an experiment's seeds, say); "" for none
  config.wandb.tags = ()  # the run's tags, e.g. ("baseline", "minatar")
  config.wandb.name = ""  # the run's name; "" for the workdir's
  config.mlflow = ml_collections.ConfigDict()  # MLflow beside metrics.jsonl: pip install 'distrl[mlflow]'
  config.mlflow.experiment = ""  # the MLflow experiment to log to (made if new); "" for none (MLFLOW_TRACKING_URI)
  config.mlflow.run_name = ""  # the run's name; "" for the workdir's


def rollout_fields(config: ml_collections.ConfigDict, *, num_steps: int, update_epochs: int,
                   num_minibatches: int) -> None:
  """Adds the sizes of the algorithms that learn from each fresh rollout (`distrl.rl.rollout_learner`: PPO, PQN)."""
  config.num_steps = num_steps  # rollout length per environment per iteration
  config.update_epochs = update_epochs  # passes over each rollout
  config.num_minibatches = num_minibatches  # gradient steps per epoch (num_steps/num_minibatches steps of every env)


def replay_fields(config: ml_collections.ConfigDict, *, buffer_size: int, batch_size: int, train_frequency: int,
                  gradient_steps: int, learning_starts: int, gamma: float, n_step: int, tau: float) -> None:
  """Adds the fields of the algorithms that learn from a replay buffer (`distrl.rl.replay_learner`: DQN, SAC, TD3).

  Sizes are global: each of D devices runs num_envs / D environments and keeps their replay rows; every gradient
  step draws one global batch of batch_size transitions from all rows (the same whatever D) and each device takes
  the gradient of batch_size / D of them.
  """
  config.buffer_size = buffer_size  # replay capacity in transitions, split evenly over environments
  config.batch_size = batch_size  # transitions per gradient step
  config.train_frequency = train_frequency  # global environment steps per round of gradient steps
  config.gradient_steps = gradient_steps  # gradient steps per round (per train_frequency environment steps)
  config.learning_starts = learning_starts  # environment steps before the first gradient step
  config.gamma = gamma  # discount
  config.n_step = n_step  # rewards summed per target before bootstrapping (cut at episode ends)
  config.tau = tau  # target <- tau * online + (1 - tau) * target at each target update; 1.0 is a hard copy


def actor_critic_fields(config: ml_collections.ConfigDict, *, actor_lr: float, critic_lr: float) -> None:
  """Adds the networks and step sizes of the off-policy actor-critics (`distrl.rl.twin_critic`: SAC, TD3)."""
  config.hidden_sizes = (256, 256)  # MLP widths of the actor and of each of the two critics
  config.activation = "relu"  # "tanh" or "relu"
  config.critic_layer_norm = False  # LayerNorm before every hidden activation of the critics
  config.actor_lr = actor_lr  # Adam step size of the actor (and of SAC's temperature)
  config.critic_lr = critic_lr  # Adam step size of the critics


def normalization_fields(config: ml_collections.ConfigDict) -> None:
  """Adds the fields of observation normalisation and reward scaling (`distrl.rl.normalization`) to `config`."""
  config.normalize_obs = False  # normalise observations by running mean/std over all devices (kept in checkpoints)
  config.obs_clip = 10.0  # normalised observations are clipped to [-obs_clip, obs_clip]
  config.scale_rewards = False  # divide rewards by the running std of the discounted return (gym's NormalizeReward)
  config.reward_clip = 10.0  # scaled rewards are clipped to [-reward_clip, reward_clip]


def recurrent_fields(config: ml_collections.ConfigDict) -> None:
  """Adds the fields of a recurrent core (`distrl.rl.recurrent`: memory between the torso and the heads) to `config`."""
  config.recurrent = ""  # "gru" or "lstm": a recurrent core after the torso, for partially observed tasks; "" none
  config.recurrent_size = 128  # the recurrent core's width (its state per environment)


def lacking(config) -> str | None:
  """What a config lacks of RUN_FIELDS, or of the fields of the shipped config of its `algo` (which that algorithm
  reads), as a message; None when it has them all."""
  missing = [field for field in RUN_FIELDS if field not in config]
  if missing:
    return (f"the config lacks {', '.join(missing)} (every config has {', '.join(RUN_FIELDS)}; "
            f"see configs/ppo.py)")
  if not (isinstance(config.algo, str) and config.algo in names()):
    return None
  missing = sorted(set(importlib.import_module(f"{__name__}.{config.algo}").get_config()) - set(config))
  if not missing:
    return None
  more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
  return (f"algo={config.algo!r} reads fields this config lacks ({', '.join(missing[:5])}{more}); start from its own "
          f"config: --config={config.algo}")


def with_new_fields(config) -> list[str]:
  """Adds to a recorded config (a run's config.json) of a shipped algorithm the fields its shipped config has gained
  since, at their defaults (e.g. `recurrent`, off); returns their names."""
  if not (isinstance(config.get("algo"), str) and config.algo in names()):
    return []
  shipped = importlib.import_module(f"{__name__}.{config.algo}").get_config()
  added = sorted(set(shipped) - set(config))
  with config.unlocked():
    for field in added:
      config[field] = shipped[field]
    if "architecture" in added and config.env_name.partition(":")[0] in ("envpool", "gymnasium"):
      config.architecture = "host"  # recorded before config.architecture existed: such environments ran there
  return added


def apply_preset(config, algo: str, presets: dict, arg: str | None):
  """`config` updated with the preset `arg` names (none: as it is), else a ValueError naming the presets (the
  closest first, and the field to set for a suite's environment that has no preset)."""
  if not arg:
    return config
  if arg not in presets:
    close = difflib.get_close_matches(arg.lower(), [p.lower() for p in presets], n=1, cutoff=0.7)
    hint = f"did you mean {next(p for p in presets if p.lower() == close[0])!r}? " if close else ""
    if ":" in arg:
      hint += f"any environment of a suite trains as --config={algo} --config.env_name={arg}; "
    raise ValueError(f"unknown preset {arg!r} for --config={algo}; {hint}choose one of {', '.join(presets)}")
  config.update(presets[arg])
  return config


def names() -> list[str]:
  """The shipped configs: ppo, dqn, ..."""
  return sorted(f[:-3] for f in os.listdir(DIRECTORY) if f.endswith(".py") and not f.startswith("_"))
