"""SAC: soft actor-critic for continuous actions. Run:

  python -m distrl.launch --config=sac --workdir=runs/sac-pendulum
  python -m distrl.launch --config=sac:brax:inverted_pendulum   # a suite: pip install -e '.[brax]' first

The default is Pendulum-v1 with the well-known SAC settings (CleanRL's sac_continuous_action: 256-256 networks,
batches of 256, actor 3e-4 and critic 1e-3, tau 0.005, one gradient step per environment step, alpha learned
toward an entropy of -|A|), 8 environments, and 1,000 random steps before learning (CleanRL: 5,000 of a 1M-step
budget). TD3 (`--config=td3`) shares the presets.
"""

from distrl import configs

# Brax (SAC and TD3 alike): 64 environments, 32 gradient steps of 256 samples per step of them all (an update-to-data
# ratio of 1/2, as Brax's SAC examples: grad_updates_per_step 64 of 128 environments), normalised observations,
# gamma 0.97, step sizes 6e-4, 8,192 random steps first. With 64-64 networks inverted_pendulum reaches 1000 in 1.5e5
# steps on a 2-core CPU, beside Brax's own SAC (benchmarks/brax_trainers.py), and inverted_double_pendulum takes the
# same; halfcheetah takes Brax's 256-256 and an accelerator's budget.
BRAX = {"num_envs": 64, "train_frequency": 64, "gradient_steps": 32, "batch_size": 256, "normalize_obs": True,
        "gamma": 0.97, "actor_lr": 6e-4, "critic_lr": 6e-4, "learning_starts": 8_192, "buffer_size": 131_072,
        "eval_episodes": 32, "log_every": 20, "eval_every": 250, "checkpoint_every": 250,
        "env_kwargs": {"backend": "positional"}}
PRESETS = {
    "Pendulum-v1": {},
    # The flag pays only after a long drive that every push's cost discourages; with independent noise at every step
    # neither SAC nor TD3 reached it in 4e4-4.8e4 steps (README: it needs temporally correlated exploration).
    "MountainCarContinuous-v0": {"env_name": "MountainCarContinuous-v0", "total_timesteps": 100_000,
                                 "learning_starts": 10_000, "buffer_size": 100_000},
    "brax:inverted_pendulum": {**BRAX, "env_name": "brax:inverted_pendulum", "hidden_sizes": (64, 64),
                               "total_timesteps": 150_016},  # whole iterations of 64 steps
    "brax:inverted_double_pendulum": {**BRAX, "env_name": "brax:inverted_double_pendulum", "hidden_sizes": (64, 64),
                                      "total_timesteps": 300_032},
    "brax:halfcheetah": {**BRAX, "env_name": "brax:halfcheetah", "buffer_size": 1_048_576,
                         "total_timesteps": 5_000_000},
}


def get_config(arg=None):
  config = configs.run_fields("sac", total_timesteps=30_000, num_envs=8, log_every=50, eval_every=250,
                              checkpoint_every=250, env_name="Pendulum-v1")
  configs.replay_fields(config, buffer_size=50_000, batch_size=256, train_frequency=1, gradient_steps=1,
                        learning_starts=1_000, gamma=0.99, n_step=1, tau=0.005)
  configs.actor_critic_fields(config, actor_lr=3e-4, critic_lr=1e-3)
  configs.normalization_fields(config)

  config.initial_alpha = 1.0  # the temperature (entropy bonus weight) at the start
  config.learn_alpha = True  # learn alpha toward the target entropy (False: keep initial_alpha)
  config.target_entropy_per_dim = -1.0  # the target entropy, per action dimension (-|A| in all)

  return configs.apply_preset(config, "sac", PRESETS, arg)
