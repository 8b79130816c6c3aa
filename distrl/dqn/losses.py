"""DQN's own math as pure functions of arrays: prioritised replay's importance weights (Schaul et al. 2016).
Its targets are `distrl.rl.returns.double_q_target` of `n_step_return`s, its loss `distrl.rl.td_loss.q_loss`.
Hyperparameters are keyword-only.
"""

import jax


def importance_weights(probability, min_probability, *, beta: float):
  """Prioritised replay's importance-sampling weights, normalised so that the largest is 1.

      w_i = (N * P(i))^-beta / max_j (N * P(j))^-beta = (P(i) / min_j P(j))^-beta

  where P is the sampling distribution over the N transitions of the buffer (N cancels).

  Args:
    probability: P(i) of each sampled transition, shaped (B,).
    min_probability: min_j P(j) over the whole buffer, a scalar.
  Returns:
    w shaped (B,), in (0, 1].
  """
  return jax.lax.stop_gradient((probability / min_probability) ** -beta)
