"""Cells vs an independent NumPy implementation of the paper's equations; init facts, transforms, nn.RNN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from hyper.cells import HyperLSTMCell, HyperRNNCell, LayerNormLSTMCell, LSTMCell

B, D, H, HH, NZ = 3, 5, 7, 6, 3  # all different, so a transposed or mixed-up axis cannot pass


# ------------------------------------------------------------------ NumPy reference (float64, per gate)


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def np_layer_norm(x, gain, bias, eps=1e-3):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * gain + bias


def np_lstm(x, c, h, w_x, w_h, bias, ln, forget_bias=1.0):
  """Plain / layer-norm LSTM; gates (i, j, f, o) in column blocks; ln = dict of LN params or None."""
  n = h.shape[-1]
  gates = []
  for g in range(4):
    cols = slice(g * n, (g + 1) * n)
    a = x @ w_x[:, cols] + h @ w_h[:, cols]
    if bias is not None:
      a = a + bias[cols]
    if ln is not None:
      a = np_layer_norm(a, ln['gates_scale'][g], ln['gates_bias'][g])
    gates.append(a)
  i, j, f, o = gates
  new_c = c * sigmoid(f + forget_bias) + sigmoid(i) * np.tanh(j)
  cc = np_layer_norm(new_c, ln['cell_scale'], ln['cell_bias']) if ln is not None else new_c
  return new_c, np.tanh(cc) * sigmoid(o)


def ln_params(p, prefix=''):
  return {k: p[f'{prefix}ln_{k}'] for k in ('gates_scale', 'gates_bias', 'cell_scale', 'cell_bias')}


def np_hyperlstm(p, x, carry, layer_norm, hyper_output):
  """Appendix A.2.2 with eq. 8 scaling, written out per gate."""
  (c, h), (hc, hh) = carry
  n = h.shape[-1]
  # Hyper LSTM on x̂ = [x; h_{t-1}].
  x_hat = np.concatenate([x, h], axis=-1)
  w_xhat = np.concatenate([p['hyper_input_proj']['kernel'], p['recurrent_kernel'][:, 4 * n :]], axis=0)
  new_hc, new_hh = np_lstm(
    x_hat,
    hc,
    hh,
    w_xhat,
    p['hyper_recurrent_kernel'],
    None if layer_norm else p['hyper_bias'],
    ln_params(p, 'hyper_') if layer_norm else None,
  )
  h_hat = new_hh if hyper_output == 'current' else hh
  gates = []
  for g in range(4):
    cols = slice(g * n, (g + 1) * n)
    z_h = h_hat @ p['z_h_kernel'][:, g, :] + p['z_h_bias'][g]
    z_x = h_hat @ p['z_x_kernel'][:, g, :] + p['z_x_bias'][g]
    z_b = h_hat @ p['z_b_kernel'][:, g, :]
    d_h = z_h @ p['scale_h'][g]
    d_x = z_x @ p['scale_x'][g]
    b = z_b @ p['bias_projection'][g] + p['bias'][cols]
    a = d_h * (h @ p['recurrent_kernel'][:, cols]) + d_x * (x @ p['input_proj']['kernel'][:, cols]) + b
    if layer_norm:
      a = np_layer_norm(a, p['ln_gates_scale'][g], p['ln_gates_bias'][g])
    gates.append(a)
  i, j, f, o = gates
  new_c = c * sigmoid(f + 1.0) + sigmoid(i) * np.tanh(j)
  cc = np_layer_norm(new_c, p['ln_cell_scale'], p['ln_cell_bias']) if layer_norm else new_c
  return ((new_c, np.tanh(cc) * sigmoid(o)), (new_hc, new_hh))


def np_hyperrnn(p, x, carry, hyper_output):
  """Eq. 4-6 with the eq. 8 scaling, tanh RNNs."""
  h, hh = carry
  x_hat = np.concatenate([x, h], axis=-1)
  w_xhat = np.concatenate([p['hyper_input_proj']['kernel'], p['hyper_main_kernel']], axis=0)
  new_hh = np.tanh(x_hat @ w_xhat + hh @ p['hyper_recurrent_kernel'] + p['hyper_bias'])
  h_hat = new_hh if hyper_output == 'current' else hh
  z_h = h_hat @ p['z_h_kernel'] + p['z_h_bias']
  z_x = h_hat @ p['z_x_kernel'] + p['z_x_bias']
  z_b = h_hat @ p['z_b_kernel']
  pre = (
    (z_h @ p['scale_h']) * (h @ p['recurrent_kernel'])
    + (z_x @ p['scale_x']) * (x @ p['input_proj']['kernel'])
    + z_b @ p['bias_projection']
    + p['bias']
  )
  return (np.tanh(pre), new_hh)


# ------------------------------------------------------------------ helpers


def perturbed(params, seed=0, std=0.3):
  """Init params plus noise, so that zero / one / constant inits cannot hide a bug."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: np.asarray(a, np.float64) + rng.normal(0.0, std, a.shape), params)


