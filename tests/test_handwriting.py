"""hyper/handwriting.py: the handwriting model (any cell as a value) and its scan sampler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyper import cells, mdn
from hyper.handwriting import HandwritingModel, sample


def _points(rng, b, t):
  p = rng.normal(size=(b, t, 3)).astype(np.float32)
  p[..., 2] = rng.random((b, t)) < 0.1
  return jnp.asarray(p)


def _apply(model):
  return jax.jit(model.apply, static_argnames=('return_diagnostics',))


def _init(model, b=2, t=5, seed=0):
  x = jnp.zeros((b, t, 3))
  return model.init(jax.random.PRNGKey(seed), x)['params']


def test_parameter_count_of_the_lstm900_row():
  # Table 5's LSTM: 3 inputs, 900 units, 121 outputs: 4*900*(3 + 900) + 4*900 + 900*121 + 121.
  model = HandwritingModel(cells.LSTMCell(900), num_mixtures=20)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 3))))['params']
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
  assert count == 4 * 900 * 903 + 4 * 900 + 900 * 121 + 121 == 3_363_421


@pytest.mark.parametrize(
  'cell,layers', [(cells.LayerNormLSTMCell(8), 2), (cells.HyperLSTMCell(8, hyper_features=6), 1)]
)
def test_windows_with_carried_state_equal_one_pass(cell, layers):
  model = HandwritingModel(cell, num_layers=layers, num_mixtures=3)
  params = _init(model)
  x = _points(np.random.default_rng(0), 2, 12)
  whole, carry_whole = _apply(model)({'params': params}, x)
  assert whole.shape == (2, 12, mdn.num_outputs(3))
  a, carry = _apply(model)({'params': params}, x[:, :6])
  b, carry = _apply(model)({'params': params}, x[:, 6:], carry)
  np.testing.assert_allclose(np.concatenate([a, b], 1), whole, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6), carry, carry_whole)


def test_reset_starts_a_line_from_zero_state_and_mask_freezes_it():
  model = HandwritingModel(cells.LSTMCell(8), num_mixtures=2)
  params = _init(model)
  rng = np.random.default_rng(1)
  line_a, line_b = _points(rng, 1, 4), _points(rng, 1, 6)
  packed = jnp.concatenate([line_a, line_b], 1)
  reset = np.zeros((1, 10), bool)
  reset[0, [0, 4]] = True
  out, _ = _apply(model)({'params': params}, packed, reset=jnp.asarray(reset))
  alone, carry_b = _apply(model)({'params': params}, line_b)
  np.testing.assert_allclose(out[:, 4:], alone, rtol=1e-5, atol=1e-6)
  padded = jnp.concatenate([line_b, 100 * jnp.ones((1, 3, 3))], 1)
  mask = jnp.asarray([[1] * 6 + [0] * 3], jnp.float32)
  out_p, carry_p = _apply(model)({'params': params}, padded, mask=mask)
  # Padding: zero hidden state into the head (its bias only), whatever the padded inputs were.
  np.testing.assert_allclose(out_p[0, 6:], np.broadcast_to(params['mdn']['output']['bias'], (3, 13)))
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7), carry_p, carry_b)


def test_scan_sampler_equals_a_step_by_step_loop_and_primes():
  model = HandwritingModel(cells.LSTMCell(8), num_mixtures=3)
  params = _init(model)
  prime = _points(np.random.default_rng(2), 1, 5)[0]
  rng = jax.random.PRNGKey(3)
  got = sample(model, params, rng, 4, temperature=0.8, bias=0.5, prime=prime, batch_size=2)
  assert got['points'].shape == (2, 4, 3)
  # The same draws by hand: read the prime, then draw and feed back one point at a time.
  y, carry = _apply(model)({'params': params}, jnp.broadcast_to(prime, (2, 5, 3)), None)
  y = y[:, -1]
  draw = jax.jit(lambda key, y: mdn.sample(key, model.mixture(y), 0.8, 0.5))
  for i, key in enumerate(jax.random.split(rng, 4)):
    point = draw(key, y)
    np.testing.assert_allclose(got['points'][:, i], point, rtol=1e-5, atol=1e-5)
    y, carry = _apply(model)({'params': params}, point[:, None], carry)
    y = y[:, -1]
  assert set(np.unique(np.asarray(got['points'][..., 2]))) <= {0.0, 1.0}
  assert got['prime_weight_change']['layer_0'].shape == (2, 5, 4)
  assert np.all(np.asarray(got['weight_change']['layer_0']) == 0)  # fixed weights never change
  # temperature and bias are traced, not static: new values reuse the compiled sampler.
  before = sample._cache_size()
  other = sample(model, params, rng, 4, temperature=0.5, bias=1.0, prime=prime, batch_size=2)
  assert sample._cache_size() == before
  assert not np.allclose(other['points'], got['points'])


def test_sampler_weight_change_equals_reading_the_sample_back():
  # z_init='random_embedding': with the reference init z_h is constant at first (no weight change).
  model = HandwritingModel(
    cells.HyperLSTMCell(8, hyper_features=6, z_init='random_embedding'), num_mixtures=2
  )
  params = _init(model, b=1, t=2)
  got = sample(model, params, jax.random.PRNGKey(0), 9, temperature=1.0, bias=0.0)
  change = np.asarray(got['weight_change']['layer_0'][0])  # [9, 4]
  # The hypernetwork moves the weights at every step but the first (zero input and zero state there).
  assert change.shape == (9, 4) and change[1:].min() > 0
  # Teacher-forced over [start, points[:-1]]: step t's output drew point t, with the same weight change.
  inputs = jnp.concatenate([jnp.zeros((1, 1, 3)), got['points'][:, :-1]], 1)
  _, _, diag = _apply(model)({'params': params}, inputs, None, return_diagnostics=True)
  np.testing.assert_allclose(np.asarray(diag['layer_0']['weight_change'][0]), change, rtol=1e-4, atol=1e-7)
