"""Rainbow (Hessel et al. 2018): DQN with all six of its extensions, as `algo` "dqn" with other defaults. Run:

  python -m distrl.launch --config=rainbow --workdir=runs/rainbow-cartpole
  python -m distrl.launch --config=rainbow:Breakout-MinAtar      # Asterix-, Freeway-, Seaquest-, SpaceInvaders-MinAtar

The six: C51's distributions (51 atoms), 3-step returns, prioritised replay, a dueling head, noisy networks in place
of epsilon-greedy (noisy head layers: epsilon is 0, as Rainbow's), double Q-learning; Adam.

The MinAtar presets are the settings of "Revisiting Rainbow" (Obando-Ceron & Castro, ICML 2021), from the paper's
gin files (github.com/JohanSamir/revisiting_rainbow, revisiting_rainbow/Configs/rainbow_breakout.gin and the other
games', identical but for the game) and its agent (Agents/rainbow_agent_new.py): Adam of step size 1e-4 and epsilon
3.125e-4, batches of 32 from 100k transitions, learning from 1000, a gradient step every 4 environment steps, the
target network copied every 1000, gamma 0.99, 3-step returns, 51 atoms from -100 to 100, priorities
sqrt(loss + 1e-10) (alpha 0.5), importance weights of exponent 0.5; their network is a 16-filter 3x3 convolution
whose features feed the noisy dueling heads directly (hidden_sizes=()); 10M steps. Where distrl differs: 16
environments in parallel (one there; the update-to-data ratio is theirs), the importance exponent annealed from 0.5
to 1 (constant 0.5 there), gradients clipped at norm 10 (none there), orthogonal initialisation of the convolution
(Glorot uniform there), and the noisy layers' sigma0 0.5 (the noisy-networks paper's; that code's 0.1).

The CartPole-v1 default takes that paper's CartPole settings (Configs/rainbow_cartpole.gin: batches of 128 from 50k
transitions, learning from 500, a gradient step every 2 environment steps, the target copied every 100, Adam 1e-4
and 3.125e-4, normalised observations: by fixed bounds there, running statistics here) on DQN's CartPole network
(configs/dqn.py: 64-64 with LayerNorm, whose noisy layers are the heads; 2 x 512 noisy layers there) and 10
environments; the support is [-100, 100] (CartPole's discounted returns reach 100: 1 a step, gamma 0.99), and the
budget 100k steps (30k of CartPole-v0's 200-step episodes there). Greedy evaluations (2-core CPU, one device): seed
0 155, 273, 411 at 10k, 20k, 30k steps and 500 from 70k to the end; seeds 1 and 2 (60k-step runs) 500 from 15k and
55k on. Without normalised observations seed 0 stalled near 110 (40k steps; 500 by 40k with epsilon-greedy instead
of noise): the noisy heads alone explore less than Rainbow's all-noisy fully connected layers.
"""

from distrl import configs
from distrl.configs import dqn

# Rainbow's parts, on top of any DQN config.
RAINBOW = {"distributional": "c51", "num_atoms": 51, "n_step": 3, "prioritized": True, "dueling": True, "noisy": True,
           "double_dqn": True}

# Revisiting Rainbow's MinAtar settings (module docstring) over DQN's MinAtar preset (its environments, CNN torso
# and logging).
MINATAR = {**dqn.MINATAR, **RAINBOW, "hidden_sizes": (), "batch_size": 32, "buffer_size": 100_000,
           "learning_starts": 1_000, "train_frequency": 4, "target_update_interval": 1_000, "lr": 1e-4,
           "adam_eps": 3.125e-4, "gamma": 0.99, "v_min": -100.0, "v_max": 100.0, "priority_alpha": 0.5,
           "priority_beta": 0.5, "priority_eps": 1e-10, "total_timesteps": 10_000_000}

GAMES = ("Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar", "Seaquest-MinAtar")
PRESETS = {"CartPole-v1": {}, **{game: {"env_name": game, **MINATAR} for game in GAMES}}

# The CartPole-v1 default: Revisiting Rainbow's CartPole settings on DQN's CartPole network (module docstring).
CARTPOLE = {**RAINBOW, "batch_size": 128, "buffer_size": 50_000, "learning_starts": 500, "train_frequency": 2,
            "target_update_interval": 100, "lr": 1e-4, "adam_eps": 3.125e-4, "anneal_lr": False, "v_min": -100.0,
            "v_max": 100.0, "priority_alpha": 0.5, "priority_beta": 0.5, "priority_eps": 1e-10,
            "normalize_obs": True, "total_timesteps": 100_000, "log_every": 100, "eval_every": 1_000,
            "checkpoint_every": 1_000}


def get_config(arg=None):
  config = dqn.get_config()
  config.update(CARTPOLE)
  return configs.apply_preset(config, "rainbow", PRESETS, arg)
