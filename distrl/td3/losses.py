"""TD3's own math (Fujimoto et al. 2018), as pure functions of arrays, actions in [-1, 1]; the clipped double-Q
target (`distrl.rl.returns`) and the critic loss (`distrl.rl.twin_critic`) are shared with SAC."""

import jax.numpy as jnp


def smoothed_target_action(target_action, noise, *, policy_noise: float, noise_clip: float):
  """Target policy smoothing: a' = clip(mu'(s') + clip(policy_noise * noise, -noise_clip, noise_clip), -1, 1), for
  the target actor's actions (B, d) and standard normal noise (B, d)."""
  return jnp.clip(target_action + jnp.clip(policy_noise * noise, -noise_clip, noise_clip), -1.0, 1.0)


def explore(action, noise, *, exploration_noise: float):
  """Gaussian exploration: clip(mu(s) + exploration_noise * noise, -1, 1)."""
  return jnp.clip(action + exploration_noise * noise, -1.0, 1.0)


def actor_loss(q):
  """-mean_b Q_1(s_b, mu(s_b)): the deterministic policy gradient through the first critic only; q (B, 2)."""
  return -jnp.mean(q[:, 0])
