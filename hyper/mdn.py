"""Mixture density output for pen offsets (Graves 2013, "Generating Sequences With RNNs", eq. 18-25).

The network's output vector y_t (6M + 1 numbers; M = 20 gives the paper's 121) is split into

    ê_t (1)  end-of-stroke logit      e_t = σ(ê_t)                                    (18)
    π̂_t (M)  mixture weight logits    π_t^j = softmax(π̂_t)^j                          (19)
    μ̂_t (2M) means                    μ_t^j = μ̂_t^j                                   (20)
    σ̂_t (2M) log deviations           σ_t^j = exp(max(σ̂_t^j, log σ_min))              (21)
    ρ̂_t (M)  correlation              ρ_t^j = tanh(clip(ρ̂_t^j, ±atanh ρ_max))          (22)

(Graves writes e_t = 1 / (1 + exp(ê_t)); we use σ(ê_t), the same family with the sign flipped.) The
probability of the next offset x_{t+1} = (Δx, Δy, eos) is

    p(x_{t+1} | y_t) = Σ_j π_t^j N(Δx, Δy | μ_t^j, σ_t^j, ρ_t^j) · (e_t if eos else 1 - e_t)      (23)

with the bivariate normal of eq. 24-25. Everything is computed in log space: log N from the
standardised offsets as log N = -log 2π - log σx - log σy - ½ log(1-ρ²) - ½ [(zx - ρ zy)² / (1-ρ²) + zy²]
(the same quadratic form as eq. 25, without its cancellation), log(1-ρ²) = 2 log sech ρ̂ exactly, and the
mixture by logsumexp. The σ floor and the ρ clip keep float32 values and gradients finite for any
network output. The loss is -log p in nats (eq. 26), summed over a line's points.

Sampling (`sample`) follows Graves' biased sampling (section 5.4, eq. 61-62): π = softmax(π̂ (1 + b)),
σ = exp(σ̂ - b); b = 0 is the model's own distribution and larger b gives neater, less varied writing. A
temperature τ (as in sketch-rnn) further divides the mixture and end-of-stroke logits by τ and multiplies
the covariances by τ (σ by √τ); τ = 1 leaves them unchanged.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

Array = jax.Array

LOG_2PI = math.log(2.0 * math.pi)
DEFAULT_MIN_LOG_SIGMA = -7.0  # σ >= 9e-4 in the (normalised) units of the offsets
DEFAULT_MAX_RHO = 1.0 - 1e-4  # |ρ| <= 0.9999: log(1 - ρ²) >= -8.5


def num_outputs(num_mixtures: int) -> int:
  """6M + 1: the size of the output layer for M mixture components (121 for M = 20)."""
  return 6 * num_mixtures + 1


class Mixture(NamedTuple):
  """Parameters of the output distribution; every field has the leading axes of the outputs.

  eos_logit [...]: ê (e = σ(ê)). pi_logits [..., M]: π̂ (unnormalised). mu_x, mu_y, log_sigma_x,
  log_sigma_y [..., M]: μ and log σ after the floor. rho [..., M]: ρ after the clip.
  log_one_minus_rho2 [..., M]: log(1 - ρ²), computed exactly from the clipped ρ̂.
  """

  eos_logit: Array
  pi_logits: Array
  mu_x: Array
  mu_y: Array
  log_sigma_x: Array
  log_sigma_y: Array
  rho: Array
  log_one_minus_rho2: Array

  @property
  def log_pi(self) -> Array:
    return jax.nn.log_softmax(self.pi_logits, axis=-1)


def split_outputs(
  outputs: Array,
  num_mixtures: int,
  *,
  min_log_sigma: float = DEFAULT_MIN_LOG_SIGMA,
  max_rho: float = DEFAULT_MAX_RHO,
) -> Mixture:
  """Outputs [..., 6M + 1] (ordered ê, π̂, μ̂x, μ̂y, σ̂x, σ̂y, ρ̂) -> `Mixture` (eq. 18-22), float32."""
  m = num_mixtures
  if outputs.shape[-1] != num_outputs(m):
    raise ValueError(f'a mixture of {m} components needs {num_outputs(m)} outputs, got {outputs.shape[-1]}')
  if not 0.0 < max_rho < 1.0:
    raise ValueError(f'max_rho must be in (0, 1), got {max_rho}')
  y = outputs.astype(jnp.promote_types(outputs.dtype, jnp.float32))
  part = lambda k: y[..., 1 + k * m : 1 + (k + 1) * m]
  max_pre = math.atanh(max_rho)
  rho_pre = jnp.clip(part(5), -max_pre, max_pre)
  a = jnp.abs(rho_pre)
  # 1 - tanh(a)² = sech(a)² = 4 e^{-2a} / (1 + e^{-2a})²: no cancellation near |ρ| = 1.
  log_one_minus_rho2 = 2.0 * (math.log(2.0) - a - jax.nn.softplus(-2.0 * a))
  return Mixture(
    eos_logit=y[..., 0],
    pi_logits=part(0),
    mu_x=part(1),
    mu_y=part(2),
    log_sigma_x=jnp.maximum(part(3), min_log_sigma),
    log_sigma_y=jnp.maximum(part(4), min_log_sigma),
    rho=jnp.tanh(rho_pre),
    log_one_minus_rho2=log_one_minus_rho2,
  )


def component_log_density(mix: Mixture, dx: Array, dy: Array) -> Array:
  """log N(Δx, Δy | μ^j, σ^j, ρ^j) of every component (eq. 24-25): [..., M] for dx, dy [...]."""
  zx = (dx[..., None] - mix.mu_x) * jnp.exp(-mix.log_sigma_x)
  zy = (dy[..., None] - mix.mu_y) * jnp.exp(-mix.log_sigma_y)
  quad = jnp.square(zx - mix.rho * zy) * jnp.exp(-mix.log_one_minus_rho2) + jnp.square(zy)
  return -LOG_2PI - mix.log_sigma_x - mix.log_sigma_y - 0.5 * mix.log_one_minus_rho2 - 0.5 * quad


def log_prob(mix: Mixture, points: Array) -> Array:
  """log p(x_{t+1} | y_t) of eq. 23 in nats: [...] for points [..., 3] = (Δx, Δy, eos in {0, 1})."""
  points = points.astype(mix.mu_x.dtype)
  offsets = jax.nn.logsumexp(mix.log_pi + component_log_density(mix, points[..., 0], points[..., 1]), axis=-1)
  eos = points[..., 2]
  pen = eos * jax.nn.log_sigmoid(mix.eos_logit) + (1.0 - eos) * jax.nn.log_sigmoid(-mix.eos_logit)
  return offsets + pen


def negative_log_likelihood(
  outputs: Array,
  targets: Array,
  mask: Array | None = None,
  *,
  num_mixtures: int,
  min_log_sigma: float = DEFAULT_MIN_LOG_SIGMA,
  max_rho: float = DEFAULT_MAX_RHO,
) -> Array:
  """-log p per point in nats (eq. 26), zero where `mask` is 0 (padding): [...] float32.

  A line's loss (Table 5's figure, averaged over lines) is the sum of this over its points;
  `jnp.where` rather than a product: padded positions give exactly 0 and no gradient, whatever finite
  values they hold.
  """
  nll = -log_prob(split_outputs(outputs, num_mixtures, min_log_sigma=min_log_sigma, max_rho=max_rho), targets)
  if mask is None:
    return nll
  return jnp.where(mask.astype(bool), nll, 0.0)


def adjust(mix: Mixture, temperature: float | Array = 1.0, bias: float | Array = 0.0) -> Mixture:
  """The sampling distribution: Graves' bias b (eq. 61-62) and a temperature τ, as documented above.

  π̂ -> π̂ (1 + b) / τ, log σ -> log σ - b + ½ log τ, ê -> ê / τ; μ and ρ unchanged.
  """
  temperature = jnp.asarray(temperature, mix.mu_x.dtype)
  bias = jnp.asarray(bias, mix.mu_x.dtype)
  half_log_t = 0.5 * jnp.log(temperature)
  return mix._replace(
    eos_logit=mix.eos_logit / temperature,
    pi_logits=mix.pi_logits * (1.0 + bias) / temperature,
    log_sigma_x=mix.log_sigma_x - bias + half_log_t,
    log_sigma_y=mix.log_sigma_y - bias + half_log_t,
  )


def sample(rng: Array, mix: Mixture, temperature: float | Array = 1.0, bias: float | Array = 0.0) -> Array:
  """One offset per leading index from the (adjusted) mixture: [..., 3] float32 = (Δx, Δy, eos)."""
  mix = adjust(mix, temperature, bias)
  k_pi, k_z, k_eos = jax.random.split(rng, 3)
  j = jax.random.categorical(k_pi, mix.pi_logits, axis=-1)
  pick = lambda a: jnp.take_along_axis(a, j[..., None], axis=-1)[..., 0]
  mu_x, mu_y, rho = pick(mix.mu_x), pick(mix.mu_y), pick(mix.rho)
  s_x, s_y = jnp.exp(pick(mix.log_sigma_x)), jnp.exp(pick(mix.log_sigma_y))
  z = jax.random.normal(k_z, mu_x.shape + (2,), mu_x.dtype)
  # Cholesky factor of [[σx², ρσxσy], [ρσxσy, σy²]].
  dx = mu_x + s_x * z[..., 0]
  dy = mu_y + s_y * (rho * z[..., 0] + jnp.sqrt(jnp.exp(pick(mix.log_one_minus_rho2))) * z[..., 1])
  eos = jax.random.bernoulli(k_eos, jax.nn.sigmoid(mix.eos_logit)).astype(dx.dtype)
  return jnp.stack([dx, dy, eos], axis=-1)


def moments(mix: Mixture) -> tuple[Array, Array, Array]:
  """(mean [..., 2], covariance [..., 2, 2] of (Δx, Δy), end-of-stroke probability [...]) of a mixture."""
  pi = jax.nn.softmax(mix.pi_logits, axis=-1)
  mu = jnp.stack([mix.mu_x, mix.mu_y], axis=-1)  # [..., M, 2]
  sx, sy = jnp.exp(mix.log_sigma_x), jnp.exp(mix.log_sigma_y)
  cov_j = jnp.stack(
    [jnp.stack([sx * sx, mix.rho * sx * sy], -1), jnp.stack([mix.rho * sx * sy, sy * sy], -1)], -2
  )  # [..., M, 2, 2]
  mean = jnp.einsum('...j,...jd->...d', pi, mu)
  second = jnp.einsum('...j,...jde->...de', pi, cov_j + mu[..., :, None] * mu[..., None, :])
  return mean, second - mean[..., :, None] * mean[..., None, :], jax.nn.sigmoid(mix.eos_logit)


class MixtureDensityHead(nn.Module):
  """Dense layer to the 6M + 1 mixture outputs (eq. 17: y_t = b_y + W_hy h_t), float32."""

  num_mixtures: int = 20
  dtype: jnp.dtype | None = None
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, h: Array) -> Array:
    y = nn.Dense(
      num_outputs(self.num_mixtures), dtype=self.dtype, param_dtype=self.param_dtype, name='output'
    )(h)
    return y.astype(jnp.float32)
