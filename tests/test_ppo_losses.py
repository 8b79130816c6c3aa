"""The PPO loss against numbers computed by hand (GAE's tests are in test_returns.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distrl.ppo import losses

pytestmark = pytest.mark.unit


def _loss(clip_value_loss):
  # ratio = [1.5, 0.5]; advantage = [1, -2]; clip 0.2.
  return losses.ppo_loss(
      log_prob=jnp.log(jnp.array([1.5, 0.5])), old_log_prob=jnp.zeros(2), advantage=jnp.array([1.0, -2.0]),
      value=jnp.array([1.0, 2.0]), old_value=jnp.array([0.5, 2.0]), target=jnp.array([2.0, 1.0]),
      entropy=jnp.array([0.6, 0.4]), clip_eps=0.2, vf_coef=0.5, ent_coef=0.01, clip_value_loss=clip_value_loss)


def test_ppo_loss_hand_computed():
  terms = _loss(clip_value_loss=True)
  # surrogate: min(1.5*1, 1.2*1) = 1.2; min(0.5*-2, 0.8*-2) = -1.6  ->  policy = -(1.2 - 1.6)/2 = 0.2
  assert float(terms.policy) == pytest.approx(0.2)
  # value: unclipped errors [1, 1]; clipped values [0.5 + 0.2, 2.0] -> errors [1.69, 1]; max -> 0.5*mean = 0.6725
  assert float(terms.value) == pytest.approx(0.6725)
  assert float(terms.entropy) == pytest.approx(0.5)
  assert float(terms.total) == pytest.approx(0.2 + 0.5 * 0.6725 - 0.01 * 0.5)
  # approx_kl = mean((r - 1) - log r) = ((0.5 - log 1.5) + (-0.5 - log 0.5)) / 2
  assert float(terms.approx_kl) == pytest.approx((0.5 - np.log(1.5) - 0.5 - np.log(0.5)) / 2, rel=1e-5)
  assert float(terms.clip_fraction) == pytest.approx(1.0)


def test_ppo_loss_without_value_clipping():
  assert float(_loss(clip_value_loss=False).value) == pytest.approx(0.5)


def test_ppo_loss_gradient_is_zero_where_the_ratio_is_clipped():
  # Sample 0: ratio 1.5 > 1.2 with a positive advantage, the clipped branch: no gradient.
  # Sample 1: ratio 0.9 inside [0.8, 1.2]: d/dlogp of -(r * A)/2 = -0.9 * -2 / 2 = 0.9.
  zeros = jnp.zeros(2)
  grad = jax.grad(lambda lp: losses.ppo_loss(
      log_prob=lp, old_log_prob=zeros, advantage=jnp.array([1.0, -2.0]), value=zeros, old_value=zeros, target=zeros,
      entropy=zeros, clip_eps=0.2, vf_coef=0.5, ent_coef=0.0, clip_value_loss=True).policy)(jnp.log(jnp.array([1.5, 0.9])))
  assert float(grad[0]) == 0.0
  assert float(grad[1]) == pytest.approx(0.9)
