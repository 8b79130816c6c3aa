"""PPO. Run:

  python -m distrl.launch --config=ppo --workdir=runs/ppo-cartpole
  python -m distrl.launch --config=ppo:Acrobot-v1 --config.seed=1
  python -m distrl.launch --config=ppo:Pendulum-v1          # continuous actions
  python -m distrl.launch --config=ppo:Breakout-MinAtar-mlp  # MinAtar with an MLP (Breakout-MinAtar: a CNN)
  python -m distrl.launch --config=ppo:brax:inverted_pendulum  # a suite: pip install -e '.[brax]' first
  python -m distrl.launch --config=ppo:MemoryChain-bsuite     # with memory: a GRU (--config.recurrent=gru|lstm)

The default is CartPole-v1 with the well-known PPO defaults (CleanRL / PureJaxRL).
"""

from distrl import configs

# MinAtar: the settings well-tuned single-file PPO agents use on gymnax MinAtar (1e7 steps).
MINATAR = {"torso": "cnn", "activation": "relu", "hidden_sizes": (64,), "lr": 5e-3, "num_envs": 64,
           "num_steps": 128, "num_minibatches": 8, "total_timesteps": 10_000_000, "log_every": 20,
           "eval_every": 200, "checkpoint_every": 200, "eval_episodes": 64}
# The same with PureJaxRL's MLP (two hidden layers of 64): gymnax's published MinAtar PPO numbers are for an MLP.
MINATAR_MLP = {**MINATAR, "torso": "mlp", "hidden_sizes": (64, 64)}
MINATAR_GAMES = ("Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar")

# Continuous control: a Gaussian policy, many epochs, normalised observations and scaled rewards.
CONTINUOUS = {"num_envs": 16, "num_steps": 128, "total_timesteps": 1_000_000, "lr": 1e-3, "gamma": 0.95,
              "ent_coef": 0.0, "update_epochs": 10, "num_minibatches": 8, "eval_every": 50, "normalize_obs": True,
              "scale_rewards": True}

# Brax: the hyperparameters of Brax's training colab (notebooks/training.ipynb, `train_fn`), mapped onto distrl's
# fields: num_steps = batch_size * num_minibatches * unroll_length / num_envs (the same samples per update, in one
# rollout per environment rather than unrolls of unroll_length), num_minibatches = 40 where num_steps is 80 (each
# minibatch takes num_steps / num_minibatches whole steps of every environment: 2 steps, 4,096 samples of 2048
# environments where Brax's 32 minibatches take 5,120), update_epochs = num_updates_per_batch,
# gamma = discounting, ent_coef = entropy_cost, lr constant, clip 0.3 and no value clip as Brax's PPO has them.
# Not carried over: Brax's tanh-squashed Gaussian with a state-dependent std and its networks (policy 4x32, value
# 5x256, swish), and reward_scaling (with separate policy and value networks and Adam, a constant reward scale
# changes little but the value loss's share of the clipped gradient norm).
BRAX = {"normalize_obs": True, "anneal_lr": False, "lr": 3e-4, "clip_eps": 0.3, "clip_value_loss": False,
        "gae_lambda": 0.95, "num_minibatches": 32, "eval_episodes": 128,
        "env_kwargs": {"backend": "positional"}}  # the backend of the colab's published ant curve

# Craftax: the PPO baseline of the Craftax paper (Craftax_Baselines ppo.py defaults, 1e9 steps): 1024 environments x
# 64 steps, 8 minibatches, 4 epochs, lr 2e-4 annealed, gamma 0.99, lambda 0.8, clip 0.2, entropy 0.01, gradient norm
# 1.0, and separate policy and value MLPs of three tanh layers of 512.
CRAFTAX = {"num_envs": 1024, "num_steps": 64, "num_minibatches": 8, "update_epochs": 4, "lr": 2e-4, "gamma": 0.99,
           "gae_lambda": 0.8, "clip_eps": 0.2, "ent_coef": 0.01, "vf_coef": 0.5, "max_grad_norm": 1.0,
           "hidden_sizes": (512, 512, 512), "activation": "tanh", "total_timesteps": 1_000_000_000,
           "log_every": 10, "eval_every": 500, "checkpoint_every": 500, "eval_episodes": 16}

# Jumanji: discrete puzzles with action masks; PureJaxRL-style PPO settings with normalised observations (Snake's
# step counter runs to 4000).
JUMANJI = {"num_envs": 64, "num_steps": 128, "num_minibatches": 8, "update_epochs": 4, "lr": 3e-4,
           "hidden_sizes": (256, 256), "activation": "relu", "normalize_obs": True, "total_timesteps": 20_000_000,
           "log_every": 20, "eval_every": 200, "checkpoint_every": 200, "eval_episodes": 64}

