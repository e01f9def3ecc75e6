"""Conditioned static hypernetworks (sec. 3.1 eq. 1-2 with z^j(c) = z^j + W_c^j c): kernels per condition,
batched and under vmap, gradients and forward mode against finite differences, `Hypernetized`'s
conditioning hook, logical axis names, an NNX wrapper, and a multi-task run where conditioning is used."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from experiments import multitask_static
from hyper.static import (
  Hypernetized,
  StaticHypernetwork,
  conv_kernel_rule,
  count_params,
)

BASIC = (3, 3, 2, 4)  # f_h, f_w, N_in, N_out (tiny)
N_Z, C = 5, 3
SHAPES = {
  'big': {
    'kernel': jax.ShapeDtypeStruct((3, 3, 4, 8), jnp.float32),  # 2 x 2 tiles
    'bias': jax.ShapeDtypeStruct((8,), jnp.float32),
  },
  'small': {'kernel': jax.ShapeDtypeStruct((3, 3, 2, 4), jnp.float32)},  # 1 x 1 tile
}


def numpy_kernel(gen, z, basic_shape=BASIC):
  """Eq. 1-2 literally for one embedding z (float64): a_i = W_i z + B_i; K_i = <W_out, a_i> + B_out."""
  f_h, f_w, n_in, n_out = basic_shape
  w_in, b_in, w_out, b_out = (np.asarray(gen[k], np.float64) for k in ('w_in', 'b_in', 'w_out', 'b_out'))
  d = w_in.shape[1] // n_in
  kernel = np.zeros((f_h, f_w, n_in, n_out))
  for i in range(n_in):
    a_i = w_in[:, i * d : (i + 1) * d].T @ np.asarray(z, np.float64) + b_in[i * d : (i + 1) * d]
    kernel[:, :, i, :] = (w_out.T @ a_i + b_out).reshape(n_out, f_h, f_w).transpose(1, 2, 0)
  return kernel


def make(condition_size=C, shapes=SHAPES, dtype=jnp.float32):
  shapes = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, dtype), shapes)
  return StaticHypernetwork(shapes, conv_kernel_rule((3, 3)), BASIC, N_Z, condition_size=condition_size)


def randomised(hn, seed=0):
  """Hyper params with non-zero biases and conditioning weights W_c (zero at init), so tests see them."""

  @jax.jit  # one compile instead of one per eager random op
  def draw(rng):
    hp = hn.init(rng)
    keys = iter(jax.random.split(jax.random.fold_in(rng, 1), 16))
    normal = lambda w: jax.random.normal(next(keys), w.shape, w.dtype)
    hp['generator']['b_in'] = normal(hp['generator']['b_in'])
    hp['generator']['b_out'] = normal(hp['generator']['b_out'])
    hp['condition'] = jax.tree.map(normal, hp['condition'])
    return hp

  return draw(jax.random.key(seed))


def test_conditioning_off_adds_nothing_on_adds_w_c_at_zero():
  plain, cond = make(None), make(C)
  hp0, hp = jax.jit(plain.init)(jax.random.key(0)), jax.jit(cond.init)(jax.random.key(0))
  assert set(hp0) == {'generator', 'embeddings', 'direct'}
  assert count_params(hp) - count_params(hp0) == cond.num_tiles * C * N_Z == 5 * 3 * 5
  # Same random draws for everything else; W_c = 0, so every condition gives the unconditioned params.
  jax.tree.map(np.testing.assert_array_equal, {k: hp[k] for k in hp0}, hp0)
  c = jnp.array([1.0, -2.0, 3.0])
  jax.tree.map(np.testing.assert_array_equal, jax.jit(cond.apply)(hp, c), jax.jit(plain.apply)(hp0))
  with pytest.raises(ValueError, match='condition_size=C'):
    plain.apply(hp0, c)
  with pytest.raises(ValueError, match=r'expected \[\.\.\., 3\]'):
    cond.apply(hp, jnp.ones(4))


def test_two_conditions_give_different_kernels_from_shifted_embeddings():
  hn = make()
  hp = randomised(hn)
  c1, c2 = jnp.array([1.0, 0.0, -1.0]), jnp.array([0.5, 2.0, 0.0])
  apply = jax.jit(hn.apply)
  p1, p2 = apply(hp, c1), apply(hp, c2)
  assert float(jnp.abs(p1['big']['kernel'] - p2['big']['kernel']).max()) > 0.1
  np.testing.assert_array_equal(p1['big']['bias'], p2['big']['bias'])  # ordinary leaves: no condition
  # Each tile j is eq. 1-2 of z^j + W_c^j c (an independent float64 computation).
  for c, p in ((c1, p1), (c2, p2)):
    for i in range(2):
      for j in range(2):
        z = np.asarray(hp['embeddings']['big']['kernel'][i, j], np.float64) + np.asarray(
          hp['condition']['big']['kernel'][i, j], np.float64
        ).T @ np.asarray(c, np.float64)
        np.testing.assert_allclose(
          p['big']['kernel'][:, :, 2 * i : 2 * i + 2, 4 * j : 4 * j + 4],
          numpy_kernel(hp['generator'], z),
          rtol=1e-4,
          atol=1e-4,
        )


def test_batched_apply_equals_vmap_and_one_at_a_time():
  hn = make()
  hp = randomised(hn)
  cs = jax.random.normal(jax.random.key(1), (2, 3, C))
  apply = jax.jit(hn.apply)
  batched = apply(hp, cs)
  vmapped = jax.vmap(jax.vmap(lambda c: hn.apply(hp, c)))(cs)
  for path in (('big', 'kernel'), ('big', 'bias'), ('small', 'kernel')):
    leaf = lambda t, path=path: t[path[0]][path[1]]
    assert leaf(batched).shape == (2, 3, *SHAPES[path[0]][path[1]].shape)
    np.testing.assert_allclose(leaf(batched), leaf(vmapped), rtol=1e-6, atol=1e-6)
    for idx in np.ndindex(2, 3):
      np.testing.assert_allclose(leaf(batched)[idx], leaf(apply(hp, cs[idx])), rtol=1e-6, atol=1e-6)


def test_batched_embeddings_give_per_example_kernels():
  """Embeddings with a leading batch axis (e.g. produced by an encoder): the issue's failing reshape."""
  hn = make(None)
  hp = jax.jit(hn.init)(jax.random.key(0))
  per_example = jax.tree.map(lambda z: jnp.stack([z, -z, 2 * z]), hp['embeddings'])  # [3, A, B, N_z]
  out = hn.apply({**hp, 'embeddings': per_example})
  assert out['big']['kernel'].shape == (3, 3, 3, 4, 8) and out['big']['bias'].shape == (3, 8)
  for b in range(3):
    one = hn.apply({**hp, 'embeddings': jax.tree.map(lambda z, b=b: z[b], per_example)})
    np.testing.assert_allclose(out['small']['kernel'][b], one['small']['kernel'], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out['big']['kernel'][b], one['big']['kernel'], rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match='expected'):
    hn.apply({**hp, 'embeddings': jax.tree.map(lambda z: z[..., :2], hp['embeddings'])})


