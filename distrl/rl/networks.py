"""Flax modules: MLP and CNN torsos with orthogonal init, the PPO actor-critic and the (dueling) Q-network, the
heads a recurrent core (`distrl.rl.recurrent`) feeds, and the continuous actor and twin critic of SAC and TD3."""

import functools
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from distrl.rl import distributions
from distrl.rl.noisy import NoisyDense
from distrl.rl.returns import categorical, quantile
from distrl.errors import ConfigError

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}


def orthogonal_dense(features: int, scale: float) -> nn.Dense:
  """A dense layer with orthogonal weights of gain `scale` and zero bias (the PPO initialisation)."""
  return nn.Dense(features, kernel_init=nn.initializers.orthogonal(scale), bias_init=nn.initializers.zeros)


class MLP(nn.Module):
  """Hidden layers with gain sqrt(2), then a linear head with gain `head_scale`.

  Input `x` is shaped (..., *obs_shape) with `obs_ndim` trailing observation axes, which are
  flattened; the output is (..., out_features), or the last hidden layer's features if
  `out_features` is None. With `layer_norm`, each hidden layer is dense -> LayerNorm -> activation
  (as PQN's Q-network, Gallici et al. 2024).
  """

  hidden_sizes: Sequence[int]
  out_features: int | None
  head_scale: float
  activation: str = "tanh"
  obs_ndim: int = 1
  layer_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[: x.ndim - self.obs_ndim] + (-1,)).astype(jnp.float32)
    for size in self.hidden_sizes:
      x = orthogonal_dense(size, np.sqrt(2))(x)
      x = ACTIVATIONS[self.activation](nn.LayerNorm()(x) if self.layer_norm else x)
    return x if self.out_features is None else orthogonal_dense(self.out_features, self.head_scale)(x)


def conv_as_matmul(lhs, rhs, window_strides, padding, *, lhs_dilation, rhs_dilation, dimension_numbers,
                   feature_group_count, precision=None):
  """`lax.conv_general_dilated` as distrl's torsos call it (NHWC input, HWIO kernel; stride 1 with "SAME" zero
  padding (ConvMLP), or any stride with "VALID" (NatureCNN)), computed as one matrix product: an input (N, H, W, C)
  and a kernel (kh, kw, C, F) with strides (s, t) give

      y[n, i, j, f] = sum_{a, b, c} xpad[n, s i + a, t j + b, c] * kernel[a, b, c, f]
                    = (patches @ kernel.reshape(kh * kw * C, F))[n, i, j, f],

  where `patches[n, i, j]` concatenates the kh * kw shifted windows xpad[n, s i + a, t j + b, :] in (a, b)
  order, which is the order of the kernel's reshaped rows. The same sums as the convolution, added in
  another order (equal to float tolerance), and the same parameters. XLA's CPU convolution (and its
  gradient) is far slower than its matrix products on MinAtar's small grids, and inside a loop on Atari's frames
  (Nature CNN gradients of 4 minibatches of 64 frames: 10 s in a scan against 0.7 s outside one); on GPUs and TPUs the
  convolution is the faster one (see `ConvMLP.conv`).
  """
  del precision
  kh, kw, channels, features = rhs.shape
  (s, t), same = tuple(window_strides), padding == "SAME"
  simple = ((padding == "VALID" or (same and (s, t) == (1, 1) and kh % 2 == 1 and kw % 2 == 1))
            and tuple(lhs_dilation) == (1, 1) and tuple(rhs_dilation) == (1, 1) and feature_group_count == 1
            and tuple(dimension_numbers.lhs_spec) == (0, 3, 1, 2) and tuple(dimension_numbers.rhs_spec) == (3, 2, 0, 1))
  if not simple:
    raise NotImplementedError("conv_as_matmul computes NHWC/HWIO convolutions: stride 1 'SAME', or 'VALID'")
  batch = lhs.shape[0]
  padded = jnp.pad(lhs, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0))) if same else lhs
  height, width = (padded.shape[1] - kh) // s + 1, (padded.shape[2] - kw) // t + 1
  patches = jnp.concatenate([padded[:, a:a + s * (height - 1) + 1:s, b:b + t * (width - 1) + 1:t, :]
                             for a in range(kh) for b in range(kw)], axis=-1)
  # One row per output pixel: as a 2-D product, the kernel's gradient (patches^T @ cotangent, a reduction over
  # every pixel of the batch) is ~25% faster on a CPU than contracting three axes of the 4-D arrays.
  rows = patches.reshape(batch * height * width, kh * kw * channels)
  return (rows @ rhs.reshape(kh * kw * channels, features)).reshape(batch, height, width, features)


