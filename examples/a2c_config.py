"""A2C, an algorithm that lives outside distrl (examples/a2c.py). From the repository root (or, with the path to
this file, from anywhere):

  python -m distrl.launch --config=examples/a2c_config.py --workdir=runs/a2c
  python -m distrl.launch --config=examples/a2c_config.py --config.env_name=examples.corridor:make

The fields the trainer reads (algo ... keep_checkpoints) are those of every config; the rest are A2C's.
"""

import ml_collections


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.algo = "examples.a2c"  # a module of your own with sizes, init, update and act
  config.env_name = "CartPole-v1"  # a gymnax id, or package.module:factory
  config.env_kwargs = ml_collections.ConfigDict()  # keyword arguments of the environment's factory
  config.architecture = "compiled"  # environments step inside the compiled program (distrl.architectures)
  config.seed = 0  # parameters and environments derive from it
  config.num_seeds = 1  # independent agents trained at once
  config.backend = "shard_map"  # or "pmap"
  config.num_envs = 16  # parallel environments, split over the devices

  config.total_timesteps = 500_000  # environment steps in the whole run
  config.num_steps = 8  # rollout length per environment per update
  config.lr = 1e-3  # RMSprop step size
  config.max_grad_norm = 0.5  # clip gradients to this global norm
  config.gamma = 0.99  # discount
  config.gae_lambda = 1.0  # 1: plain n-step advantages, as A2C
  config.ent_coef = 0.01  # entropy bonus weight
  config.vf_coef = 0.5  # value loss weight
  config.hidden_sizes = (64, 64)  # MLP widths of the policy and value networks
  config.activation = "tanh"  # "tanh" or "relu"

  config.log_every = 100  # updates per compiled chunk and log line
  config.eval_every = 1000  # updates between greedy evaluations
  config.eval_episodes = 16  # greedy evaluation episodes, split over devices
  config.checkpoint_every = 1000  # updates between checkpoints
  config.keep_checkpoints = 3  # how many recent checkpoints to keep
  if arg:
    raise ValueError(f"examples/a2c_config.py has no presets (got {arg!r})")
  return config