def random_carry(template, seed=1):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: rng.normal(0.0, 0.5, a.shape), template)


def run_step(cell, params, carry, x):
  f32 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), t)  # noqa: E731
  new_carry, out = cell.apply({'params': f32(params)}, f32(carry), f32(x))
  return jax.tree.map(np.asarray, new_carry), np.asarray(out)


def init_cell(cell, seed=0):
  x = jnp.zeros((B, D))
  carry = cell.initialize_carry(jax.random.key(0), x.shape)
  return nn.meta.unbox(cell.init(jax.random.key(seed), carry, x)['params']), carry


# ------------------------------------------------------------------ equations


@pytest.mark.parametrize('layer_norm', [False, True])
def test_lstm_step_matches_numpy(layer_norm):
  cell = (LayerNormLSTMCell if layer_norm else LSTMCell)(H)
  params, carry = init_cell(cell)
  params, carry = perturbed(params), random_carry(carry)
  x = np.random.default_rng(2).normal(size=(B, D))
  (c, h), out = run_step(cell, params, carry, x)
  ref_c, ref_h = np_lstm(
    x,
    carry[0],
    carry[1],
    params['input_proj']['kernel'],
    params['recurrent_kernel'],
    None if layer_norm else params['bias'],
    ln_params(params) if layer_norm else None,
  )
  np.testing.assert_allclose(c, ref_c, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(h, ref_h, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out, ref_h, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('hyper_output', ['current', 'previous'])
@pytest.mark.parametrize('layer_norm', [False, True])
def test_hyperlstm_step_matches_numpy(layer_norm, hyper_output):
  cell = HyperLSTMCell(
    H, hyper_features=HH, embedding_size=NZ, layer_norm=layer_norm, hyper_output=hyper_output
  )
  params, carry = init_cell(cell)
  params, carry = perturbed(params), random_carry(carry)
  x = np.random.default_rng(2).normal(size=(B, D))
  new_carry, out = run_step(cell, params, carry, x)
  ref = np_hyperlstm(params, x, carry, layer_norm, hyper_output)
  for got, want in zip(jax.tree.leaves(new_carry), jax.tree.leaves(ref)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out, ref[0][1], rtol=1e-4, atol=1e-5)
  # The two readings of the paper really differ (so each test above checks its own equations).
  other = np_hyperlstm(params, x, carry, layer_norm, 'previous' if hyper_output == 'current' else 'current')
  assert np.abs(other[0][1] - ref[0][1]).max() > 1e-3


@pytest.mark.parametrize('hyper_output', ['current', 'previous'])
def test_hyperrnn_step_matches_numpy(hyper_output):
  cell = HyperRNNCell(H, hyper_features=HH, embedding_size=NZ, hyper_output=hyper_output)
  params, carry = init_cell(cell)
  params, carry = perturbed(params), random_carry(carry)
  x = np.random.default_rng(2).normal(size=(B, D))
  new_carry, out = run_step(cell, params, carry, x)
  ref = np_hyperrnn(params, x, carry, hyper_output)
  for got, want in zip(new_carry, ref):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_hyperrnn_full_weights_equal_scaled_when_slices_are_row_scalings():
  """Eq. 6-7 with W_hz[n] = diag(s_n) W_h (and likewise for x) reduces to eq. 8 with d_h = sum_n z_n s_n."""
  scaled = HyperRNNCell(H, hyper_features=HH, embedding_size=NZ)
  full = HyperRNNCell(H, hyper_features=HH, embedding_size=NZ, weights='full')
  p, carry = init_cell(scaled)
  p, carry = perturbed(p), random_carry(carry)
  q = dict(p)
  # kernel [fan_in, N_z * H]: block n = W * s_n (columns are the paper's rows).
  q['recurrent_kernel'] = np.concatenate([p['recurrent_kernel'] * p['scale_h'][n] for n in range(NZ)], 1)
  q['input_proj'] = {
    'kernel': np.concatenate([p['input_proj']['kernel'] * p['scale_x'][n] for n in range(NZ)], 1)
  }
  del q['scale_h'], q['scale_x']
  x = np.random.default_rng(2).normal(size=(B, D))
  (h1, _), _ = run_step(scaled, p, carry, x)
  (h2, _), _ = run_step(full, q, carry, x)
  np.testing.assert_allclose(h1, h2, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ initialisation (A.2.3)


def test_init_generates_scale_point_one_and_zero_bias():
  cell = HyperLSTMCell(H, hyper_features=HH, embedding_size=NZ)
  params, carry = init_cell(cell)
  carry = random_carry(carry)  # any state: at init z_h = z_x = 1 whatever ĥ is
  x = jnp.asarray(np.random.default_rng(3).normal(size=(B, D)), jnp.float32)
  proj = cell.apply({'params': params}, x, method='project_inputs')
  gen = cell.apply({'params': params}, jax.tree.map(jnp.asarray, carry), proj, method='generated')
  np.testing.assert_allclose(gen['scale_h'], 0.1, rtol=1e-6)
  np.testing.assert_allclose(gen['scale_x'], 0.1, rtol=1e-6)
  np.testing.assert_array_equal(gen['bias'], 0.0)
  # The other A.2.3 facts: W_ĥb ~ N(0, 0.01), orthogonal gate blocks, b_0 = 0.
  assert 0.003 < float(np.std(params['z_b_kernel'])) < 0.03
  w = np.asarray(params['recurrent_kernel'])
  assert w.shape == (H, 4 * (H + HH))  # [W_h | h-rows of the hyper LSTM's input weights]
  for g in range(8):  # 4 gate blocks of W_h, then 4 of the hyper part
    n = H if g < 4 else HH
    start = g * H if g < 4 else 4 * H + (g - 4) * HH
    block = w[:, start : start + n]
    np.testing.assert_allclose(block.T @ block, np.eye(n), atol=1e-5)
  assert np.abs(w[:, :H].T @ w[:, H : 2 * H]).max() > 1e-3  # blocks independent, not one [H, 4H] matrix
  np.testing.assert_array_equal(params['bias'], 0.0)


def test_default_hyperlstm_builds():
  cell = HyperLSTMCell(features=32)
  params, _ = init_cell(cell)
  assert params['z_h_kernel'].shape == (128, 4, 4)
  assert 'ln_gates_scale' in params and 'hyper_ln_gates_scale' in params and 'hyper_bias' not in params


def test_generated_scales_differ_across_batch():
  cell = HyperLSTMCell(H, hyper_features=HH, embedding_size=NZ)
  params, carry = init_cell(cell)
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), perturbed(params))
  x = jnp.asarray(np.random.default_rng(4).normal(size=(B, D)), jnp.float32)
  proj = cell.apply({'params': params}, x, method='project_inputs')
  gen = cell.apply({'params': params}, carry, proj, method='generated')
  for key in ('scale_h', 'scale_x', 'bias'):
    assert gen[key].shape == (B, 4, H)
    assert float(jnp.abs(gen[key][0] - gen[key][1]).max()) > 1e-3, key


# ------------------------------------------------------------------ transforms


@pytest.mark.parametrize('layer_norm', [True, False])
def test_gradients_match_finite_differences(layer_norm):
  from jax.test_util import check_grads

  with jax.enable_x64(True):
    cell = HyperLSTMCell(
      4, hyper_features=3, embedding_size=2, layer_norm=layer_norm, param_dtype=jnp.float64
    )
    x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 3)))
    carry = jax.tree.map(lambda a: a.astype(jnp.float64), cell.initialize_carry(None, x.shape))
    params = nn.meta.unbox(cell.init(jax.random.key(0), carry, x)['params'])
    params = jax.tree.map(jnp.asarray, perturbed(params, std=0.2))

    @jax.jit
    def loss(p, xs):
      c = carry
      for t in range(3):  # three steps, so the gradient flows through the recurrence
        c, y = cell.apply({'params': p}, c, xs * (t + 1))
      return jnp.sum(y**2)

    check_grads(loss, (params, x), order=1, modes=['rev'], eps=1e-5, atol=1e-6, rtol=1e-5)


