"""IMPALA: an actor-critic with V-trace, for actors acting with parameters several updates old. Run:

  python -m distrl.launch --config=impala --workdir=runs/impala-cartpole
  python -m distrl.launch --config=impala:envpool:CartPole-v1 --config.actor_lag=4   # actors 4 updates behind
  python -m distrl.launch --config=impala:envpool:Breakout-v5     # Cleanba's cleanba_impala.py settings (10M steps)

Host environments (envpool:, gymnasium:, a gymnasium factory) are where a lag arises: their actors run `actor_lag`
updates behind the learner and V-trace corrects for it. On JAX environments the rollout is the learner's own
(rho = 1: A2C with GAE(lambda) advantages). The default is CartPole-v1.
"""

from distrl import configs
from distrl.configs import ppo

# Atari through envpool with Cleanba's cleanba_impala.py settings: the PPO presets' environments (Machado et al.'s
# protocol) and IMPALA CNN, 128 environments (64 in each of 2 actor threads) of 20 steps, 4 minibatches, lr 6e-4
# annealed, gradients clipped at 40. Cleanba's optimizer is RMSProp (decay 0.99, eps 0.01); distrl's is Adam.
ATARI = {**{k: v for k, v in ppo.ATARI.items() if k not in ("gae_lambda", "clip_eps", "clip_value_loss")},
         "num_steps": 20, "num_minibatches": 4, "update_epochs": 1, "lr": 6e-4, "max_grad_norm": 40.0,
         "ent_coef": 0.01, "vf_coef": 0.5}

PRESETS = {
    "CartPole-v1": {},
    "Acrobot-v1": {"env_name": "Acrobot-v1"},
    "envpool:CartPole-v1": {"env_name": "envpool:CartPole-v1", **ppo.HOST_CARTPOLE},
    "gymnasium:CartPole-v1": {"env_name": "gymnasium:CartPole-v1", **ppo.HOST_CARTPOLE},
    **{f"envpool:{game}": {"env_name": f"envpool:{game}", **ATARI} for game in ppo.ATARI_GAMES},
}


def get_config(arg=None):
  config = configs.run_fields("impala", total_timesteps=500_000, num_envs=8, log_every=10, eval_every=100,
                              checkpoint_every=100)
  configs.rollout_fields(config, num_steps=32, update_epochs=1, num_minibatches=1)

  config.lr = 1e-3  # Adam step size
  config.anneal_lr = True  # decay the step size linearly to 0 over the run
  config.max_grad_norm = 0.5  # clip gradients to this global norm
  config.gamma = 0.99  # discount
  config.vtrace_lambda = 1.0  # V-trace's trace decay (the paper's 1; lower mixes in one-step values)
  config.rho_clip = 1.0  # the importance ratios of the value targets are clipped at this (rho bar)
  config.pg_rho_clip = 1.0  # the importance ratios of the policy gradient's advantages are clipped at this
  config.norm_adv = False  # normalise advantages over each (global) minibatch
  config.ent_coef = 0.01  # entropy bonus weight
  config.vf_coef = 0.5  # value loss weight
  configs.normalization_fields(config)

  config.hidden_sizes = (64, 64)  # MLP widths of the policy and value networks
  config.activation = "tanh"  # "tanh" or "relu"
  config.torso = "mlp"  # "mlp", "cnn" for small images (MinAtar), "nature" or "impala" for Atari frames (84x84xC)
  config.shared_torso = False  # one torso feeding the policy and value heads (else a network each)
  config.recurrent = ""  # impala learns without memory for now
  # Host environments (envpool:, gymnasium:, a gymnasium factory; ignored by JAX environments):
  config.actor_lag = 1  # rollouts act with the parameters of this many updates before the one that learns from them
  config.actor_device = 0  # the actor's policy runs on this process's local device of this index
  config.learner_devices = ()  # the learner's local devices (indices, e.g. (1, 2, 3)); () every device

  return configs.apply_preset(config, "impala", PRESETS, arg)