# Memory (a recurrent core, distrl/rl/recurrent.py) on tasks a feed-forward agent cannot solve, each with a "-ff"
# twin without memory for the side-by-side rows. MemoryChain-bsuite shows a context bit in its first observations
# only and asks for it 5 steps later (+1 right, -1 wrong): without memory every policy's expected return is 0.
# MetaMaze-misc hides a goal that stays put for the episode while the agent is sent back to the start after
# reaching it (+10 each time): with memory the way back is known.
MEMORY = {"recurrent": "gru", "recurrent_size": 128}
MEMORY_CHAIN = {"env_name": "MemoryChain-bsuite", "num_envs": 16, "num_steps": 32, "num_minibatches": 4,
                "total_timesteps": 200_000, "log_every": 10, "eval_every": 50, "checkpoint_every": 50,
                "eval_episodes": 64}
# Its observations hold the raw step count (0-200), hence normalize_obs: without it neither agent learned in 2e6 steps.
META_MAZE = {"env_name": "MetaMaze-misc", "num_envs": 32, "num_steps": 128, "num_minibatches": 4,
             "total_timesteps": 3_000_000, "normalize_obs": True, "log_every": 10, "eval_every": 50,
             "checkpoint_every": 50, "eval_episodes": 64}
# Craftax with the recurrent PPO baseline of the Craftax paper (Craftax_Baselines ppo_rnn.py defaults): the PPO
# settings above, a 512-unit ReLU layer into a 512-unit GRU (distrl's heads are linear: its heads' two hidden
# layers of 512 each are left out).
CRAFTAX_RNN = {**CRAFTAX, "hidden_sizes": (512,), "activation": "relu", "recurrent": "gru", "recurrent_size": 512}

# Host environments (distrl/envs/host.py) on the host architecture (distrl/architectures/host/): envpool and gymnasium
# step on the host, an actor thread acts, the learner learns.
HOST_CARTPOLE = {"architecture": "host", "num_envs": 8, "total_timesteps": 500_000, "eval_episodes": 8}
# Atari through envpool with Cleanba's cleanba_ppo.py settings: Machado et al.'s protocol (sticky actions 0.25, the full
# action space, no episodic life, 1 no-op, 27,000-step episodes (108,000 frames), clipped rewards; envpool's 4 frames
# skipped, 84x84 grey, 4 stacked), the IMPALA CNN (16, 32, 32 channels, then 256) shared by the policy and value heads,
# 128 environments (Cleanba's 64 in each of 2 actor threads) x 128 steps; 10M steps.
MACHADO = {"episodic_life": False, "repeat_action_probability": 0.25, "noop_max": 1, "full_action_space": True,
           "max_episode_steps": 27_000, "reward_clip": True}
ATARI = {"architecture": "host", "env_kwargs": MACHADO, "torso": "impala", "shared_torso": True, "activation": "relu",
         "hidden_sizes": (256,),
         "num_envs": 128, "num_steps": 128, "num_minibatches": 4, "update_epochs": 4, "lr": 2.5e-4, "gamma": 0.99,
         "gae_lambda": 0.95, "clip_eps": 0.1, "clip_value_loss": False, "ent_coef": 0.01, "vf_coef": 0.5,
         "max_grad_norm": 0.5, "total_timesteps": 10_000_000, "log_every": 10, "eval_every": 100,
         "checkpoint_every": 100, "eval_episodes": 8}
ATARI_GAMES = ("Breakout-v5", "Pong-v5")