def test_jit_vmap_and_no_recompile():
  cell = HyperLSTMCell(H, hyper_features=HH, embedding_size=NZ)
  params, carry = init_cell(cell)
  traces = []

  @jax.jit
  def step(p, c, x):
    traces.append(1)
    return cell.apply({'params': p}, c, x)

  x1 = jnp.ones((B, D), jnp.float32)
  x2 = jnp.full((B, D), 2.0, jnp.float32)
  c1, y1 = step(params, carry, x1)
  c2, y2 = step(params, c1, x2)
  assert len(traces) == 1
  assert not np.allclose(y1, y2)
  # vmap over examples (each a batch of one) equals the batched call.
  single = jax.vmap(
    lambda c, x: cell.apply({'params': params}, jax.tree.map(lambda a: a[None], c), x[None])[1][0]
  )
  np.testing.assert_allclose(single(carry, x2), cell.apply({'params': params}, carry, x2)[1], atol=1e-6)
  # A user's own jax.lax.scan over cell.apply equals the two jitted steps above.
  _, ys = jax.lax.scan(lambda c, x: cell.apply({'params': params}, c, x), carry, jnp.stack([x1, x2]))
  np.testing.assert_allclose(ys[1], y2, rtol=1e-5, atol=1e-6)
  g = jax.grad(lambda p: jnp.sum(step(p, carry, x1)[1]))(params)
  assert float(jnp.abs(g['z_x_kernel']).sum()) > 0  # (z_h gets none: h_0 = 0)