def _central_difference(f, x, v, eps=1e-6):
  return (f(x + eps * v) - f(x - eps * v)) / (2 * eps)


def test_gradients_and_jvp_reach_the_conditioning_path_float64():
  with jax.enable_x64(True):
    hn = make(dtype=jnp.float64)
    hp = randomised(hn)
    c = jnp.array([0.3, -1.2, 0.7], jnp.float64)
    target = jax.random.normal(jax.random.key(2), (3, 3, 4, 8), jnp.float64)

    @jax.jit
    def loss(c, w_c):
      params = hn.apply({**hp, 'condition': w_c}, c)
      return jnp.sum(jnp.sin(params['big']['kernel'] - target)) + jnp.sum(params['small']['kernel'] ** 3)

    g_c, g_w = jax.jit(jax.grad(loss, argnums=(0, 1)))(c, hp['condition'])
    assert float(jnp.abs(g_c).min()) > 0
    assert all(float(jnp.abs(w).max()) > 0 for w in jax.tree.leaves(g_w))
    for k in range(C):
      e = jnp.zeros(C, jnp.float64).at[k].set(1.0)
      fd = _central_difference(lambda c_: loss(c_, hp['condition']), c, e)
      np.testing.assert_allclose(g_c[k], fd, rtol=1e-7, atol=1e-8)
    w = hp['condition']['big']['kernel']
    v = jax.random.normal(jax.random.key(3), w.shape, jnp.float64)
    fd = _central_difference(lambda w_: loss(c, {**hp['condition'], 'big': {'kernel': w_}}), w, v)
    np.testing.assert_allclose(jnp.vdot(g_w['big']['kernel'], v), fd, rtol=1e-7)

    # Forward mode: the jvp of a generated kernel in a joint direction (c, z, generator) against finite
    # differences.
    @jax.jit
    def kernel(c, emb, gen):
      return hn.apply({**hp, 'embeddings': emb, 'generator': gen}, c)['big']['kernel']

    primals = (c, hp['embeddings'], hp['generator'])
    leaves, treedef = jax.tree.flatten(primals)
    keys = jax.random.split(jax.random.key(4), len(leaves))
    tangents = treedef.unflatten([jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])
    _, jvp = jax.jit(lambda p, t: jax.jvp(kernel, p, t))(primals, tangents)
    eps = 1e-6
    shift = lambda s: jax.tree.map(lambda x, t: x + s * eps * t, primals, tangents)
    fd = (kernel(*shift(1.0)) - kernel(*shift(-1.0))) / (2 * eps)
    np.testing.assert_allclose(jvp, fd, rtol=1e-6, atol=1e-9)
    # Second order: the Hessian-vector product in c (forward over reverse, under jax.checkpoint) against
    # finite differences of the gradient.
    grad_c = jax.jit(jax.grad(jax.checkpoint(lambda c: loss(c, hp['condition']))))
    v = jnp.array([0.4, -0.1, 0.9], jnp.float64)
    hvp = jax.jit(lambda c, v: jax.jvp(grad_c, (c,), (v,))[1])(c, v)
    np.testing.assert_allclose(hvp, _central_difference(grad_c, c, v), rtol=1e-6, atol=1e-8)


