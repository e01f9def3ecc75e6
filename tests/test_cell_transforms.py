"""Cells under every JAX transform; fast form == reference form; strict dropout, opt-in diagnostics, boxes.

Float64 throughout (`jax.enable_x64`), so that agreement to ~1e-10 means the same function, not a close one.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax.test_util import check_grads

from hyper.cells import HyperLSTMCell, HyperRNNCell, LayerNormLSTMCell, LSTMCell

B, D, H, HH, NZ = 3, 5, 4, 3, 2
F64 = dict(param_dtype=jnp.float64)

# name -> factory(**overrides) of a tiny float64 cell with default settings otherwise.
CELLS = {
  'lstm': lambda **k: LSTMCell(H, **F64, **k),
  'ln_lstm': lambda **k: LayerNormLSTMCell(H, **F64, **k),
  'hyperlstm': lambda **k: HyperLSTMCell(
    H, hyper_features=HH, embedding_size=NZ, layer_norm=False, **F64, **k
  ),
  'ln_hyperlstm': lambda **k: HyperLSTMCell(H, hyper_features=HH, embedding_size=NZ, **F64, **k),
  'hyperrnn': lambda **k: HyperRNNCell(H, hyper_features=HH, embedding_size=NZ, **F64, **k),
  'hyperrnn_full': lambda **k: HyperRNNCell(
    H, hyper_features=HH, embedding_size=NZ, weights='full', **F64, **k
  ),
}


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def rand(shape, seed, std=0.5):
  return jnp.asarray(np.random.default_rng(seed).normal(0.0, std, shape))


def setup_cell(cell, batch=(B,), seed=0, std=0.3):
  """(params perturbed away from init, random carry, random x): no zero / one init can hide a bug."""
  x = rand(batch + (D,), 10 + seed)
  carry = jax.tree.map(lambda a: rand(a.shape, 20 + seed), cell.initialize_carry(None, x.shape))
  params = nn.meta.unbox(cell.init(jax.random.key(seed), carry, x, deterministic=True)['params'])
  rng = np.random.default_rng(30 + seed)
  params = jax.tree.map(lambda a: a + rng.normal(0.0, std, a.shape), params)
  return params, carry, x


def loss_fn(cell, **kwargs):
  """Scalar of two steps (so gradients pass through the recurrence), as a function of (params, carry, x)."""

  def loss(params, carry, x):
    c, y = cell.apply({'params': params}, carry, x, **kwargs)
    c, y2 = cell.apply({'params': params}, c, jnp.cos(x), **kwargs)
    return jnp.sum(jnp.sin(y) * y2) + sum(jnp.sum(jnp.tanh(a)) for a in jax.tree.leaves(c))

  return loss


def assert_trees_close(a, b, rtol=1e-10, atol=1e-12):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb) and jax.tree.structure(a) == jax.tree.structure(b)
  for u, v in zip(la, lb):
    np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol)


# ------------------------------------------------------------------ fast form == reference form

# Together: with and without layer norm, both ĥ orderings, dropout masks (main and hyper), remat on and
# off, every z_init.
FAST_VS_REFERENCE = [
  ('ln_lstm', dict(recurrent_dropout=0.4)),
  (
    'hyperlstm',
    dict(hyper_output='previous', recurrent_dropout=0.4, remat=False, z_init='random_projection'),
  ),
  ('ln_hyperlstm', dict(recurrent_dropout=0.4, hyper_recurrent_dropout=0.3, z_init='random_embedding')),
]  # z_init='reference' (the default) is compared in test_hessian_vector_product_through_hyperlstm


@pytest.mark.parametrize('name,kwargs', FAST_VS_REFERENCE, ids=[f'{n}-{k}' for n, k in FAST_VS_REFERENCE])
def test_fast_equals_reference_values_and_all_gradients(name, kwargs):
  fast, ref = CELLS[name](**kwargs), CELLS[name](impl='reference', **kwargs)
  params, carry, x = setup_cell(fast)
  dropout = kwargs.get('recurrent_dropout', 0.0) > 0
  kw = dict(deterministic=not dropout, rngs={'dropout': jax.random.key(7)})

  @jax.jit
  def values_and_grads(params, carry, x):
    forms = (('f', fast), ('r', ref))
    out = {impl: cell.apply({'params': params}, carry, x, **kw) for impl, cell in forms}
    grads = {impl: jax.grad(loss_fn(cell, **kw), argnums=(0, 1, 2))(params, carry, x) for impl, cell in forms}
    clean = ref.apply({'params': params}, carry, x, deterministic=True)
    return out, grads, clean

  out, grads, clean = values_and_grads(params, carry, x)
  assert_trees_close(out['f'], out['r'])
  assert_trees_close(grads['f'], grads['r'])
  # Every parameter gets a gradient (so the comparison covers all of them); dropout really dropped.
  assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads['r'][0]))
  assert (float(jnp.abs(clean[1] - out['r'][1]).max()) > 1e-3) == dropout


def test_fast_and_reference_share_the_parameter_tree():
  for name in ('lstm', 'ln_lstm', 'hyperlstm', 'ln_hyperlstm'):
    fast, ref = CELLS[name](), CELLS[name](impl='reference')
    x = jnp.zeros((B, D))
    carry = fast.initialize_carry(None, x.shape)
    shapes = lambda c: jax.tree.map(jnp.shape, nn.meta.unbox(c.init(jax.random.key(0), carry, x)))  # noqa
    assert shapes(fast) == shapes(ref)
  with pytest.raises(ValueError, match='impl must be one of'):
    LSTMCell(H, impl='quick').init(jax.random.key(0), carry, x)


# ------------------------------------------------------------------ every transform, every cell

CLASSES = ['lstm', 'ln_lstm', 'ln_hyperlstm', 'hyperrnn']  # one of each cell class


@pytest.mark.parametrize('name', CLASSES)
def test_per_example_and_vmap_equal_batched(name):
  """A cell on one example ([D] input, carry without batch axis), and vmapped over examples, equals the
  batched call."""
  cell = CELLS[name]()
  params, carry, x = setup_cell(cell)

  def per_example_vs_batched(params, carry, x):
    batched = cell.apply({'params': params}, carry, x)
    single = cell.apply({'params': params}, jax.tree.map(lambda a: a[1], carry), x[1])
    vmapped = jax.vmap(lambda c, xx: cell.apply({'params': params}, c, xx))(carry, x)

    def one(p, c, xx):
      return jnp.sum(jnp.sin(cell.apply({'params': p}, c, xx)[1]))

    # Per-example gradients (vmap of grad over unbatched calls) sum to the batch gradient.
    per_ex = jax.vmap(jax.grad(one), in_axes=(None, 0, 0))(params, carry, x)
    whole = jax.grad(lambda p: jnp.sum(jnp.sin(cell.apply({'params': p}, carry, x)[1])))(params)
    return batched, single, vmapped, jax.tree.map(lambda g: g.sum(0), per_ex), whole

  batched, single, vmapped, per_ex, whole = jax.jit(per_example_vs_batched)(params, carry, x)
  assert jax.tree.map(jnp.shape, single) == jax.tree.map(lambda a: a.shape[1:], batched)
  assert_trees_close(single, jax.tree.map(lambda a: a[1], batched))
  assert jax.tree.map(jnp.shape, cell.initialize_carry(None, (D,))) == jax.tree.map(jnp.shape, single[0])
  assert_trees_close(vmapped, batched)
  assert_trees_close(per_ex, whole)


@pytest.mark.parametrize('name', CLASSES)
def test_jvp_and_vjp_match_finite_differences(name):
  """Forward mode (jvp) and reverse mode against central differences, default settings (fast form)."""
  cell = CELLS[name]()
  params, carry, x = setup_cell(cell)
  check_grads(
    jax.jit(loss_fn(cell)), (params, carry, x), order=1, modes=['fwd', 'rev'], eps=1e-6, atol=1e-7, rtol=1e-6
  )


@pytest.mark.parametrize('name', ['ln_hyperlstm'])
def test_jacfwd_equals_jacrev_and_jit_scan_checkpoint(name):
  cell = CELLS[name]()
  params, carry, x = setup_cell(cell)
  f = lambda xx: cell.apply({'params': params}, carry, xx)[1]  # noqa: E731
  np.testing.assert_allclose(jax.jacfwd(f)(x), jax.jacrev(f)(x), rtol=1e-10, atol=1e-12)
  # A user's lax.scan over the cell == a Python loop of jitted steps; checkpointed step: same gradient.
  xs = jnp.stack([x, jnp.cos(x), jnp.sin(x)])
  step = jax.jit(lambda c, xx: cell.apply({'params': params}, c, xx))
  c, ys_loop = carry, []
  for t in range(3):
    c, y = step(c, xs[t])
    ys_loop.append(y)
  _, ys = jax.lax.scan(lambda c, xx: cell.apply({'params': params}, c, xx), carry, xs)
  np.testing.assert_allclose(ys, jnp.stack(ys_loop), rtol=1e-12, atol=1e-12)

  def seq_loss(p, remat):
    body = lambda c, xx: cell.apply({'params': p}, c, xx)  # noqa: E731
    body = jax.checkpoint(body) if remat else body
    return jnp.sum(jnp.sin(jax.lax.scan(body, carry, xs)[1]))

  assert_trees_close(jax.grad(seq_loss)(params, True), jax.grad(seq_loss)(params, False))


def test_hessian_vector_product_through_hyperlstm():
  """Forward-over-reverse HVP (default fast cell) against finite differences of the gradient, and the
  full Hessian in x equal between the fast and the reference form."""
  fast = CELLS['ln_hyperlstm']()
  params, carry, x = setup_cell(fast)
  loss = loss_fn(fast)
  grad_p = jax.grad(loss)
  v = jax.tree.map(lambda a: rand(a.shape, 40), params)
  hvp = jax.jvp(lambda p: grad_p(p, carry, x), (params,), (v,))[1]
  eps = 1e-5
  plus = grad_p(jax.tree.map(lambda a, b: a + eps * b, params, v), carry, x)
  minus = grad_p(jax.tree.map(lambda a, b: a - eps * b, params, v), carry, x)
  fd = jax.tree.map(lambda a, b: (a - b) / (2 * eps), plus, minus)
  assert_trees_close(hvp, fd, rtol=1e-5, atol=1e-7)
  ref = CELLS['ln_hyperlstm'](impl='reference')
  hess = lambda cell: jax.hessian(lambda xx: loss_fn(cell)(params, carry, xx))(x)  # noqa: E731
  np.testing.assert_allclose(hess(fast), hess(ref), rtol=1e-9, atol=1e-11)


def test_vocab_ids_per_example():
  """Integer ids: one id (shape []) per example equals the batched ids [B]."""
  cell = HyperLSTMCell(H, hyper_features=HH, embedding_size=NZ, vocab_size=7, **F64)
  ids = jnp.array([3, 0, 6])
  carry = jax.tree.map(lambda a: rand(a.shape, 1), cell.initialize_carry(None, ids.shape))
  params = cell.init(jax.random.key(0), carry, ids)['params']
  batched = cell.apply({'params': params}, carry, ids)
  single = jax.vmap(lambda c, i: cell.apply({'params': params}, c, i))(carry, ids)
  assert_trees_close(single, batched)
  assert jax.tree.map(jnp.shape, cell.initialize_carry(None, ())) == (((H,), (H,)), ((HH,), (HH,)))


# ------------------------------------------------------------------ quiet and strict


@pytest.mark.parametrize('name', CLASSES + ['hyperrnn_full'])
def test_init_returns_params_only_and_diagnostics_are_opt_in(name):
  cell = CELLS[name]()
  x = jnp.zeros((B, D))
  carry = cell.initialize_carry(None, x.shape)
  variables = cell.init(jax.random.key(0), carry, x)
  assert set(variables) == {'params'}
  params = nn.meta.unbox(variables['params'])
  _, state = cell.apply({'params': params}, carry, x, mutable=['diagnostics'])
  assert state == {}
  _, state = CELLS[name](diagnostics=True).apply({'params': params}, carry, x, mutable=['diagnostics'])
  diag = {k: v[0] for k, v in state['diagnostics'].items()}
  assert diag['tanh_c'].shape == (B, H)
  assert diag['weight_change'].shape[0] == B

  # Off, the step's computation has no diagnostics work in it.
  def eqns(diagnostics):
    proj = cell.apply({'params': params}, x, method='project_inputs')
    f = lambda: cell.apply({'params': params}, carry, proj, diagnostics=diagnostics, method='step')  # noqa
    return len(jax.make_jaxpr(f)().jaxpr.eqns)

  assert eqns(False) < eqns(True)


@pytest.mark.parametrize('name', ['lstm', 'ln_hyperlstm'])
def test_recurrent_dropout_asked_for_but_impossible_raises(name):
  cell = CELLS[name](recurrent_dropout=0.5)
  x = jnp.ones((B, D))
  carry = cell.initialize_carry(None, x.shape)
  with pytest.raises(ValueError, match='pass deterministic=True or False'):
    cell.init(jax.random.key(0), carry, x)
  params = cell.init(jax.random.key(0), carry, x, deterministic=True)['params']
  with pytest.raises(ValueError, match=r"no 'dropout' rng: call apply\(\.\.\., rngs="):
    cell.apply({'params': params}, carry, x, deterministic=False)
  with pytest.raises(ValueError, match="no 'dropout' rng"):
    CELLS[name](recurrent_dropout=0.5, deterministic=False).apply({'params': params}, carry, x)
  # Given what it needs, it drops; deterministic, it does not.
  a = cell.apply({'params': params}, carry, x, deterministic=False, rngs={'dropout': jax.random.key(1)})
  b = cell.apply({'params': params}, carry, x, deterministic=True)
  assert float(jnp.abs(a[1] - b[1]).max()) > 1e-3
  # No dropout asked for: nothing needed.
  plain = CELLS[name]()
  plain.apply({'params': params}, carry, x)


# ------------------------------------------------------------------ logical axis names


@pytest.mark.parametrize('name', CLASSES)
def test_logical_boxes_and_unboxed_params_give_the_same_result(name):
  cell = CELLS[name]()
  x = rand((B, D), 3)
  carry = cell.initialize_carry(None, x.shape)
  boxed = cell.init(jax.random.key(0), carry, x)['params']
  assert isinstance(boxed['recurrent_kernel'], nn.LogicallyPartitioned)
  assert boxed['recurrent_kernel'].names == ('embed', 'gates')
  assert boxed['input_proj']['kernel'].names == ('embed', 'gates')
  if 'z_h_kernel' in boxed:
    assert 'nz' in boxed['z_h_kernel'].names and 'hyper' in boxed['z_h_kernel'].names
  specs = nn.get_partition_spec(boxed)
  assert tuple(specs['recurrent_kernel']) == ('embed', 'gates')
  unboxed = nn.meta.unbox(boxed)
  assert jax.tree.leaves(unboxed) and all(isinstance(a, jax.Array) for a in jax.tree.leaves(unboxed))
  assert_trees_close(
    cell.apply({'params': boxed}, carry, x), cell.apply({'params': unboxed}, carry, x), rtol=0, atol=0
  )
  # Counting leaves sees the arrays inside the boxes.
  assert sum(a.size for a in jax.tree.leaves(boxed)) == sum(a.size for a in jax.tree.leaves(unboxed))
