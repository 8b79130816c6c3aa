"""distrl: PPO and DQN in JAX, compiled end to end and sharded over every device."""

from distrl import xla_options

xla_options.configure()