CONVOLUTIONS = {"xla": jax.lax.conv_general_dilated, "matmul": conv_as_matmul}


def default_convolution() -> str:
  """The faster formulation on the backend being traced for: "matmul" on CPU, XLA's convolution elsewhere."""
  return "matmul" if jax.default_backend() == "cpu" else "xla"


class ConvMLP(nn.Module):
  """For image observations (..., H, W, C), e.g. MinAtar's 10x10 grids: a 3x3 convolution with
  `channels` filters and ReLU, flattened into an `MLP`.

  `conv` picks how the convolution is computed, not what: "xla" (`lax.conv_general_dilated`),
  "matmul" (`conv_as_matmul`), or "auto" (`default_convolution()`, at trace time). All give the
  same parameters (`Conv_0/kernel` (3, 3, C, channels), `Conv_0/bias`), so checkpoints load either way.
  """

  hidden_sizes: Sequence[int]
  out_features: int | None
  head_scale: float
  activation: str = "relu"
  channels: int = 16
  layer_norm: bool = False
  conv: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    batch = x.shape[:-3]
    x = x.reshape((-1,) + x.shape[-3:]).astype(jnp.float32)
    conv = CONVOLUTIONS[default_convolution() if self.conv == "auto" else self.conv]
    x = nn.Conv(self.channels, (3, 3), kernel_init=nn.initializers.orthogonal(np.sqrt(2)),
                bias_init=nn.initializers.zeros, conv_general_dilated=conv, name="Conv_0")(x)
    x = nn.relu(nn.LayerNorm()(x) if self.layer_norm else x).reshape(batch + (-1,))
    return MLP(self.hidden_sizes, self.out_features, self.head_scale, self.activation, layer_norm=self.layer_norm)(x)


class NatureCNN(nn.Module):
  """The DQN Nature paper's torso for Atari frames (..., 84, 84, C) of bytes: scaled to [0, 1], convolutions of 32
  8x8 (stride 4), 64 4x4 (stride 2) and 64 3x3 filters with ReLU, flattened into an `MLP` (Cleanba's: one layer of
  512)."""

  hidden_sizes: Sequence[int]
  out_features: int | None
  head_scale: float
  activation: str = "relu"
  conv: str = "auto"  # as ConvMLP's

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    batch = x.shape[:-3]
    x = x.reshape((-1,) + x.shape[-3:]).astype(jnp.float32) / 255.0
    conv = CONVOLUTIONS[default_convolution() if self.conv == "auto" else self.conv]
    for channels, size, stride in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
      x = nn.relu(nn.Conv(channels, (size, size), (stride, stride), padding="VALID", conv_general_dilated=conv,
                          kernel_init=nn.initializers.orthogonal(np.sqrt(2)), bias_init=nn.initializers.zeros)(x))
    return MLP(self.hidden_sizes, self.out_features, self.head_scale, self.activation)(x.reshape(batch + (-1,)))


