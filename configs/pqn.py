"""PQN. Run:

  python -m distrl.launch --config=pqn --workdir=runs/pqn-cartpole
  python -m distrl.launch --config=pqn:CartPole-v1-paper                     # the paper's CartPole settings
  python -m distrl.launch --config=pqn:Breakout-MinAtar
  python -m distrl.launch --config=pqn:Breakout-MinAtar-mlp                  # on a CPU
  python -m distrl.launch --config=pqn:MemoryChain-bsuite                    # with memory (a GRU)

The presets are the published settings of the paper's implementation (Gallici et al. 2024; github.com/mttga/purejaxql,
commit 47af6d7, purejaxql/config/alg/pqn_cartpole.yaml and pqn_minatar.yaml), translated:
EPS_DECAY (a fraction of the run) -> exploration_steps, REW_SCALE -> reward_scale, LAMBDA -> q_lambda,
NUM_EPOCHS -> update_epochs, HIDDEN_SIZE x NUM_LAYERS -> hidden_sizes, NORM_TYPE=layer_norm -> layer_norm.
Differences: minibatches are stratified by environment (device-count invariance) where the paper
shuffles all of a rollout's steps together; the loss is mean(td^2) rather than 0.5 mean(td^2);
initialisation is orthogonal; the MinAtar CNN pads its convolution ("SAME") and does not divide
observations by 255 (they are booleans).

The default is the paper's CartPole settings with a network a CPU trains fast: 64-64 instead of 256-256 (a
seventh of the arithmetic per step), a learning rate of 3e-4 instead of 1e-4, and epsilon decaying to 0.05
instead of 0.2. Seeds 0-2 reach a training return of 475 after 82k-111k steps (PPO's default: 148k-215k)
and end with greedy evaluations of 500.
"""

from distrl import configs

# pqn_minatar.yaml (tuned on Asterix, used for all four games): 128 envs x 32 steps, 2 epochs of 32 minibatches,
# lr 5e-4 annealed, epsilon 1 -> 0.05 over the first 10% of 1e7 steps, lambda 0.65; a 16-filter 3x3 convolution and
# one 128-unit layer, LayerNorm after each.
MINATAR = {"torso": "cnn", "hidden_sizes": (128,), "num_envs": 128, "num_steps": 32, "update_epochs": 2,
           "num_minibatches": 32, "lr": 5e-4, "end_e": 0.05, "exploration_steps": 1_000_000, "q_lambda": 0.65,
           "reward_scale": 1.0, "total_timesteps": 10_000_000, "log_every": 10, "eval_every": 100,
           "checkpoint_every": 100, "eval_episodes": 64}

MINATAR_GAMES = ("Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar")

# pqn_cartpole.yaml: 32 envs x 64 steps, 4 epochs of 16 minibatches, a 256-256 network, lr 1e-4 annealed, epsilon
# 1 -> 0.2 over the first 20% of 5e5 steps, lambda 0.95, rewards x 0.1.
PAPER_CARTPOLE = {"hidden_sizes": (256, 256), "lr": 1e-4, "end_e": 0.2}

# Memory (a recurrent core, distrl/rl/recurrent.py) on MemoryChain-bsuite (configs/ppo.py says why it needs it), and
# its "-ff" twin without memory.
MEMORY_CHAIN = {"env_name": "MemoryChain-bsuite", "num_envs": 32, "num_minibatches": 4, "total_timesteps": 200_000,
                "exploration_steps": 40_000, "eval_every": 10, "checkpoint_every": 10, "eval_episodes": 64}

PRESETS = {
    "CartPole-v1": {},
    "CartPole-v1-paper": PAPER_CARTPOLE,
    "Acrobot-v1": {"env_name": "Acrobot-v1"},  # the CartPole settings (the paper's yaml names Acrobot as the other)
    **{game: {"env_name": game, **MINATAR} for game in MINATAR_GAMES},
    # The same with an MLP in place of the convolution (two LayerNorm layers of 128), for CPUs.
    **{f"{game}-mlp": {"env_name": game, **MINATAR, "torso": "mlp", "hidden_sizes": (128, 128)} for game in MINATAR_GAMES},
    "MemoryChain-bsuite": {**MEMORY_CHAIN, "recurrent": "gru", "recurrent_size": 64},
    "MemoryChain-bsuite-ff": MEMORY_CHAIN,
}

def get_config(arg=None):
  config = configs.run_fields("pqn", total_timesteps=500_000, num_envs=32, log_every=2, eval_every=20,
                              checkpoint_every=20)

  configs.rollout_fields(config, num_steps=64, update_epochs=4, num_minibatches=16)

  config.lr = 3e-4  # RAdam step size
  config.anneal_lr = True  # decay the step size linearly to 0 over the run
  config.max_grad_norm = 10.0  # clip gradients to this global norm
  config.gamma = 0.99  # discount
  config.q_lambda = 0.95  # Q(lambda) trace decay: 0 is one-step Q-learning
  config.reward_scale = 0.1  # rewards are multiplied by this before the targets (after scale_rewards, if on)
  configs.normalization_fields(config)

  config.start_e = 1.0  # exploration rate at the start
  config.end_e = 0.05  # exploration rate after exploration_steps
  config.exploration_steps = 100_000  # environment steps over which epsilon decays linearly (20% of the run)

  config.hidden_sizes = (64, 64)  # widths of the Q-network's hidden layers
  config.layer_norm = True  # LayerNorm before every hidden activation: what keeps PQN stable without a target network
  config.dueling = False  # Q = V(s) + A(s, a) - mean_a A(s, a) from two heads (Wang et al. 2016)
  config.activation = "relu"  # "tanh" or "relu"
  config.torso = "mlp"  # "mlp", or "cnn" for image observations (MinAtar)
  configs.recurrent_fields(config)

  return configs.apply_preset(config, "pqn", PRESETS, arg)