class SmallNet(nn.Module):
  """conv 3x3 (2 -> 4, generated), relu, conv 3x3 (4 -> 4, generated as 2 x 1 tiles), mean, dense."""

  batch_norm: bool = False

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Conv(4, (3, 3), name='conv1')(x))
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, name='bn')(x)
    x = nn.relu(nn.Conv(4, (3, 3), name='conv2')(x))
    return nn.Dense(3, name='head')(x.mean((1, 2)))


def _hypernetized(batch_norm=False, condition_size=C):
  return Hypernetized(
    main=SmallNet(batch_norm),
    rule=conv_kernel_rule((3, 3)),
    basic_shape=(3, 3, 2, 4),
    embedding_size=N_Z,
    condition_size=condition_size,
  )


def test_hypernetized_per_batch_and_per_example_conditions():
  model = _hypernetized()
  x = jax.random.normal(jax.random.key(0), (4, 5, 5, 2))
  variables = jax.jit(lambda k: model.init({'params': k}, x))(jax.random.key(1))
  assert set(variables['params']) == {'generator', 'embeddings', 'direct', 'condition'}
  # Logical axis names on the boxed hyper params.
  specs = nn.get_partition_spec(variables)['params']
  assert tuple(specs['generator']['w_in']) == ('nz', 'hyper')
  assert tuple(specs['generator']['w_out']) == ('hyper', 'kernel_out')
  assert tuple(specs['embeddings']['conv2']['kernel']) == (None, None, 'nz')
  assert tuple(specs['condition']['conv2']['kernel']) == (None, None, None, 'nz')
  params = nn.unbox(variables)['params']
  params['condition'] = jax.tree.map(
    lambda w: jax.random.normal(jax.random.key(2), w.shape), params['condition']
  )
  hn = model.hypernetwork(x.shape)
  cs = jax.random.normal(jax.random.key(3), (4, C))

  apply = jax.jit(lambda p, x, c: model.apply({'params': p}, x, condition=c))
  per_example = apply(params, x, cs)
  alone = jax.jit(lambda p, x, c: SmallNet().apply({'params': hn.apply(p, c)}, x))
  for b in range(4):
    want = alone(params, x[b : b + 1], cs[b])[0]
    np.testing.assert_allclose(per_example[b], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(apply(params, x, cs[b])[b], want, rtol=1e-5, atol=1e-5)  # c [C]
  assert float(jnp.abs(per_example[0] - apply(params, x, cs[1])[0]).max()) > 1e-4
  np.testing.assert_allclose(
    jax.jit(lambda p, x: model.apply({'params': p}, x))(params, x),
    alone(params, x, None),
    rtol=1e-5,
    atol=1e-5,
  )

  # Gradients reach the condition (and W_c) through the per-example path.
  g_c, g_p = jax.grad(lambda c, p: jnp.sum(apply(p, x, c) ** 2), argnums=(0, 1))(cs, params)
  assert np.all(np.abs(np.asarray(g_c)).sum(-1) > 0)
  assert all(float(jnp.abs(w).max()) > 0 for w in jax.tree.leaves(g_p['condition']))
  # Forward mode equals reverse mode through the whole model: <u, J v> from jvp and from vjp.
  v = jax.random.normal(jax.random.key(4), cs.shape)
  f = lambda c: model.apply({'params': params}, x, condition=c)
  y, jv = jax.jit(lambda c, v: jax.jvp(f, (c,), (v,)))(cs, v)
  u = jax.random.normal(jax.random.key(5), y.shape)
  (ju,) = jax.jit(lambda c, u: jax.vjp(f, c)[1](u))(cs, u)
  np.testing.assert_allclose(jnp.vdot(u, jv), jnp.vdot(ju, v), rtol=1e-4)
  # jax.checkpoint around the whole model changes nothing in the gradients.
  g_remat = jax.grad(jax.checkpoint(lambda c, p: jnp.sum(apply(p, x, c) ** 2)), argnums=(0, 1))(cs, params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g_remat, (g_c, g_p))

  with pytest.raises(ValueError, match=r'\[batch=4, C\]'):
    model.apply({'params': params}, x, condition=jnp.ones((3, C)))
  unconditioned = _hypernetized(condition_size=None)
  v0 = jax.eval_shape(lambda: unconditioned.init({'params': jax.random.key(1)}, x))
  with pytest.raises(ValueError, match='condition_size=C'):
    jax.eval_shape(lambda v: unconditioned.apply(v, x, condition=cs[0]), v0)


def test_hypernetized_batch_norm_main_network_and_conditions():
  model = _hypernetized(batch_norm=True)
  x = jax.random.normal(jax.random.key(0), (3, 5, 5, 2))
  variables = jax.jit(lambda k: model.init({'params': k}, x))(jax.random.key(1))
  cs = jax.random.normal(jax.random.key(3), (3, C))
  # Eval mode per example: each example with its own kernels and the running statistics.
  y = jax.jit(lambda v, x, c: model.apply(v, x, condition=c))(variables, x, cs)
  hn = model.hypernetwork(x.shape)
  stats = variables['batch_stats']['main_stats']
  alone = jax.jit(lambda p, x, c: SmallNet(True).apply({'params': hn.apply(p, c), 'batch_stats': stats}, x))
  for b in range(3):
    np.testing.assert_allclose(y[b], alone(variables['params'], x[b : b + 1], cs[b])[0], rtol=1e-5, atol=1e-5)
  # Train mode: one condition for the batch updates the statistics; per-example conditions refuse.
  _, updates = model.apply(variables, x, train=True, condition=cs[0], mutable=['batch_stats'])
  assert float(jnp.abs(updates['batch_stats']['main_stats']['bn']['mean'] - stats['bn']['mean']).max()) > 0
  with pytest.raises(ValueError, match='train mode'):
    model.apply(variables, x, train=True, condition=cs, mutable=['batch_stats'])


class NNXStaticHypernetwork(nnx.Module):
  """The NNX wrapper documented in /work/notes/static.md: the pure StaticHypernetwork is held as a static
  attribute, its hyper params as nnx.Param leaves."""

  def __init__(self, hnet: StaticHypernetwork, *, rngs: nnx.Rngs, main_params=None):
    self.hnet = hnet
    self.params = nnx.data(jax.tree.map(nnx.Param, hnet.init(rngs.params(), main_params)))

  def __call__(self, condition=None):
    return self.hnet.apply(_values(self.params), condition)


def _values(params):
  return jax.tree.map(lambda p: p[...], params, is_leaf=lambda x: isinstance(x, nnx.Variable))


def test_nnx_wrapper_gives_the_pure_numbers_and_trains():
  hn = make()
  module = NNXStaticHypernetwork(hn, rngs=nnx.Rngs(0))
  hp = jax.eval_shape(hn.init, jax.random.key(0))
  pure = _values(module.params)
  cs = jax.random.normal(jax.random.key(1), (2, C))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), module(cs), hn.apply(pure, cs))
  assert jax.tree.structure(pure) == jax.tree.structure(hp)

  loss = lambda out: jnp.sum((out['big']['kernel'] - 1.0) ** 2)
  g_pure = jax.grad(lambda p: loss(hn.apply(p, cs[0])))(pure)
  g_nnx = nnx.grad(lambda m: loss(m(cs[0])))(module)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    nnx.to_pure_dict(g_nnx)['params'],
    g_pure,
  )
  optimizer = nnx.Optimizer(module, optax.adam(1e-2), wrt=nnx.Param)

  @nnx.jit
  def step(module, optimizer):
    value, grads = nnx.value_and_grad(lambda m: loss(m(cs[0])))(module)
    optimizer.update(module, grads)
    return value

  first = float(step(module, optimizer))
  for _ in range(4):
    last = float(step(module, optimizer))
  assert last < first


def test_multitask_conditioning_is_used():
  """Three conv tasks with different kernels, mixed in every batch: with per-example kernels from a task
  embedding the loss falls far below what any shared kernel can reach; the unconditioned hypernetwork
  stays at that floor."""
  conditioned = multitask_static.train(True, steps=100)
  shared = multitask_static.train(False, steps=100)
  floor = conditioned['shared_kernel_floor']
  assert shared['shared_kernel_floor'] == floor
  assert shared['final_loss'] > 0.9 * floor
  assert conditioned['final_loss'] < 0.02 * floor < 0.02 * shared['final_loss']
  assert conditioned['final_loss'] < 0.01 * conditioned['start_loss']