class ResidualBlock(nn.Module):
  """x + conv(relu(conv(relu(x)))), 3x3 convolutions of x's channels (the IMPALA CNN's)."""

  conv: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = CONVOLUTIONS[default_convolution() if self.conv == "auto" else self.conv]
    y = x
    for _ in range(2):
      y = nn.Conv(x.shape[-1], (3, 3), conv_general_dilated=conv)(nn.relu(y))
    return x + y


class ImpalaCNN(nn.Module):
  """The IMPALA paper's residual torso for Atari frames (..., 84, 84, C) of bytes: scaled to [0, 1], then for 16, 32
  and 32 channels a 3x3 convolution, a 3x3 max pool of stride 2 and two residual blocks; ReLU, flattened into an `MLP`
  (Cleanba's: one layer of 256). Convolutions keep flax's default initialisation, as Cleanba's do."""

  hidden_sizes: Sequence[int]
  out_features: int | None
  head_scale: float
  activation: str = "relu"
  conv: str = "auto"  # as ConvMLP's
  channels: Sequence[int] = (16, 32, 32)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    batch = x.shape[:-3]
    x = x.reshape((-1,) + x.shape[-3:]).astype(jnp.float32) / 255.0
    conv = CONVOLUTIONS[default_convolution() if self.conv == "auto" else self.conv]
    for channels in self.channels:
      x = nn.Conv(channels, (3, 3), conv_general_dilated=conv)(x)
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
      x = ResidualBlock(self.conv)(ResidualBlock(self.conv)(x))
    return MLP(self.hidden_sizes, self.out_features, self.head_scale, self.activation)(nn.relu(x).reshape(batch + (-1,)))


FRAME_TORSOS = {"nature": NatureCNN, "impala": ImpalaCNN}  # for Atari frames (84, 84, C) of bytes


def torso(name: str, hidden_sizes: Sequence[int], out_features: int | None, head_scale: float, activation: str,
          obs_ndim: int, layer_norm: bool = False) -> nn.Module:
  """An "mlp" (any observation, flattened), a "cnn" (image observations), or a CNN for Atari frames ("nature",
  "impala"), with a linear head (none if `out_features` is None: the features), optionally LayerNorm before every
  hidden activation."""
  if activation not in ACTIVATIONS:
    raise ConfigError(f"activation={activation!r} must be one of {', '.join(ACTIVATIONS)}")
  if name == "cnn":
    if obs_ndim != 3:
      raise ConfigError(f"torso='cnn' needs image observations (H, W, C); these have {obs_ndim} axis/axes "
                        f"(use --config.torso=mlp)")
    return ConvMLP(hidden_sizes, out_features, head_scale, activation, layer_norm=layer_norm)
  if name in FRAME_TORSOS:
    if obs_ndim != 3:
      raise ConfigError(f"torso={name!r} needs Atari frames (84, 84, C); these have {obs_ndim} axis/axes")
    return FRAME_TORSOS[name](hidden_sizes, out_features, head_scale, activation)
  if name == "mlp":
    return MLP(hidden_sizes, out_features, head_scale, activation, obs_ndim, layer_norm)
  raise ConfigError(f"torso={name!r} must be 'mlp', 'cnn', 'nature' or 'impala'")


