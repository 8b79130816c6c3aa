"""DQN. Run:

  python -m distrl.launch --config=dqn --workdir=runs/dqn-cartpole
  python -m distrl.launch --config=dqn:Acrobot-v1
  python -m distrl.launch --config=dqn:CleanRL      # the well-known single-file DQN's settings
  python -m distrl.launch --config=dqn --config.distributional=c51   # C51: distributions of returns
  python -m distrl.launch --config=dqn --config.distributional=qr    # QR-DQN: quantiles of returns
  python -m distrl.launch --config=dqn --config.distributional=iqn   # IQN: the quantile function, at sampled fractions
  python -m distrl.launch --config=dqn --config.noisy=True           # noisy networks explore, not epsilon-greedy
  python -m distrl.launch --config=rainbow                           # all of the above: configs/rainbow.py

The default is CartPole-v1 with CleanRL's dqn_jax sizes and schedule (10 environments, a 10,000-transition
buffer, a gradient step every 10 environment steps, epsilon 1 -> 0.05 over 250k steps, target copied every
500 steps) and a smaller, steadier learner: a 64-64 Q-network with LayerNorm, batches of 64, 3-step returns
and a learning rate annealed to 0 (final greedy evaluation 500 for seeds 0-2, on 1 and on 2 devices).
CleanRL's own learner (120-84 network, batches of 128, one-step targets, constant learning rate) reaches 500
too but often falls back before the run ends (seed 2's final evaluation: 193), and costs ~2x more per step
on a CPU. Without LayerNorm (with or without 3-step returns, double DQN and annealing) some seeds ended at
149-439.
"""

from distrl import configs

# MinAtar: the settings of the MinAtar paper's DQN (Young & Tian 2019; github.com/kenjyoung/MinAtar examples/dqn.py):
# a 16-filter 3x3 convolution and 128 units, batches of 32 from 100k transitions, one gradient step per environment
# step, the target network copied every 1000 steps, epsilon 1 -> 0.1 over 100k steps after 5000 random ones, Huber
# loss, step size 2.5e-4 (centered RMSProp there, Adam here), 5M steps; 16 environments in parallel here (one
# there), so that the environments split over devices. 5M gradient steps: a GPU run.
MINATAR = {"torso": "cnn", "hidden_sizes": (128,), "num_envs": 16, "train_frequency": 1, "batch_size": 32,
           "buffer_size": 100_000, "learning_starts": 5_000, "target_update_interval": 1_000, "start_e": 1.0,
           "end_e": 0.1, "exploration_steps": 105_000, "loss": "huber", "lr": 2.5e-4, "total_timesteps": 5_000_000,
           "layer_norm": False, "double_dqn": False, "n_step": 1, "anneal_lr": False, "log_every": 500,
           "eval_every": 5_000, "checkpoint_every": 5_000, "eval_episodes": 64}

PRESETS = {
    "CartPole-v1": {},
    "Acrobot-v1": {"env_name": "Acrobot-v1"},
    "CleanRL": {"hidden_sizes": (120, 84), "batch_size": 128, "layer_norm": False, "double_dqn": False, "n_step": 1,
                "anneal_lr": False},
    **{game: {"env_name": game, **MINATAR}
       for game in ("Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar")},
}

def get_config(arg=None):
  config = configs.run_fields("dqn", total_timesteps=500_000, num_envs=10, log_every=500, eval_every=5_000,
                              checkpoint_every=5_000)

  configs.replay_fields(config, buffer_size=10_000, batch_size=64, train_frequency=10, gradient_steps=1,
                        learning_starts=10_000, gamma=0.99, n_step=3, tau=1.0)

  config.lr = 2.5e-4  # Adam step size
  config.adam_eps = 1e-8  # Adam's epsilon, added to the root of its second-moment estimate (optax's default)
  config.anneal_lr = True  # decay the step size linearly to 0 over the run's gradient steps
  config.max_grad_norm = 10.0  # clip gradients to this global norm
  config.loss = "mse"  # TD loss: "mse" or "huber" (C51's loss is the KL divergence)
  config.double_dqn = False  # pick the bootstrap action with the online network
  config.prioritized = False  # sample transitions in proportion to priority (Schaul et al. 2016), not uniformly
  config.priority_alpha = 0.6  # priority = (|TD error| + priority_eps)^alpha; 0 is uniform
  config.priority_beta = 0.4  # importance-weight exponent at the start, annealed linearly to 1 over the run
  config.priority_eps = 1e-6  # added to |TD error| so that no transition's priority is 0
  config.target_update_interval = 500  # environment steps between target network updates
  config.distributional = "none"  # each action's return distribution: "c51" (C51), "qr" (QR-DQN), "iqn" (IQN)
  config.num_atoms = 51  # C51: the returns its distributions are over, from v_min to v_max; QR-DQN: its quantiles
  config.v_min = -100.0  # C51's lowest return; CartPole's discounted returns reach 100 (1 a step, gamma 0.99)
  config.v_max = 100.0  # C51's highest return (Atari's clipped rewards: [-10, 10])
  # IQN, at the paper's and Dopamine's values:
  config.num_tau_samples = 64  # N: fractions sampled per transition for the online network's quantiles
  config.num_tau_prime_samples = 64  # N': fractions sampled per transition for the target network's quantiles
  config.num_quantile_samples = 32  # K: fractions whose mean quantile is Q when choosing an action (a* and acting)
  config.quantile_embedding_dim = 64  # n: the cosines cos(pi i tau), i < n, that embed a fraction
  configs.normalization_fields(config)

  config.noisy = False  # noisy head layers explore (Fortunato et al. 2018) in place of epsilon-greedy: epsilon 0
  config.noisy_sigma0 = 0.5  # the noisy layers' initial noise: sigma = noisy_sigma0 / sqrt(fan-in)
  config.start_e = 1.0  # exploration rate at the start
  config.end_e = 0.05  # exploration rate after exploration_steps
  config.exploration_steps = 250_000  # environment steps over which epsilon decays linearly

  config.hidden_sizes = (64, 64)  # MLP widths of the Q-network
  config.dueling = False  # Q = V(s) + A(s, a) - mean_a A(s, a) from two heads (Wang et al. 2016)
  config.layer_norm = True  # LayerNorm before every hidden activation of the Q-network
  config.activation = "relu"  # "tanh" or "relu"
  config.torso = "mlp"  # "mlp", or "cnn" for image observations (MinAtar)

  return configs.apply_preset(config, "dqn", PRESETS, arg)
