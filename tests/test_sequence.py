"""RecurrentStack and CharLM: scan vs single steps, segments, lengths / reset, diagnostics, one-hot gather,
cells as values (any Flax cell; the carry from the cell's own initialize_carry)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from hyper.cells import HyperLSTMCell, HyperRNNCell, LayerNormLSTMCell, LSTMCell
from hyper.char_lm import CharLM
from hyper.sequence import RecurrentStack

B, T, D, H, HH, NZ = 3, 5, 4, 6, 5, 3


def perturbed(params, seed=0, std=0.3):
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda a: jnp.asarray(np.asarray(a) + rng.normal(0.0, std, a.shape), jnp.float32), params
  )


def make_stack(**kw):
  kw = dict(dict(cell=HyperLSTMCell(H, hyper_features=HH, embedding_size=NZ), num_layers=2), **kw)
  return RecurrentStack(**kw)


def inputs(seed=0, shape=(B, T, D)):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


_CELL = HyperLSTMCell(H, hyper_features=HH, embedding_size=NZ)
_STEP = jax.jit(lambda p, c, x: _CELL.apply({'params': p}, c, x))


def unrolled(stack, params, x, carry):
  """Reference: every layer as T separate single-step calls of the cell (no scan)."""
  assert stack.cell == _CELL
  new_carry = []
  for layer in range(stack.num_layers):
    c = carry[layer]
    ys = []
    for t in range(x.shape[1]):
      c, y = _STEP(params[f'layer_{layer}'], c, x[:, t])
      ys.append(y)
    x = jnp.stack(ys, axis=1) if ys else jnp.zeros((x.shape[0], 0, H))
    new_carry.append(c)
  return x, tuple(new_carry)


@pytest.fixture(scope='module')
def stack_and_params():
  stack = make_stack()
  params = perturbed(nn.meta.unbox(jax.jit(stack.init)(jax.random.key(0), inputs())['params']))
  return stack, params


def test_scan_equals_single_steps_and_segments(stack_and_params):
  stack, params = stack_and_params
  x = inputs(1)
  carry0 = jax.tree.map(lambda a: a + 0.1, stack.initialize_carry(None, x.shape))  # non-zero start state
  apply = jax.jit(lambda x, c: stack.apply({'params': params}, x, c))
  out, carry = apply(x, carry0)
  ref_out, ref_carry = unrolled(stack, params, x, carry0)
  np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(carry), jax.tree.leaves(ref_carry)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  # Two segments with the carry passed on equal one long run.
  x2 = inputs(2)
  out2, carry2 = apply(x2, carry)
  both, carry_both = stack.apply({'params': params}, jnp.concatenate([x, x2], 1), carry0)
  np.testing.assert_allclose(both, jnp.concatenate([out, out2], 1), rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(carry2), jax.tree.leaves(carry_both)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_lengths_and_reset(stack_and_params):
  stack, params = stack_and_params
  x = inputs(3)
  lengths = jnp.array([T, 2, 0])
  out, carry = stack.apply({'params': params}, x, lengths=lengths)
  for b in range(B):
    n = int(lengths[b])
    carry0 = stack.initialize_carry(None, (1, n, D))
    ref_out, ref_carry = unrolled(stack, params, x[b : b + 1, :n], carry0)
    np.testing.assert_allclose(out[b, :n], ref_out[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[b, n:], 0.0)
    for a, r in zip(jax.tree.leaves(carry), jax.tree.leaves(ref_carry)):
      np.testing.assert_allclose(a[b], r[0], rtol=1e-5, atol=1e-5)
  # reset at step k: from k on, example 1 behaves as if it started at k from a zero state.
  k = 2
  reset = jnp.zeros((B, T), bool).at[1, k].set(True)
  out_r, _ = stack.apply({'params': params}, x, reset=reset)
  fresh, _ = stack.apply({'params': params}, x[:, k:])
  np.testing.assert_allclose(out_r[1, k:], fresh[1], rtol=1e-5, atol=1e-5)
  full, _ = stack.apply({'params': params}, x)
  np.testing.assert_allclose(out_r[0], full[0], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(out_r[1, :k], full[1, :k], rtol=1e-6, atol=1e-6)
  assert float(jnp.abs(out_r[1, k:] - full[1, k:]).max()) > 1e-4


def test_weight_change_diagnostics_against_explicit_matrices(stack_and_params):
  stack, params = stack_and_params
  x = inputs(4)
  out, carry, diag = stack.apply({'params': params}, x, return_diagnostics=True)
  p = jax.tree.map(np.asarray, params['layer_0'])
  # ĥ_t of layer 0 from single steps.
  c = stack.initialize_carry(None, x.shape)[0]
  hats = [np.asarray(c[1][1])]
  tanh_c = []
  for t in range(T):
    c, _ = _STEP(params['layer_0'], c, x[:, t])
    hats.append(np.asarray(c[1][1]))
    cc = c[0][0]
    mean, var = cc.mean(-1, keepdims=True), cc.var(-1, keepdims=True)
    tanh_c.append(np.tanh((cc - mean) / np.sqrt(var + 1e-3) * p['ln_cell_scale'] + p['ln_cell_bias']))

  def effective(h_hat, g, which):  # diag(d(ĥ)) W in the paper's [out, in] layout, built explicitly
    z_kernel, z_bias, scale = {
      'h': ('z_h_kernel', 'z_h_bias', 'scale_h'),
      'x': ('z_x_kernel', 'z_x_bias', 'scale_x'),
    }[which]
    w = p['recurrent_kernel'] if which == 'h' else p['input_proj']['kernel']
    d = (h_hat @ p[z_kernel][:, g] + p[z_bias][g]) @ p[scale][g]  # [B, H]
    return d[:, :, None] * w[:, g * H : (g + 1) * H].T[None]  # [B, H_out, fan_in]

  for which, key in (('h', 'weight_change'), ('x', 'weight_change_x')):
    w = p['recurrent_kernel'] if which == 'h' else p['input_proj']['kernel']
    want = np.zeros((B, T, 4))
    for t in range(T):
      for g in range(4):
        delta = effective(hats[t + 1], g, which) - effective(hats[t], g, which)
        want[:, t, g] = np.sqrt((delta**2).sum((1, 2))) / np.linalg.norm(w[:, g * H : (g + 1) * H])
    got = diag['layer_0'][key]
    assert got.shape == (B, T, 4)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
    assert want.min() > 0
  np.testing.assert_allclose(diag['layer_0']['tanh_c'], np.stack(tanh_c, 1), rtol=1e-5, atol=1e-5)
  assert diag['layer_1']['weight_change'].shape == (B, T, 4)


def test_lstm_stack_has_zero_weight_change_and_runs_bf16():
  stack = RecurrentStack(cell=LayerNormLSTMCell(H), num_layers=1)
  x = inputs(5)
  params = nn.meta.unbox(stack.init(jax.random.key(0), x)['params'])
  out, _, diag = stack.apply({'params': params}, x, return_diagnostics=True)
  np.testing.assert_array_equal(diag['layer_0']['weight_change'], 0.0)
  bf16 = RecurrentStack(cell=LayerNormLSTMCell(H, dtype=jnp.bfloat16), num_layers=1)
  out16, carry16 = bf16.apply({'params': params}, x)
  assert out16.dtype == jnp.bfloat16 and carry16[0][0].dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(out16, np.float32), out, atol=0.05)
  # And the cell class used inside is the layer-norm one.
  assert 'ln_gates_scale' in params['layer_0'] and 'bias' not in params['layer_0']
  assert LayerNormLSTMCell.layer_norm


def test_char_lm_gather_equals_one_hot_and_sampling_with_diagnostics():
  vocab = 7
  cell = HyperLSTMCell(H, hyper_features=HH, embedding_size=NZ, recurrent_dropout=0.1)
  lm = CharLM(vocab_size=vocab, cell=cell, num_layers=1, input_dropout=0.3, output_dropout=0.2)
  tokens = jnp.asarray(np.random.default_rng(6).integers(0, vocab, size=(B, T)), jnp.int32)
  carry0 = CharLM(vocab_size=vocab, cell=cell).initialize_carry(B)  # unbound
  params = perturbed(nn.meta.unbox(lm.init(jax.random.key(0), tokens, carry0)['params']))
  logits, carry = lm.apply({'params': params}, tokens, carry0)
  assert logits.shape == (B, T, vocab) and logits.dtype == jnp.float32
  # One-hot float inputs through the same stack parameters give the same outputs as the id gather.
  stack = RecurrentStack(cell=cell)
  out_onehot, _ = stack.apply({'params': params['rnn']}, jax.nn.one_hot(tokens, vocab))
  out_ids, _ = stack.clone(cell=cell.clone(vocab_size=vocab)).apply({'params': params['rnn']}, tokens)
  np.testing.assert_allclose(out_onehot, out_ids, rtol=1e-5, atol=1e-6)
  # Sampling one step at a time (T = 1) gives the same logits and diagnostics as the whole sequence.
  _, _, diag = lm.apply({'params': params}, tokens, carry0, return_diagnostics=True)
  step = jax.jit(lambda tok, c: lm.apply({'params': params}, tok, c, return_diagnostics=True))
  c = carry0
  for t in range(T):
    lg, c, d = step(tokens[:, t : t + 1], c)
    np.testing.assert_allclose(lg[:, 0], logits[:, t], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
      d['layer_0']['weight_change'][:, 0], diag['layer_0']['weight_change'][:, t], rtol=1e-4, atol=1e-7
    )
  # Dropout (input, recurrent, output) only with an rng and deterministic=False.
  noisy, _ = lm.apply(
    {'params': params}, tokens, carry0, deterministic=False, rngs={'dropout': jax.random.key(1)}
  )
  assert float(jnp.abs(noisy - logits).max()) > 1e-3
  # The cell's vocab_size, when set, must be CharLM's.
  with pytest.raises(ValueError, match='differs from CharLM'):
    CharLM(vocab_size=vocab, cell=cell.clone(vocab_size=vocab + 1)).initialize_carry(1)


CELLS = {
  'lstm': LSTMCell(H),
  'ln_lstm': LayerNormLSTMCell(H),
  'hyperlstm': HyperLSTMCell(H, hyper_features=HH, embedding_size=NZ, layer_norm=False),
  'hyperrnn': HyperRNNCell(H, hyper_features=HH, embedding_size=NZ, weights='full'),
}


@pytest.mark.parametrize('kind', list(CELLS))
def test_carry_comes_from_the_cells_own_initialize_carry(kind):
  cell = CELLS[kind]
  stack = RecurrentStack(cell=cell.clone(vocab_size=7), num_layers=2)
  carry = stack.initialize_carry(None, (B, T))  # token ids
  own = cell.initialize_carry(jax.random.key(0), (B, H))
  assert len(carry) == 2
  for layer in carry:
    assert jax.tree.structure(layer) == jax.tree.structure(own)
    for a, b in zip(jax.tree.leaves(layer), jax.tree.leaves(own)):
      assert a.shape == b.shape and a.dtype == b.dtype
  # And the stack started from carry=None equals the stack started from that carry.
  tokens = jnp.asarray(np.random.default_rng(7).integers(0, 7, size=(B, T)), jnp.int32)
  params = perturbed(nn.meta.unbox(stack.init(jax.random.key(1), tokens)['params']))
  out_none, _ = stack.apply({'params': params}, tokens)
  out_given, _ = stack.apply({'params': params}, tokens, carry)
  np.testing.assert_array_equal(out_none, out_given)
  # Layer 1 reads layer 0's outputs: it has no vocabulary (a float W_x of H rows).
  assert stack.layer_cell(0).vocab_size == 7 and stack.layer_cell(1).vocab_size is None


def test_any_flax_cell_runs_in_the_stack_as_in_nn_rnn():
  """Cells as values: flax's own GRUCell (no project_inputs / step) in the stack equals nn.RNN."""
  x = inputs(8)
  stack = RecurrentStack(cell=nn.GRUCell(H), num_layers=1)
  params = nn.meta.unbox(stack.init(jax.random.key(0), x)['params'])
  out, (carry,) = stack.apply({'params': params}, x)
  rnn = nn.RNN(nn.GRUCell(H), return_carry=True)
  ref_carry, ref = rnn.apply({'params': {'cell': params['layer_0']}}, x)
  np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(carry, ref_carry, rtol=1e-6, atol=1e-6)