class ActorCritic(nn.Module):
  """Separate policy and value networks, as in the PPO reference implementations; or, with `shared_torso`, one torso
  whose features feed a linear policy head (gain 0.01) and a linear value head (gain 1), as Cleanba's Atari agents.

  `policy(obs)` -> a batch (...) of action distributions: categorical over `num_actions` logits, or,
  if `continuous`, a Gaussian over `num_actions` dimensions with a learned state-independent
  log-std (initialised to 0); `value(obs)` -> (...); `__call__` -> both (one pass of a shared torso).
  """

  num_actions: int  # discrete actions, or the dimensions of a continuous action
  hidden_sizes: Sequence[int]
  activation: str = "tanh"
  obs_ndim: int = 1
  torso: str = "mlp"
  continuous: bool = False
  shared_torso: bool = False

  def setup(self):
    if self.shared_torso:
      self.features = torso(self.torso, self.hidden_sizes, None, 1.0, self.activation, self.obs_ndim)
      self.policy_head, self.value_head = orthogonal_dense(self.num_actions, 0.01), orthogonal_dense(1, 1.0)
    else:
      self.actor = torso(self.torso, self.hidden_sizes, self.num_actions, 0.01, self.activation, self.obs_ndim)
      self.critic = torso(self.torso, self.hidden_sizes, 1, 1.0, self.activation, self.obs_ndim)
    if self.continuous:
      self.log_std = self.param("log_std", nn.initializers.zeros, (self.num_actions,))

  def _distribution(self, out: jax.Array):
    if self.continuous:
      return distributions.DiagonalNormal(mean=out, log_std=jnp.broadcast_to(self.log_std, out.shape))
    return distributions.Categorical(logits=out)

  def policy(self, obs: jax.Array):
    return self._distribution(self.policy_head(self.features(obs)) if self.shared_torso else self.actor(obs))

  def value(self, obs: jax.Array) -> jax.Array:
    return (self.value_head(self.features(obs)) if self.shared_torso else self.critic(obs))[..., 0]

  def __call__(self, obs: jax.Array):
    if self.shared_torso:
      features = self.features(obs)
      return self._distribution(self.policy_head(features)), self.value_head(features)[..., 0]
    return self.policy(obs), self.value(obs)


class QNetwork(nn.Module):
  """Q-values (..., num_actions) from observations (..., *obs_shape): a torso, then a linear head.

  With `dueling` (Wang et al. 2016) the torso's features feed two linear heads, a state value
  V(s) (...,) and advantages A(s, a) (..., num_actions), combined as
      Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a'),
  which keeps V and A identifiable (a constant moved between them would leave Q unchanged).

  With a `distributional` head each action's is a distribution of returns, `num_atoms` numbers an action (the
  dueling pair atom by atom, as in Rainbow), and Q(s, a) its mean; `distribution=True` returns them
  (..., num_actions, num_atoms):
      "c51"  logits over evenly spaced returns from `v_min` to `v_max` (Bellemare et al. 2017)
      "qr"   the returns at the quantile midpoints (QR-DQN, Dabney et al. 2018)
      "iqn"  the returns at quantile fractions `tau` (..., N) the caller gives (IQN, Dabney et al. 2018): the
             torso's features times a cosine embedding of each fraction (`implicit_quantiles`), through the head;
             (..., num_actions, N). Without `tau`, at the `num_quantile_samples` midpoints (2k + 1) / 2K: fixed
             fractions, which greedy evaluation acts on (acting and learning sample theirs).

  With `noisy` its head layers (both of a dueling pair) are `noisy.NoisyDense` of initial scale `noisy_sigma0`
  (noisy networks, Fortunato et al. 2018, as Rainbow's heads); the torso stays deterministic. They draw from the
  rng stream "noise" (`rngs={"noise": key}`) and are their mean weights without it, as greedy evaluation acts.
  """

  num_actions: int
  hidden_sizes: Sequence[int]
  activation: str = "relu"
  obs_ndim: int = 1
  torso: str = "mlp"
  dueling: bool = False
  layer_norm: bool = False
  distributional: str = "none"
  num_atoms: int = 51
  v_min: float = -10.0
  v_max: float = 10.0
  noisy: bool = False
  noisy_sigma0: float = 0.5
  num_quantile_samples: int = 32  # IQN: K, the fractions without `tau`
  quantile_embedding_dim: int = 64  # IQN: n, the cosines that embed a fraction

  @nn.compact
  def __call__(self, obs: jax.Array, distribution: bool = False, tau: jax.Array | None = None) -> jax.Array:
    features = torso(self.torso, self.hidden_sizes, None, 1.0, self.activation, self.obs_ndim, self.layer_norm)(obs)
    head = functools.partial(NoisyDense, sigma0=self.noisy_sigma0) if self.noisy else linear_head
    if self.distributional == "none":
      return q_values(features, self.num_actions, self.dueling, head)
    if self.distributional == "iqn":
      if tau is None:
        tau = jnp.broadcast_to(quantile.midpoints(self.num_quantile_samples),
                               features.shape[:-1] + (self.num_quantile_samples,))
      atoms = implicit_quantiles(features, tau, self.num_actions, self.quantile_embedding_dim, self.dueling, head)
    else:
      atoms = q_atoms(features, self.num_actions, self.num_atoms, self.dueling, head)
    return atoms if distribution else self.mean(atoms)

  def mean(self, distributions: jax.Array) -> jax.Array:
    """Q-values (...) from the head's distributions (..., num_atoms): C51's expected return, QR's and IQN's mean
    quantile."""
    if self.distributional == "c51":
      return categorical.mean(distributions, self.atoms())
    return jnp.mean(distributions, axis=-1)

  def atoms(self) -> jax.Array:
    """C51's support: the returns its distributions are over, (num_atoms,)."""
    return categorical.support(self.num_atoms, self.v_min, self.v_max)


