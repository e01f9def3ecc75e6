"""hyper/mdn.py: the mixture density of Graves (2013) eq. 18-25 against a float64 NumPy reference,
its numerical safety, and the sampler (moments, end-of-stroke rate, bias and temperature)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyper import mdn


def _reference_log_prob(
  outputs, points, m, min_log_sigma=mdn.DEFAULT_MIN_LOG_SIGMA, max_rho=mdn.DEFAULT_MAX_RHO
):
  """Graves' eq. 18-25 written out directly in float64 (density, then log)."""
  y = np.asarray(outputs, np.float64)
  p = np.asarray(points, np.float64)
  e = 1.0 / (1.0 + np.exp(-y[..., 0]))
  part = lambda k: y[..., 1 + k * m : 1 + (k + 1) * m]
  pi = np.exp(part(0) - part(0).max(-1, keepdims=True))
  pi /= pi.sum(-1, keepdims=True)
  mx, my = part(1), part(2)
  sx, sy = np.exp(np.maximum(part(3), min_log_sigma)), np.exp(np.maximum(part(4), min_log_sigma))
  rho = np.tanh(np.clip(part(5), -np.arctanh(max_rho), np.arctanh(max_rho)))
  dx, dy = p[..., 0:1], p[..., 1:2]
  z = ((dx - mx) / sx) ** 2 + ((dy - my) / sy) ** 2 - 2 * rho * (dx - mx) * (dy - my) / (sx * sy)
  n = np.exp(-z / (2 * (1 - rho**2))) / (2 * np.pi * sx * sy * np.sqrt(1 - rho**2))
  pen = np.where(p[..., 2] > 0.5, e, 1 - e)
  return np.log((pi * n).sum(-1)) + np.log(pen)


def _random_case(rng, shape, m, scale=1.0):
  outputs = rng.normal(size=shape + (mdn.num_outputs(m),)) * scale
  points = np.concatenate([rng.normal(size=shape + (2,)), rng.integers(0, 2, shape + (1,))], -1)
  return outputs.astype(np.float32), points.astype(np.float32)


def test_output_count_is_the_papers():
  assert mdn.num_outputs(20) == 121  # section 4.3: 3 inputs, 121 outputs
  with pytest.raises(ValueError, match='needs 121 outputs, got 120'):
    mdn.split_outputs(jnp.zeros((2, 120)), 20)


def test_log_prob_matches_float64_reference():
  rng = np.random.default_rng(0)
  m = 5
  outputs, points = _random_case(rng, (4, 7), m)
  got = jax.jit(lambda y, p: mdn.log_prob(mdn.split_outputs(y, m), p))(outputs, points)
  want = _reference_log_prob(outputs, points, m)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
  nll = mdn.negative_log_likelihood(jnp.asarray(outputs), jnp.asarray(points), num_mixtures=m)
  np.testing.assert_allclose(np.asarray(nll), -want, rtol=1e-5, atol=1e-5)


def test_rho_near_one_matches_reference():
  # |ρ| = tanh(4.5) = 0.99975: 1 - ρ² is 5e-4, where a naive float32 1 - ρ*ρ loses about 3 digits.
  rng = np.random.default_rng(1)
  m = 3
  outputs, points = _random_case(rng, (6,), m)
  outputs[:, 1 + 5 * m :] = np.array([4.5, -4.5, 3.0], np.float32)
  outputs[:, 1 + 3 * m : 1 + 5 * m] = 0.0  # σ = 1
  points[:, :2] = outputs[:, 1 + m : 1 + 2 * m][:, :1].repeat(2, 1) * np.array([1.0, 0.999])
  got = jax.jit(lambda y, p: mdn.log_prob(mdn.split_outputs(y, m), p))(outputs, points)
  np.testing.assert_allclose(np.asarray(got), _reference_log_prob(outputs, points, m), rtol=2e-5, atol=2e-4)


def test_extreme_outputs_stay_finite_with_finite_gradients():
  m = 4
  outputs = np.zeros((5, mdn.num_outputs(m)), np.float32)
  outputs[0, 1 + 5 * m :] = 1e4  # ρ̂ huge: ρ -> +1 (clipped)
  outputs[1, 1 + 5 * m :] = -1e4  # ρ -> -1
  outputs[2, 1 + 3 * m : 1 + 5 * m] = -1e3  # σ -> 0 (floored)
  outputs[3, 1 : 1 + m] = 1e4  # one π logit dominates by far
  outputs[4, 0] = 1e4  # eos logit saturated
  points = np.array([[50.0, -50.0, 0], [1e3, 1e3, 1], [1e-6, 3.0, 0], [2.0, 2.0, 1], [0, 0, 0]], np.float32)

  def loss(y):
    return mdn.negative_log_likelihood(y, jnp.asarray(points), num_mixtures=m).sum()

  value, grad = jax.jit(jax.value_and_grad(loss))(jnp.asarray(outputs))
  assert np.isfinite(float(value))
  assert np.all(np.isfinite(np.asarray(grad)))
  per_point = mdn.negative_log_likelihood(jnp.asarray(outputs), jnp.asarray(points), num_mixtures=m)
  # σ at the floor bounds the density from above: -log p >= log 2π + 2 min_log_sigma... - eos term.
  assert (
    float(per_point.min())
    >= mdn.LOG_2PI + 2 * mdn.DEFAULT_MIN_LOG_SIGMA + 0.5 * math.log(1 - mdn.DEFAULT_MAX_RHO**2) - 1e-3
  )


