"""distrl: reinforcement learning in JAX, compiled end to end and sharded over every device: PPO (feed-forward and
recurrent), IMPALA, DQN, PQN, SAC and TD3."""

from distrl import xla_options

xla_options.configure()