def linear_head(features: int) -> nn.Dense:
  """A Q-network's head layer: linear, orthogonal weights of gain 1."""
  return orthogonal_dense(features, 1.0)


Head = Callable[[int], nn.Module]  # a head layer of so many outputs: `linear_head`, or a `NoisyDense`


def q_values(features: jax.Array, num_actions: int, dueling: bool, head: Head = linear_head) -> jax.Array:
  """Q-values (..., num_actions) from features (..., F): one head layer, or the dueling pair (`q_atoms` with one
  number an action). Called inside a module's `nn.compact` method, whose parameters its layers become."""
  return q_atoms(features, num_actions, 1, dueling, head)[..., 0]


def q_atoms(features: jax.Array, num_actions: int, num_atoms: int, dueling: bool,
            head: Head = linear_head) -> jax.Array:
  """Each action's return distribution (..., num_actions, num_atoms), C51's logits or QR-DQN's quantiles, from
  features (..., F): one head layer, or the dueling pair combined atom by atom. Called inside a module's
  `nn.compact` method."""
  shape = features.shape[:-1] + (num_actions, num_atoms)
  if not dueling:
    return head(num_actions * num_atoms)(features).reshape(shape)
  value = head(num_atoms)(features)[..., None, :]
  advantage = head(num_actions * num_atoms)(features).reshape(shape)
  return value + advantage - jnp.mean(advantage, axis=-2, keepdims=True)


def cosine_features(tau: jax.Array, embedding_dim: int) -> jax.Array:
  """IQN's inputs of a fraction's embedding: cos(pi i tau), i = 0 .. n - 1, (..., n) from fractions (...)."""
  return jnp.cos(jnp.pi * jnp.arange(embedding_dim, dtype=jnp.float32) * tau[..., None])


class QuantileEmbedding(nn.Module):
  """IQN's embedding of quantile fractions (..., N) into the torso's feature space (..., N, features):

      phi_j(tau) = ReLU(sum_{i=0}^{n-1} cos(pi i tau) w_ij + b_j)

  a dense layer (orthogonal weights of gain sqrt(2), as the torso's hidden layers) on `cosine_features`."""

  features: int
  embedding_dim: int = 64  # n

  @nn.compact
  def __call__(self, tau: jax.Array) -> jax.Array:
    return nn.relu(orthogonal_dense(self.features, np.sqrt(2))(cosine_features(tau, self.embedding_dim)))


