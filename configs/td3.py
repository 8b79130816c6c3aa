"""TD3: twin delayed deep deterministic policy gradient, for continuous actions. Run:

  python -m distrl.launch --config=td3 --workdir=runs/td3-pendulum
  python -m distrl.launch --config=td3:brax:inverted_pendulum   # a suite: pip install -e '.[brax]' first

The default is Pendulum-v1 with the well-known TD3 settings (CleanRL's td3_continuous_action: 256-256 networks,
batches of 256, step sizes 3e-4, tau 0.005, exploration noise 0.1, target noise 0.2 clipped at 0.5, the actor every
second gradient step), 8 environments, and 1,000 random steps before learning. It shares SAC's presets.
"""

from distrl import configs
from distrl.configs import sac


def get_config(arg=None):
  config = configs.run_fields("td3", total_timesteps=30_000, num_envs=8, log_every=50, eval_every=250,
                              checkpoint_every=250, env_name="Pendulum-v1")
  configs.replay_fields(config, buffer_size=50_000, batch_size=256, train_frequency=1, gradient_steps=1,
                        learning_starts=1_000, gamma=0.99, n_step=1, tau=0.005)
  configs.actor_critic_fields(config, actor_lr=3e-4, critic_lr=3e-4)
  configs.normalization_fields(config)

  # Noise in the actor's units, [-1, 1] per dimension (scaled with the action to the environment's bounds).
  config.exploration_noise = 0.1  # std of the Gaussian noise added to the actor's action when exploring
  config.policy_noise = 0.2  # std of the target policy smoothing noise
  config.noise_clip = 0.5  # the smoothing noise is clipped to [-noise_clip, noise_clip]
  config.policy_frequency = 2  # gradient steps per actor step (and target update)

  return configs.apply_preset(config, "td3", sac.PRESETS, arg)