# ------------------------------------------------------------------ inside flax.linen.RNN


def mask_revealing_params(params, features):
  """LSTM params under which h_t ≈ tanh(mask_t) σ(big) ≈ mask_t * 0.76 (with forget_bias = -30 in the cell):
  i, j, o saturated on, forget off, no dependence on h or x; so h shows the dropout mask of each step."""
  p = jax.tree.map(jnp.zeros_like, params)
  bias = jnp.zeros((4, features)).at[0].set(30.0).at[1].set(30.0).at[3].set(30.0)
  p['bias'] = bias.reshape(-1)
  return p


def test_nn_rnn_recurrent_dropout_and_diagnostics():
  T = 6
  cell = LSTMCell(16, recurrent_dropout=0.5, forget_bias=-30.0, deterministic=False)
  x = jnp.ones((B, T, D))
  rnn = nn.RNN(cell, split_rngs={'params': False, 'dropout': True}, variable_axes={'diagnostics': 1})
  keys = {'params': jax.random.key(0), 'dropout': jax.random.key(0)}  # deterministic=False: dropout at init
  params = mask_revealing_params(nn.meta.unbox(rnn.init(keys, x)['params']['cell']), 16)
  variables = {'params': {'cell': params}}
  with pytest.raises(ValueError, match="no 'dropout' rng"):  # asked for dropout, gave no rng
    rnn.apply(variables, x)
  clean = nn.RNN(cell.clone(deterministic=True)).apply(variables, x)
  np.testing.assert_allclose(clean, np.tanh(1.0), atol=1e-5)
  out = rnn.apply(variables, x, rngs={'dropout': jax.random.key(1)})
  kept = np.asarray(out) > 0.5  # kept units are tanh(2) ≈ 0.96, dropped ones 0
  out = np.asarray(out)
  assert np.all(np.isclose(out, 0.0, atol=1e-4) | np.isclose(out, np.tanh(2.0), atol=1e-4))
  assert 0.3 < kept.mean() < 0.7
  assert (kept[:, 0] != kept[:, 1]).any(), 'a new mask at every step'
  # Without split_rngs for 'dropout' the scanned cell sees no 'dropout' rng: an error, not a silent no-op.
  with pytest.raises(ValueError, match="no 'dropout' rng"):
    nn.RNN(cell).apply(variables, x, rngs={'dropout': jax.random.key(1)})

  hcell = HyperLSTMCell(8, hyper_features=HH, embedding_size=NZ, recurrent_dropout=0.5, deterministic=False)
  hrnn = nn.RNN(hcell, split_rngs={'params': False, 'dropout': True}, variable_axes={'diagnostics': 1})
  hparams = nn.meta.unbox(hrnn.init(keys, x)['params'])
  a = hrnn.apply({'params': hparams}, x, rngs={'dropout': jax.random.key(1)})
  b = nn.RNN(hcell.clone(deterministic=True)).apply({'params': hparams}, x)
  assert float(jnp.abs(a - b).max()) > 1e-3
  hparams = jax.tree.map(lambda t: jnp.asarray(t, jnp.float32), perturbed(nn.meta.unbox(hparams)))
  hcell = hcell.clone(deterministic=True, diagnostics=True)
  hrnn = nn.RNN(hcell, variable_axes={'diagnostics': 1})
  out, state = hrnn.apply({'params': hparams}, x, mutable=['diagnostics'])
  diag = state['diagnostics']['cell']
  (wc,) = diag['weight_change']
  (tanh_c,) = diag['tanh_c']
  assert wc.shape == (B, T, 4) and tanh_c.shape == (B, T, 8)
  assert float(wc.min()) > 0
  # Without variable_axes the sown values do not come back.
  _, state = nn.RNN(hcell).apply({'params': hparams}, x, mutable=['diagnostics'])
  assert 'cell' not in state.get('diagnostics', {})


