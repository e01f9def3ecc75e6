"""Tests for hyper/static.py: the sec. 3.1 generator, tiling, and the pure-functional hypernetwork."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hyper import static
from hyper.static import (
  KernelGenerator,
  StaticHypernetwork,
  conv_kernel_rule,
  count_params,
  generate_kernels,
  init_generator,
  tile_kernels,
)

BASIC = (3, 3, 2, 4)  # f_h, f_w, N_in, N_out (tiny)
N_Z = 5


def numpy_generator(gen, z, basic_shape):
  """Eq. 1-2 literally, one input channel i at a time: a_i = W_i z + B_i; K_i = <W_out, a_i> + B_out."""
  f_h, f_w, n_in, n_out = basic_shape
  w_in, b_in = np.asarray(gen['w_in'], np.float64), np.asarray(gen['b_in'], np.float64)
  w_out, b_out = np.asarray(gen['w_out'], np.float64), np.asarray(gen['b_out'], np.float64)
  d = w_in.shape[1] // n_in
  kernel = np.zeros((f_h, f_w, n_in, n_out))
  for i in range(n_in):
    W_i = w_in[:, i * d : (i + 1) * d].T  # [d, N_z]
    B_i = b_in[i * d : (i + 1) * d]  # [d]
    a_i = W_i @ np.asarray(z, np.float64) + B_i  # [d]
    K_i = w_out.T @ a_i + b_out  # [N_out * f_h * f_w], laid out (N_out, f_h, f_w)
    kernel[:, :, i, :] = K_i.reshape(n_out, f_h, f_w).transpose(1, 2, 0)
  return kernel


def random_generator(rng, basic_shape=BASIC, n_z=N_Z, d=None):
  """Generator params with non-zero biases, so the test sees the bias terms too."""
  gen = init_generator(rng, basic_shape, n_z, d)
  keys = jax.random.split(jax.random.fold_in(rng, 1), 2)
  gen['b_in'] = jax.random.normal(keys[0], gen['b_in'].shape)
  gen['b_out'] = jax.random.normal(keys[1], gen['b_out'].shape)
  return gen


def test_generator_matches_numpy_eq_1_2():
  gen = random_generator(jax.random.key(0), d=3)
  assert gen['w_in'].shape == (N_Z, BASIC[2] * 3) and gen['w_out'].shape == (3, BASIC[3] * 9)
  zs = jax.random.normal(jax.random.key(1), (2, 3, N_Z))
  got = np.asarray(generate_kernels(gen, zs, BASIC))
  assert got.shape == (2, 3, *BASIC)
  for idx in np.ndindex(2, 3):
    np.testing.assert_allclose(got[idx], numpy_generator(gen, zs[idx], BASIC), rtol=1e-5, atol=1e-5)


def test_generator_param_counts_and_module_form():
  # 16x16x3x3 from N_z = d = 64 (ResNets): 64*1024 + 1024 + 64*144 + 144; 7x7x16x16 from N_z = 4 (MNIST).
  res = jax.eval_shape(lambda: init_generator(jax.random.key(0), (3, 3, 16, 16), 64))
  mnist = jax.eval_shape(lambda: init_generator(jax.random.key(0), (7, 7, 16, 16), 4))
  assert count_params(res) == 75_920
  assert count_params(mnist) == 4_240
  module = KernelGenerator((3, 3, 2, 4), N_Z)
  z = jnp.ones((N_Z,))
  variables = module.init(jax.random.key(0), z)
  np.testing.assert_allclose(
    module.apply(variables, z), numpy_generator(variables['params']['generator'], z, BASIC), atol=1e-5
  )


def test_initial_kernel_scale_is_he():
  gen = init_generator(jax.random.key(0), (3, 3, 16, 16), 64)
  z = jax.random.normal(jax.random.key(1), (64, 64))
  k = generate_kernels(gen, z, (3, 3, 16, 16))
  assert abs(float(jnp.std(k)) - np.sqrt(2.0 / (9 * 16))) < 0.2 * np.sqrt(2.0 / (9 * 16))


SHAPES = {
  'big': {
    'kernel': jax.ShapeDtypeStruct((3, 3, 4, 12), jnp.float32),  # 2 x 3 tiles
    'bias': jax.ShapeDtypeStruct((12,), jnp.float32),
  },
  'small': {'kernel': jax.ShapeDtypeStruct((3, 3, 2, 4), jnp.float32)},  # 1 x 1 tile
  'skip': {
    'kernel': jax.ShapeDtypeStruct((1, 1, 2, 4), jnp.float32),  # 1x1: not selected
    'scale': jax.ShapeDtypeStruct((4,), jnp.float32),
  },
}


def make_hypernet():
  return StaticHypernetwork(SHAPES, conv_kernel_rule((3, 3)), BASIC, N_Z)


def test_rule_and_tile_grid():
  hn = make_hypernet()
  assert sorted(hn.generated_paths) == [('big', 'kernel'), ('small', 'kernel')]
  assert hn.tile_grid(('big', 'kernel')) == (2, 3)
  assert hn.num_tiles == 7
  only_big = StaticHypernetwork(SHAPES, conv_kernel_rule((3, 3), under=('big',)), BASIC, N_Z)
  assert only_big.generated_paths == [('big', 'kernel')]
  # Rules are values: equal rules compare/hash equal (models holding them can be jit static args).
  assert conv_kernel_rule((3, 3), ['big']) == conv_kernel_rule((3, 3), ('big',))
  assert hash(conv_kernel_rule()) == hash(conv_kernel_rule())
  with pytest.raises(ValueError, match='cannot be tiled'):
    StaticHypernetwork(SHAPES, conv_kernel_rule((3, 3)), (3, 3, 4, 4), N_Z)


def test_tiles_are_placed_where_they_belong():
  hn = make_hypernet()
  hp = hn.init(jax.random.key(0))
  hp['generator'] = random_generator(jax.random.key(3))
  # Known, distinct embeddings per tile.
  hp['embeddings']['big']['kernel'] = jnp.arange(2 * 3 * N_Z, dtype=jnp.float32).reshape(2, 3, N_Z) / 10
  hp['embeddings']['small']['kernel'] = -jnp.ones((1, 1, N_Z))
  params = hn.apply(hp)
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(SHAPES)
  big = np.asarray(params['big']['kernel'])
  assert big.shape == (3, 3, 4, 12)
  for i in range(2):
    for j in range(3):
      want = numpy_generator(hp['generator'], hp['embeddings']['big']['kernel'][i, j], BASIC)
      np.testing.assert_allclose(big[:, :, 2 * i : 2 * i + 2, 4 * j : 4 * j + 4], want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    params['small']['kernel'], numpy_generator(hp['generator'], -np.ones(N_Z), BASIC), rtol=1e-5, atol=1e-5
  )
  # Ordinary leaves pass through untouched; the default init gives ones for 'scale'.
  np.testing.assert_array_equal(params['big']['bias'], hp['direct']['big']['bias'])
  np.testing.assert_array_equal(params['skip']['scale'], np.ones(4))
  assert 'kernel' not in hp['direct']['big'] and 'embeddings' not in hp['direct']


def test_tile_kernels_layout():
  tiles = jnp.arange(2 * 3 * 1 * 1 * 2 * 2, dtype=jnp.float32).reshape(2, 3, 1, 1, 2, 2)
  k = tile_kernels(tiles)
  assert k.shape == (1, 1, 4, 6)
  np.testing.assert_array_equal(k[0, 0, 2:4, 2:4], tiles[1, 1, 0, 0])


def test_init_copies_given_main_params():
  main = jax.tree_util.tree_map(lambda s: jnp.full(s.shape, 7.0), SHAPES)
  hp = make_hypernet().init(jax.random.key(0), main)
  np.testing.assert_array_equal(hp['direct']['skip']['kernel'], main['skip']['kernel'])
  assert count_params(hp['embeddings']) == 7 * N_Z


def test_generator_runs_once_per_apply(monkeypatch):
  calls = []
  real = static.generate_kernels
  monkeypatch.setattr(static, 'generate_kernels', lambda *a, **k: calls.append(1) or real(*a, **k))
  hn = make_hypernet()
  hp = hn.init(jax.random.key(0))
  jax.jit(hn.apply)(hp)
  assert len(calls) == 1


def test_embedding_only_sgd_step_changes_kernels_and_grad_jit():
  hn = make_hypernet()
  hp = hn.init(jax.random.key(0))
  target = jax.random.normal(jax.random.key(5), (3, 3, 4, 12))

  def loss(emb, rest):
    params = hn.apply({**rest, 'embeddings': emb})
    return jnp.sum((params['big']['kernel'] - target) ** 2) + jnp.sum(params['small']['kernel'] ** 2)

  rest = {k: v for k, v in hp.items() if k != 'embeddings'}
  opt = optax.sgd(0.1)
  opt_state = opt.init(hp['embeddings'])

  @jax.jit
  def step(emb, opt_state):
    l, g = jax.value_and_grad(loss)(emb, rest)
    updates, opt_state = opt.update(g, opt_state)
    return optax.apply_updates(emb, updates), opt_state, l, g

  new_emb, _, l0, g = step(hp['embeddings'], opt_state)
  assert all(float(jnp.abs(x).max()) > 0 for x in jax.tree_util.tree_leaves(g))
  before, after = hn.apply(hp), hn.apply({**hp, 'embeddings': new_emb})
  for name in ('big', 'small'):
    assert not np.allclose(before[name]['kernel'], after[name]['kernel'])
  np.testing.assert_array_equal(before['skip']['kernel'], after['skip']['kernel'])
  assert float(loss(new_emb, rest)) < float(l0)
  # Gradients reach the shared generator too.
  g_gen = jax.grad(lambda gen: loss(hp['embeddings'], {**rest, 'generator': gen}))(hp['generator'])
  assert all(float(jnp.abs(x).max()) > 0 for x in jax.tree_util.tree_leaves(g_gen))