def test_mask_removes_padding_from_value_and_gradient():
  rng = np.random.default_rng(2)
  m = 3
  outputs, points = _random_case(rng, (2, 5), m)
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float32)
  points[0, 3:, :2] = 1e3  # garbage in the padding

  def loss(y):
    return mdn.negative_log_likelihood(y, jnp.asarray(points), jnp.asarray(mask), num_mixtures=m).sum()

  value, grad = jax.jit(jax.value_and_grad(loss))(jnp.asarray(outputs))
  want = -_reference_log_prob(outputs, points, m)
  np.testing.assert_allclose(float(value), np.where(mask > 0, want, 0.0).sum(), rtol=1e-5)
  assert np.all(np.asarray(grad)[0, 3:] == 0.0)


def _fixed_mixture():
  m = 3
  y = np.zeros(mdn.num_outputs(m), np.float32)
  y[0] = math.log(0.3 / 0.7)  # e = 0.3
  y[1:4] = np.log([0.5, 0.3, 0.2])
  y[4:7] = [0.0, 3.0, -2.0]  # μx
  y[7:10] = [1.0, -1.0, 2.0]  # μy
  y[10:13] = np.log([1.0, 0.5, 0.3])  # σx
  y[13:16] = np.log([0.5, 1.5, 0.4])  # σy
  y[16:19] = np.arctanh([0.8, -0.5, 0.0])  # ρ
  return mdn.split_outputs(jnp.asarray(y), m)


def _sample_stats(mix, n, temperature=1.0, bias=0.0, seed=0):
  batched = jax.tree.map(lambda a: jnp.broadcast_to(a, (n,) + a.shape), mix)
  s = np.asarray(jax.jit(mdn.sample)(jax.random.PRNGKey(seed), batched, temperature, bias), np.float64)
  return s[:, :2].mean(0), np.cov(s[:, :2].T), s[:, 2].mean()


def test_samples_match_mixture_moments_and_eos_rate():
  mix = _fixed_mixture()
  n = 200_000
  mean, cov, eos = _sample_stats(mix, n)
  want_mean, want_cov, want_e = (np.asarray(a, np.float64) for a in mdn.moments(mix))
  # Standard errors: sqrt(var / n) for the mean, about var * sqrt(2 / n) for the covariance.
  np.testing.assert_allclose(mean, want_mean, atol=4 * np.sqrt(np.diag(want_cov).max() / n))
  np.testing.assert_allclose(cov, want_cov, atol=5 * np.diag(want_cov).max() * np.sqrt(2 / n) * 2)
  assert abs(eos - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)
  np.testing.assert_allclose(float(want_e), 0.3, rtol=1e-6)


def test_bias_sharpens_weights_and_shrinks_deviations():
  mix = _fixed_mixture()
  # b = 3: π ∝ π^4 and σ / e^3: the sample moments follow the adjusted mixture's ...
  adjusted = mdn.adjust(mix, bias=3.0)
  pi = np.asarray(jax.nn.softmax(adjusted.pi_logits))
  np.testing.assert_allclose(
    pi, np.array([0.5, 0.3, 0.2]) ** 4 / (np.array([0.5, 0.3, 0.2]) ** 4).sum(), rtol=1e-5
  )
  np.testing.assert_allclose(
    np.exp(np.asarray(adjusted.log_sigma_x)), np.array([1.0, 0.5, 0.3]) * math.exp(-3), rtol=1e-5
  )
  n = 100_000
  mean, cov, eos = _sample_stats(mix, n, bias=3.0, seed=1)
  want_mean, want_cov, _ = (np.asarray(a, np.float64) for a in mdn.moments(adjusted))
  np.testing.assert_allclose(mean, want_mean, atol=0.03)
  np.testing.assert_allclose(cov, want_cov, atol=0.05)
  # ... and the total variance falls below the unbiased one (less varied writing).
  assert np.trace(cov) < 0.5 * np.trace(np.asarray(mdn.moments(mix)[1]))
  assert abs(eos - 0.3) < 0.01  # the bias leaves the end-of-stroke probability alone


def test_temperature_scales_covariance_and_sharpens_eos():
  m = 1
  y = np.zeros(mdn.num_outputs(m), np.float32)
  y[0] = math.log(0.8 / 0.2)  # e = 0.8
  y[1:4] = [0.0, 1.0, -1.0]
  y[4], y[5], y[6] = math.log(2.0), math.log(0.5), math.atanh(0.6)
  mix = mdn.split_outputs(jnp.asarray(y), m)
  n = 200_000
  _, cov1, eos1 = _sample_stats(mix, n, temperature=1.0, seed=2)
  _, cov_half, eos_half = _sample_stats(mix, n, temperature=0.5, seed=3)
  want = np.array([[4.0, 0.6], [0.6, 0.25]])
  np.testing.assert_allclose(cov1, want, rtol=0.03, atol=0.01)
  np.testing.assert_allclose(cov_half, 0.5 * want, rtol=0.03, atol=0.01)
  # τ = 0.5 doubles the eos logit: σ(2 logit(0.8)) = 0.941.
  assert abs(eos1 - 0.8) < 0.006
  assert abs(eos_half - 1 / (1 + 0.25**2)) < 0.004