@pytest.mark.parametrize('nz', [3, 20])  # unrolled multiply-adds (small N_z) and the reduction (large N_z)
def test_modulated_preactivation_custom_jvp_matches_autodiff(nz):
  """The fast eq. 8 (custom JVP with a rematerialised tangent; reverse mode transposes it) equals autodiff
  of eq. 8's formula in reverse and forward mode, for the 4 gates given as separate arrays (two leading
  axes, as inside `nn.RNN` over a batch grid)."""
  from hyper.cells_fast import _modulated_preactivation

  rng = np.random.default_rng(11)
  lead, units = (2, 3), 7
  f32 = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)  # noqa: E731
  z, w, bias = f32(*lead, 3, 4, nz), f32(3, 4, nz, units), f32(4, units)
  main_h = tuple(f32(*lead, units) for _ in range(4))
  main_x = tuple(f32(*lead, units) for _ in range(4))
  args = (z, w, main_h, main_x, bias)

  def plain(z, w, main_h, main_x, bias):
    d = jnp.einsum('...kgn,kgnh->...kgh', z, w, precision='highest')
    return tuple(
      d[..., 0, g, :] * main_h[g] + d[..., 1, g, :] * main_x[g] + d[..., 2, g, :] + bias[g] for g in range(4)
    )

  cot = tuple(f32(*lead, units) for _ in range(4))
  for a, r in zip(_modulated_preactivation(*args), plain(*args)):
    np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5)
  tangents = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), jnp.float32), args)
  for a, r in zip(jax.jvp(_modulated_preactivation, args, tangents)[1], jax.jvp(plain, args, tangents)[1]):
    np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)
  ours = jax.vjp(_modulated_preactivation, *args)[1](cot)
  ref = jax.vjp(plain, *args)[1](cot)
  for name, a, r in zip(('z', 'w', 'main_h', 'main_x', 'bias'), ours, ref):
    for a_leaf, r_leaf in zip(jax.tree.leaves(a), jax.tree.leaves(r)):
      assert a_leaf.shape == r_leaf.shape, name
      np.testing.assert_allclose(a_leaf, r_leaf, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize('layer_norm,dropout', [(False, False), (True, True)])
def test_rematerialised_gate_update_matches_stored(layer_norm, dropout):
  """`_gate_update_remat` (recomputes the gates in the backward pass) gives the same values and the same
  gradients for every argument as `_gate_update`, with the modulated pre-activation, layer norm and a
  recurrent-dropout mask."""
  from hyper.cells_fast import _gate_update, _gate_update_remat, _modulated_preactivation

  rng = np.random.default_rng(12)
  b, units, nz = 3, 6, 4
  f32 = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)  # noqa: E731
  pre_args = (
    f32(b, 3, 4, nz),
    f32(3, 4, nz, units),
    tuple(f32(b, units) for _ in range(4)),
    tuple(f32(b, units) for _ in range(4)),
    f32(4, units),
  )
  c = f32(b, units)
  mask = jnp.asarray(rng.random((b, units)) > 0.3, jnp.float32) / 0.7 if dropout else None
  ln_gates = (1.0 + f32(4, units), f32(4, units)) if layer_norm else None
  ln_cell = (1.0 + f32(units), f32(units)) if layer_norm else None
  cots = (f32(b, units), f32(b, units), jnp.zeros((b, units)))

  def run(update):
    def f(pre_args, c, ln_gates, ln_cell):
      return update(_modulated_preactivation, pre_args, c, 1.0, mask, ln_gates, ln_cell, 1e-3)

    out, vjp = jax.vjp(f, pre_args, c, ln_gates, ln_cell)
    return out, vjp(cots)

  out, grads = run(_gate_update_remat)
  ref_out, ref_grads = run(_gate_update)
  for a, r in zip(out, ref_out):
    np.testing.assert_allclose(a, r, rtol=1e-6, atol=1e-6)
  leaves, ref_leaves = jax.tree.leaves(grads), jax.tree.leaves(ref_grads)
  assert len(leaves) == len(ref_leaves) == 12 + (4 if layer_norm else 0)
  for a, r in zip(leaves, ref_leaves):
    assert float(jnp.max(jnp.abs(r))) > 0  # every argument gets a gradient
    np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('layer_norm', [False, True])
def test_hyperlstm_remat_option_changes_nothing_but_the_schedule(layer_norm):
  """`HyperLSTMCell(remat=True)` (recompute the gates in the backward pass) and `remat=False` give the same
  sequence outputs and the same parameter gradients through `flax.linen.RNN`."""
  x = jax.random.normal(jax.random.key(3), (2, 5, 3))
  grads = {}
  for remat in (False, True):
    cell = HyperLSTMCell(6, hyper_features=4, embedding_size=2, layer_norm=layer_norm, remat=remat)
    rnn = nn.RNN(cell)
    params = rnn.init(jax.random.key(0), x)['params']
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(1), p.shape), params)

    def loss(p):
      return jnp.sum(jnp.sin(rnn.apply({'params': p}, x)))  # noqa: B023  (called in this iteration)

    grads[remat] = jax.value_and_grad(loss)(params)
  np.testing.assert_allclose(grads[True][0], grads[False][0], rtol=1e-6)
  leaves_t, leaves_f = jax.tree.leaves(grads[True][1]), jax.tree.leaves(grads[False][1])
  assert len(leaves_t) == len(leaves_f) > 10
  for a, b in zip(leaves_t, leaves_f):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
