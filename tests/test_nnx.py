"""hyper.nnx: the cells, the stack, CharLM and a static hypernetwork from flax.nnx equal the Linen modules
for the same parameters (values and gradients), under nnx.RNN, nnx.scan and nnx.Optimizer."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx

from hyper import cells
from hyper import nnx as hnnx
from hyper.char_lm import CharLM
from hyper.sequence import RecurrentStack
from hyper.static import Hypernetized, conv_kernel_rule

B, T, D, H = 2, 4, 3, 5
CELLS = {
  'ln_hyperlstm': cells.HyperLSTMCell(H, hyper_features=4, embedding_size=2),
  'hyperrnn': cells.HyperRNNCell(H, hyper_features=4, embedding_size=2),
  'lstm': cells.LSTMCell(H),
}


def _inputs(seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(B, T, D)), jnp.float32)


def _perturb(model, seed=0):
  """Moves every parameter off its init (z projections start at zero) through hnnx.set_params."""
  rng = np.random.default_rng(seed)
  p = jax.tree.map(lambda a: a + 0.2 * jnp.asarray(rng.normal(size=a.shape), a.dtype), hnnx.params(model))
  hnnx.set_params(model, p)
  return p


@pytest.mark.parametrize('kind', list(CELLS))
def test_cell_in_nnx_rnn_and_nnx_scan_equals_linen_values_and_gradients(kind):
  cell = CELLS[kind]
  model = hnnx.Cell(cell, (B, D), rngs=nnx.Rngs(0))
  params = _perturb(model)
  x = _inputs()
  stack = RecurrentStack(cell=cell)
  linen_loss = lambda p: jnp.sum(stack.apply({'params': {'layer_0': p}}, x)[0] ** 2)
  want, want_grads = jax.value_and_grad(linen_loss)(params)

  def rnn_loss(m):
    return jnp.sum(nnx.RNN(m)(x) ** 2)

  got, grads = nnx.value_and_grad(rnn_loss)(model)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  grads = nnx.to_pure_dict(grads)['cell']
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(want_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))

  # A plain nnx.scan over the cell (the module broadcast, the carry carried).
  @nnx.scan(in_axes=(None, nnx.Carry, 1), out_axes=(nnx.Carry, 1))
  def run(m, carry, x_t):
    return m(carry, x_t)

  _, ys = run(model, model.initialize_carry((B, D)), x)
  np.testing.assert_allclose(ys, stack.apply({'params': {'layer_0': params}}, x)[0], rtol=1e-5, atol=1e-6)


def test_token_ids_cell_and_stack_and_charlm_equal_linen():
  vocab = 7
  tokens = jnp.asarray(np.random.default_rng(1).integers(0, vocab, size=(B, T)), jnp.int32)
  cell = CELLS['ln_hyperlstm']
  # A cell reading ids: num_feature_axes 0, so nnx.RNN finds the time axis of [B, T].
  id_cell = hnnx.Cell(cell.clone(vocab_size=vocab), (B,), rngs=nnx.Rngs(0))
  assert id_cell.num_feature_axes == 0
  p = _perturb(id_cell)
  want, _ = RecurrentStack(cell=cell.clone(vocab_size=vocab)).apply({'params': {'layer_0': p}}, tokens)
  np.testing.assert_allclose(nnx.RNN(id_cell)(tokens), want, rtol=1e-5, atol=1e-6)
  # The whole CharLM (2 layers, diagnostics passed through) as one NNX module.
  linen_lm = CharLM(vocab_size=vocab, cell=cell, num_layers=2)
  lm = hnnx.Linen(linen_lm, tokens, rngs=nnx.Rngs(0))
  p = _perturb(lm)
  carry = lm.linen_module.initialize_carry(B)
  got, _, diag = lm(tokens, carry, return_diagnostics=True)
  want, _, want_diag = linen_lm.apply({'params': p}, tokens, carry, return_diagnostics=True)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    diag['layer_1']['weight_change'], want_diag['layer_1']['weight_change'], rtol=1e-4, atol=1e-7
  )
  # The logical axis names of the softmax kernel survive as NNX sharding metadata.
  assert tuple(lm.module.softmax['kernel'].get_metadata()['out_sharding']) == ('embed', 'vocab')


def test_dropout_follows_train_and_eval():
  vocab = 7
  tokens = jnp.asarray(np.random.default_rng(2).integers(0, vocab, size=(B, T)), jnp.int32)
  lm = hnnx.Linen(
    CharLM(vocab_size=vocab, cell=cells.LSTMCell(H, recurrent_dropout=0.5), output_dropout=0.5),
    tokens,
    rngs=nnx.Rngs(params=0, dropout=1),
  )
  lm.eval()
  a, _ = lm(tokens)
  b, _ = lm(tokens)
  np.testing.assert_array_equal(a, b)
  lm.train()
  c, _ = lm(tokens)
  d, _ = lm(tokens)  # a new mask every call: the module's dropout stream advances
  assert float(jnp.abs(c - a).max()) > 1e-3 and float(jnp.abs(d - c).max()) > 1e-3


def test_static_hypernetwork_equals_linen():
  class Main(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      x = nn.Conv(4, (3, 3), name='conv1')(x)
      return nn.Conv(4, (3, 3), name='conv2')(nn.relu(x)).mean((1, 2))

  linen = Hypernetized(Main(), conv_kernel_rule((3, 3)), (3, 3, 4, 4), embedding_size=2)
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 5, 5, 4)), jnp.float32)
  model = hnnx.Linen(linen, x, rngs=nnx.Rngs(0))
  p = _perturb(model)
  np.testing.assert_allclose(model(x), linen.apply({'params': p}, x), rtol=1e-5, atol=1e-6)
  want = jax.grad(lambda p: jnp.sum(linen.apply({'params': p}, x) ** 2))(p)
  got = nnx.to_pure_dict(nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model))['module']
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_one_nnx_optimizer_step_lowers_the_loss():
  vocab = 6
  tokens = jnp.asarray(np.tile(np.arange(vocab), (B, 2))[:, : T + 1], jnp.int32)
  # An LSTM: from init the tiny LN HyperLSTM's loss is too curved for a fixed-size step to be sure to
  # lower it (its gradients match finite differences); the equalities above cover the hyper cells.
  linen_lm = CharLM(vocab_size=vocab, cell=CELLS['lstm'])
  lm = hnnx.Linen(linen_lm, tokens[:, :-1], rngs=nnx.Rngs(0))
  before_params = hnnx.params(lm)
  optimizer = nnx.Optimizer(lm, optax.sgd(0.5), wrt=nnx.Param)

  def loss_fn(model):
    logits, _ = model(tokens[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

  @nnx.jit
  def train_step(model, optimizer):
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  before = train_step(lm, optimizer)
  after = loss_fn(lm)
  assert float(after) < float(before) - 1e-3, (float(before), float(after))
  # The step is the Linen one: params - 0.5 * the Linen gradient.
  linen_grads = jax.grad(
    lambda p: optax.softmax_cross_entropy_with_integer_labels(
      linen_lm.apply({'params': p}, tokens[:, :-1])[0], tokens[:, 1:]
    ).mean()
  )(before_params)
  want = jax.tree.map(lambda p, g: p - 0.5 * g, before_params, linen_grads)
  for a, b in zip(jax.tree.leaves(hnnx.params(lm)), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