PRESETS = {
    "CartPole-v1": {},
    "Acrobot-v1": {"env_name": "Acrobot-v1"},
    "Pendulum-v1": {"env_name": "Pendulum-v1", **CONTINUOUS},
    # The flag pays only at the end of a long drive: without normalised observations or with gamma 0.95-0.99
    # the policy settles on not moving (return 0); with both it solves the task (>= 90) for seeds 0-2.
    "MountainCarContinuous-v0": {"env_name": "MountainCarContinuous-v0", **CONTINUOUS, "gamma": 0.999},
    **{game: {"env_name": game, **MINATAR} for game in MINATAR_GAMES},
    **{f"{game}-mlp": {"env_name": game, **MINATAR_MLP} for game in MINATAR_GAMES},
    # Asterix with PureJaxRL's MLP stays below gymnax's published 15 (greedy 12.7 +- 4.8, seeds 0-2, 1e7 steps);
    # gymnax-blines' own Asterix PPO settings (agents/Asterix-MinAtar/ppo.yaml: two layers of 256, lr 5e-4
    # constant, gamma 0.999) reach 25.3 +- 4.8 (benchmarks/RESULTS.md).
    "Asterix-MinAtar-mlp": {"env_name": "Asterix-MinAtar", **MINATAR_MLP, "hidden_sizes": (256, 256), "lr": 5e-4,
                            "anneal_lr": False, "gamma": 0.999},
    "brax:inverted_pendulum": {**BRAX, "env_name": "brax:inverted_pendulum", "num_envs": 2048, "num_steps": 80, "num_minibatches": 40,
                               "update_epochs": 4, "gamma": 0.97, "ent_coef": 1e-2, "total_timesteps": 2_000_000,
                               "log_every": 1, "eval_every": 4},
    "brax:inverted_double_pendulum": {**BRAX, "env_name": "brax:inverted_double_pendulum", "num_envs": 2048,
                                      "num_steps": 80, "num_minibatches": 40, "update_epochs": 4, "gamma": 0.97, "ent_coef": 1e-2,
                                      "total_timesteps": 20_000_000, "log_every": 6, "eval_every": 12},
    "brax:ant": {**BRAX, "env_name": "brax:ant", "num_envs": 4096, "num_steps": 80, "num_minibatches": 40, "update_epochs": 4, "gamma": 0.97,
                 "ent_coef": 1e-2, "total_timesteps": 50_000_000, "hidden_sizes": (256, 256), "log_every": 8,
                 "eval_every": 16},
    "brax:halfcheetah": {**BRAX, "env_name": "brax:halfcheetah", "num_envs": 2048, "num_steps": 160,
                         "update_epochs": 8, "gamma": 0.95, "ent_coef": 1e-3, "total_timesteps": 50_000_000,
                         "hidden_sizes": (256, 256), "log_every": 8, "eval_every": 16},
    "brax:humanoid": {**BRAX, "env_name": "brax:humanoid", "num_envs": 2048, "num_steps": 160, "update_epochs": 8,
                      "gamma": 0.97, "ent_coef": 1e-3, "total_timesteps": 50_000_000, "hidden_sizes": (256, 256),
                      "log_every": 8, "eval_every": 16},
    **{f"craftax:{name}": {"env_name": f"craftax:{name}", **CRAFTAX}
       for name in ("Craftax-Classic-Symbolic-v1", "Craftax-Symbolic-v1")},
    **{f"jumanji:{name}": {"env_name": f"jumanji:{name}", **JUMANJI} for name in ("Snake-v1", "Maze-v0")},
    "MemoryChain-bsuite": {**MEMORY_CHAIN, **MEMORY},
    "MemoryChain-bsuite-ff": MEMORY_CHAIN,
    "MetaMaze-misc": {**META_MAZE, **MEMORY},
    "MetaMaze-misc-ff": META_MAZE,
    **{f"craftax:{name}-rnn": {"env_name": f"craftax:{name}", **CRAFTAX_RNN}
       for name in ("Craftax-Classic-Symbolic-v1", "Craftax-Symbolic-v1")},
    "envpool:CartPole-v1": {"env_name": "envpool:CartPole-v1", **HOST_CARTPOLE},
    "gymnasium:CartPole-v1": {"env_name": "gymnasium:CartPole-v1", **HOST_CARTPOLE},
    **{f"envpool:{game}": {"env_name": f"envpool:{game}", **ATARI} for game in ATARI_GAMES},
}

def get_config(arg=None):
  config = configs.run_fields("ppo", total_timesteps=500_000, num_envs=4, log_every=10, eval_every=100,
                              checkpoint_every=100)

  configs.rollout_fields(config, num_steps=128, update_epochs=4, num_minibatches=4)

  config.lr = 2.5e-4  # Adam step size
  config.anneal_lr = True  # decay the step size linearly to 0 over the run
  config.max_grad_norm = 0.5  # clip gradients to this global norm
  config.gamma = 0.99  # discount
  config.gae_lambda = 0.95  # GAE trace decay
  config.clip_eps = 0.2  # PPO ratio clip, also used for the value clip
  config.clip_value_loss = True  # clip the value update around the rollout's values
  config.norm_adv = True  # normalise advantages over each (global) minibatch
  config.ent_coef = 0.01  # entropy bonus weight
  config.vf_coef = 0.5  # value loss weight
  configs.normalization_fields(config)

  config.hidden_sizes = (64, 64)  # MLP widths of the (separate) policy and value networks
  config.activation = "tanh"  # "tanh" or "relu"
  config.torso = "mlp"  # "mlp", "cnn" for small images (MinAtar), "nature" or "impala" for Atari frames (84x84xC)
  config.shared_torso = False  # one torso feeding the policy and value heads (else a network each)
  configs.recurrent_fields(config)
  # Host environments (envpool:, gymnasium:, a gymnasium factory; ignored by JAX environments):
  config.actor_lag = 1  # acting runs one update behind learning (1, as Cleanba) or waits for every update (0)
  config.actor_device = 0  # the actor's policy runs on this process's local device of this index
  config.learner_devices = ()  # the learner's local devices (indices, e.g. (1, 2, 3)); () every device

  return configs.apply_preset(config, "ppo", PRESETS, arg)