def implicit_quantiles(features: jax.Array, tau: jax.Array, num_actions: int, embedding_dim: int, dueling: bool,
                       head: Head = linear_head) -> jax.Array:
  """IQN's quantiles Z_tau(s, a) (..., num_actions, N) at fractions tau (..., N) from the torso's features psi(s)
  (..., F): the head (`q_values`: one layer, or the dueling pair) on psi(s) * phi(tau), elementwise, one row per
  fraction. Called inside a module's `nn.compact` method."""
  phi = QuantileEmbedding(features.shape[-1], embedding_dim)(tau)  # (..., N, F)
  return jnp.swapaxes(q_values(features[..., None, :] * phi, num_actions, dueling, head), -1, -2)


class QHead(nn.Module):
  """`q_values` as a module: the head of a recurrent Q-network (`recurrent.Recurrent`)."""

  num_actions: int
  dueling: bool = False

  @nn.compact
  def __call__(self, features: jax.Array) -> jax.Array:
    return q_values(features, self.num_actions, self.dueling)


class PolicyValueHead(nn.Module):
  """The heads of a recurrent actor-critic (`recurrent.Recurrent`): from the shared core's output, a policy as
  `ActorCritic.policy` gives it (a linear layer of gain 0.01; a state-independent log-std if `continuous`) and a value
  (a linear layer of gain 1). -> (distribution, value)."""

  num_actions: int
  continuous: bool = False

  @nn.compact
  def __call__(self, hidden: jax.Array):
    out = orthogonal_dense(self.num_actions, 0.01)(hidden)
    value = orthogonal_dense(1, 1.0)(hidden)[..., 0]
    if self.continuous:
      log_std = self.param("log_std", nn.initializers.zeros, (self.num_actions,))
      return distributions.DiagonalNormal(mean=out, log_std=jnp.broadcast_to(log_std, out.shape)), value
    return distributions.Categorical(logits=out), value


def flat(obs: jax.Array, obs_ndim: int) -> jax.Array:
  """Observations (..., *obs_shape) as float vectors (..., prod(obs_shape))."""
  return obs.reshape(obs.shape[: obs.ndim - obs_ndim] + (-1,)).astype(jnp.float32)


class TwinCritic(nn.Module):
  """Two independent Q-networks of (observation, action): (..., *obs_shape), (..., action_dim) -> (..., 2).

  Each is an MLP on the concatenated observation and action (actions in [-1, 1]), with a linear head of gain 1;
  the pair is one `nn.vmap` over stacked parameters, so both run as one batched matrix product.
  """

  hidden_sizes: Sequence[int]
  activation: str = "relu"
  obs_ndim: int = 1
  layer_norm: bool = False

  @nn.compact
  def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
    x = jnp.concatenate([flat(obs, self.obs_ndim), action.astype(jnp.float32)], -1)
    twins = nn.vmap(MLP, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None, out_axes=-1,
                    axis_size=2)
    return twins(self.hidden_sizes, 1, 1.0, self.activation, layer_norm=self.layer_norm)(x)[..., 0, :]


# The range of SAC's log-std: tanh of the network's output mapped onto it (as in CleanRL's and SB3's SAC).
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class ContinuousActor(nn.Module):
  """A policy over actions in [-1, 1]^action_dim from observations (..., *obs_shape): an MLP with a head of gain 0.01.

  `stochastic` (SAC): a `TanhNormal` whose mean and log-std (in [LOG_STD_MIN, LOG_STD_MAX]) depend on the state.
  Else (TD3): the deterministic action tanh(head), (..., action_dim).
  """

  action_dim: int
  hidden_sizes: Sequence[int]
  stochastic: bool
  activation: str = "relu"
  obs_ndim: int = 1

  @nn.compact
  def __call__(self, obs: jax.Array):
    out = MLP(self.hidden_sizes, self.action_dim * (2 if self.stochastic else 1), 0.01, self.activation,
              self.obs_ndim)(obs)
    if not self.stochastic:
      return jnp.tanh(out)
    mean, raw = jnp.split(out, 2, axis=-1)
    log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(raw) + 1.0)
    return distributions.TanhNormal(mean=mean, log_std=log_std)
