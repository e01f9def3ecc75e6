"""Tests for hyper/convnets.py: the hypernetized WRN equals the plain WRN on the generated params (batch
statistics included), shortcut kinds, the MNIST convnet, and the image-model contract."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyper.convnets import (
  HyperMNISTConvNet,
  HyperWideResNet,
  MNISTConvNet,
  WideResNet,
  WRNBlock,
  wrn_hyper_rule,
)
from hyper.static import count_params


def _inputs(shape, seed=0):
  return jax.random.uniform(jax.random.key(seed), shape)


@pytest.fixture(scope='module')
def tiny_hyper_wrn():
  """Tiny: depth 10 (one block per stage), width 1, 8x8 images; initialised once for this file."""
  x = _inputs((4, 8, 8, 3))
  hyper = HyperWideResNet(depth=10, width=1)
  # jit the init: eager init dispatches hundreds of tiny ops, each compiled separately.
  variables = jax.jit(lambda k: hyper.init({'params': k}, x, train=False))(jax.random.key(0))
  return hyper, x, variables


def test_hyper_wrn_equals_plain_wrn_on_generated_params(tiny_hyper_wrn):
  hyper, x, variables = tiny_hyper_wrn
  plain = WideResNet(depth=10, width=1)
  assert set(variables['params']) == {'generator', 'embeddings', 'direct'}

  hn = hyper.hypernetwork(x.shape)
  main_params = hn.apply(variables['params'])
  main_stats = variables['batch_stats']['main_stats']
  # Same tree as the plain network's own init: the plain apply takes it unchanged.
  plain_vars = jax.eval_shape(lambda: plain.init({'params': jax.random.key(0)}, x, train=False))
  assert jax.tree_util.tree_structure(main_params) == jax.tree_util.tree_structure(plain_vars['params'])
  assert jax.tree_util.tree_structure(main_stats) == jax.tree_util.tree_structure(plain_vars['batch_stats'])
  # The 6 residual 3x3 kernels are generated: 1 + 2 + 4 tiles from conv-pairs (16, 16), (16->32, 32),
  # (32->64, 64): 2*1 + (2 + 4) + (8 + 16) = 32 tiles.
  assert len(hn.generated_paths) == 6 and hn.num_tiles == 32

  # jit: one compile per function is much cheaper here than eager op-by-op dispatch.
  train = lambda m: jax.jit(lambda v, x: m.apply(v, x, train=True, mutable=['batch_stats']))
  evaluate = lambda m: jax.jit(lambda v, x: m.apply(v, x, train=False))
  y_h, upd_h = train(hyper)(variables, x)
  y_p, upd_p = train(plain)({'params': main_params, 'batch_stats': main_stats}, x)
  np.testing.assert_allclose(y_h, y_p, rtol=1e-6, atol=1e-6)
  changed = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()), upd_p['batch_stats'], main_stats)
  assert max(jax.tree_util.tree_leaves(changed)) > 0  # train mode really updates the running stats
  jax.tree_util.tree_map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
    upd_h['batch_stats']['main_stats'],
    upd_p['batch_stats'],
  )

  # Eval mode with the updated statistics.
  new_vars = {'params': variables['params'], 'batch_stats': upd_h['batch_stats']}
  e_h = evaluate(hyper)(new_vars, x)
  e_p = evaluate(plain)({'params': main_params, 'batch_stats': upd_p['batch_stats']}, x)
  np.testing.assert_allclose(e_h, e_p, rtol=1e-6, atol=1e-6)


def test_hyper_wrn_jit_grad_reaches_generator_and_embeddings(tiny_hyper_wrn):
  hyper, x, variables = tiny_hyper_wrn
  labels = jnp.array([1, 3, 0, 9])

  @jax.jit
  def grads(params, stats):
    def loss(p):
      logits, upd = hyper.apply({'params': p, 'batch_stats': stats}, x, train=True, mutable=['batch_stats'])
      return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1)), upd

    return jax.grad(loss, has_aux=True)(params)

  g, _ = grads(variables['params'], variables['batch_stats'])
  for part in ('generator', 'embeddings', 'direct'):
    norms = [float(jnp.abs(v).max()) for v in jax.tree_util.tree_leaves(g[part])]
    assert all(np.isfinite(norms)) and max(norms) > 0, part
  assert np.all([float(jnp.abs(v).max()) > 0 for v in jax.tree_util.tree_leaves(g['embeddings'])])


def test_wrn40_rule_selects_the_36_residual_kernels():
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  for width, tiles in ((1, 242), (2, 966)):
    hn = HyperWideResNet(depth=40, width=width).hypernetwork(x.shape)
    paths = hn.generated_paths
    # 3 stages x 6 blocks x 2 convs; never conv1 (3 input channels) or a 1x1 shortcut.
    assert len(paths) == 36
    assert all(
      p[0].startswith(('stage2', 'stage3', 'stage4')) and p[1] in ('conv_a', 'conv_b') for p in paths
    )
    assert hn.num_tiles == tiles
  shapes = jax.eval_shape(
    lambda: WideResNet(40, 2).init({'params': jax.random.key(0)}, jnp.zeros(x.shape), train=False)
  )
  rule = wrn_hyper_rule()
  flat = jax.tree_util.tree_flatten_with_path(shapes['params'])[0]
  chosen = [p for p, leaf in flat if rule(tuple(k.key for k in p), leaf.shape)]
  assert len(chosen) == 36
  assert ('stage2_block0', 'shortcut', 'kernel') in {tuple(k.key for k in p) for p, _ in flat}


@pytest.mark.parametrize('stride', [1, 2])
def test_zero_pad_and_projection_shortcuts(stride):
  x = _inputs((2, 4, 4, 4))
  for shortcut in ('zero_pad', 'projection'):
    block = WRNBlock(8, stride=stride, shortcut=shortcut)
    v = block.init(jax.random.key(0), x)
    # zero_pad needs a 1x1 conv only where the width changes at stride 1 (stage 2 of WRN 40-k, k > 1).
    assert ('shortcut' in v['params']) == (shortcut == 'projection' or stride == 1)
    if shortcut == 'zero_pad' and stride == 2:
      # With the residual branch's last conv zeroed, the output is the shortcut alone: the
      # pre-activated input (eval BN with init stats 0/1 is x / sqrt(1 + eps)), 2x2 average pooled,
      # zero-padded from 4 to 8 channels (2 each side).
      params = dict(v['params'])
      params['conv_b'] = jax.tree_util.tree_map(jnp.zeros_like, params['conv_b'])
      y = block.apply({**v, 'params': params}, x)
      o = np.maximum(np.asarray(x) / np.sqrt(1 + 1e-5), 0)
      pooled = o.reshape(2, 2, 2, 2, 2, 4).mean((2, 4))
      want = np.pad(pooled, ((0, 0), (0, 0), (0, 0), (2, 2)))
      np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


def test_mnist_convnet_normal_and_hyper():
  x = _inputs((3, 28, 28, 1))
  plain, hyper, flag = MNISTConvNet(), HyperMNISTConvNet(), MNISTConvNet(hyper=True)
  vp = plain.init({'params': jax.random.key(0)}, x, train=False)
  vh = hyper.init({'params': jax.random.key(0)}, x, train=False)
  vf = flag.init({'params': jax.random.key(0)}, x, train=False)
  assert vp['params']['conv2']['kernel'].shape == (7, 7, 16, 16)
  assert 'batch_stats' not in vh
  assert count_params(vp) - count_params(vh) == 12_544 - 4_244
  assert count_params(vf) == count_params(vh)
  y, _ = hyper.apply(vh, x, train=True, mutable=['batch_stats'])
  main_params = hyper.hypernetwork(x.shape).apply(vh['params'])
  np.testing.assert_allclose(y, plain.apply({'params': main_params}, x), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(
    flag.apply(vf, x), hyper.apply({'params': vf['params']['hyper']}, x), rtol=1e-6, atol=1e-6
  )
  assert y.shape == (3, 10)
