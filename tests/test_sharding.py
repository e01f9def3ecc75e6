"""Sharding by name on 8 fake CPU devices: loss and gradients on a mesh equal one device.

One child process (XLA_FLAGS=--xla_force_host_platform_device_count=8) runs every case: a CharLM or a
RecurrentStack whose parameters are placed by `hyper.partitioning` (logical names -> 'data' / 'model'),
on (8, 1) (data parallel) and (4, 2) (kernels split along 'model') meshes with Auto and Explicit axis
types, and reports the largest difference to the same computation on one device. The default run covers
the LSTM and the LN HyperLSTM; `-m slow` runs a second child with every cell (both forms where a cell has
two) on both meshes, for token ids and float inputs.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MESHES = {'dp': (8, 1), 'model': (4, 2)}


def _case(types: str, mesh: str, kind: str, cell: str):
  return (f'{types}_{mesh}_{kind}_{cell}', types, MESHES[mesh], kind, cell)


# (name, axis types, mesh shape, model, cell); model 'lm': CharLM on token ids, 'stack': float inputs.
CASES = [
  _case('auto', 'model', 'lm', 'ln_hyperlstm'),
  _case('explicit', 'dp', 'stack', 'lstm'),
  _case('explicit', 'dp', 'lm', 'ln_hyperlstm'),
  _case('explicit', 'model', 'stack', 'lstm'),
  _case('explicit', 'model', 'lm', 'lstm'),
  _case('explicit', 'model', 'stack', 'ln_hyperlstm'),
  _case('explicit', 'model', 'lm', 'ln_hyperlstm'),
]
# `-m slow`: every cell, both forms, on both meshes with Explicit axes, plus the other cells on Auto axes.
SLOW_CELLS = (
  'lstm',
  'ln_lstm',
  'hyperlstm',
  'ln_hyperlstm',
  'lstm_reference',
  'ln_lstm_reference',
  'hyperlstm_reference',
  'ln_hyperlstm_reference',
  'hyperrnn',
)
SLOW_CASES = [
  _case('explicit', mesh, kind, cell)
  for cell in SLOW_CELLS
  for kind in ('stack', 'lm')
  for mesh in MESHES
  if _case('explicit', mesh, kind, cell) not in CASES
] + [_case('auto', 'model', kind, cell) for cell in ('ln_lstm', 'hyperlstm') for kind in ('stack', 'lm')]


def _child(cases) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flax import linen as nn  # pylint: disable=g-import-not-at-top
  from jax.sharding import AxisType  # pylint: disable=g-import-not-at-top

  from hyper import cells, partitioning  # pylint: disable=g-import-not-at-top
  from hyper.char_lm import CharLM  # pylint: disable=g-import-not-at-top
  from hyper.sequence import RecurrentStack  # pylint: disable=g-import-not-at-top

  jax.config.update('jax_default_matmul_precision', 'highest')
  make = {
    'lstm': lambda impl: cells.LSTMCell(8, impl=impl),
    'ln_lstm': lambda impl: cells.LayerNormLSTMCell(8, impl=impl),
    'hyperlstm': lambda impl: cells.HyperLSTMCell(
      8, hyper_features=4, embedding_size=2, layer_norm=False, impl=impl
    ),
    'ln_hyperlstm': lambda impl: cells.HyperLSTMCell(8, hyper_features=4, embedding_size=2, impl=impl),
    'hyperrnn': lambda impl: cells.HyperRNNCell(8, hyper_features=4, embedding_size=2),  # one form
  }

  def make_cell(cell):  # 'ln_lstm' -> the fast form, 'ln_lstm_reference' -> the reference equations
    return make[cell.removesuffix('_reference')]('reference' if cell.endswith('_reference') else 'fast')

  def named(variables):
    # Leaves without logical names (cells from before they carried names) get ('embed', 'gates').
    box = lambda x: isinstance(x, nn.LogicallyPartitioned)
    return jax.tree.map(
      lambda x: (
        x if box(x) else nn.LogicallyPartitioned(x, ('embed', 'gates') if x.ndim == 2 else (None,) * x.ndim)
      ),
      variables,
      is_leaf=box,
    )

  rng = np.random.default_rng(0)
  results, setups = {}, {}

  def setup(kind, cell):
    # Two layers for the stack (the second layer's carry too), one for the language model (compile time).
    if kind == 'lm':
      model = CharLM(vocab_size=10, cell=make_cell(cell), num_layers=1)
      x = jnp.asarray(rng.integers(0, 10, size=(8, 3)), jnp.int32)
      target = jnp.asarray(rng.integers(0, 10, size=(8, 3)), jnp.int32)
    else:
      model = RecurrentStack(cell=make_cell(cell), num_layers=2)
      x = jnp.asarray(rng.normal(size=(8, 3, 5)), jnp.float32)
      target = jnp.asarray(rng.integers(0, 8, size=(8, 3)), jnp.int32)
    boxed = named(model.init(jax.random.key(0), x)['params'])
    params = jax.tree.map(lambda a: a + 0.1 * jnp.asarray(rng.normal(size=a.shape), a.dtype), nn.unbox(boxed))

    def loss_fn(p, x, target):
      out, carry = model.apply({'params': p}, x)
      # One-hot rather than take_along_axis: a gather from logits split over 'model' would need an
      # out_sharding on Explicit axes.
      loss = -jnp.mean(jnp.sum(jax.nn.one_hot(target, out.shape[-1]) * jax.nn.log_softmax(out), axis=-1))
      return loss, carry

    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    (ref_loss, _), ref_grads = grad_fn(params, x, target)  # one device
    return boxed, params, x, target, grad_fn, ref_loss, ref_grads

  for name, types, shape, kind, cell in cases:
    try:
      if (kind, cell) not in setups:
        setups[kind, cell] = setup(kind, cell)
      boxed, params, x, target, grad_fn, ref_loss, ref_grads = setups[kind, cell]
      axis_type = AxisType.Explicit if types == 'explicit' else AxisType.Auto
      mesh = jax.make_mesh(shape, ('data', 'model'), axis_types=(axis_type,) * 2)
      with jax.set_mesh(mesh):
        shardings = partitioning.shardings(boxed, mesh)
        p_mesh = jax.device_put(params, shardings)
        batch = partitioning.logical_sharding(mesh, ('batch',))
        (loss, carry), grads = grad_fn(p_mesh, jax.device_put(x, batch), jax.device_put(target, batch))
      model_sharded = sorted(
        {
          jax.tree_util.keystr(k)
          for k, s in jax.tree_util.tree_leaves_with_path(shardings)
          if 'model' in tuple(s.spec)
        }
      )
      results[name] = {
        'loss_diff': abs(float(loss) - float(ref_loss)),
        'grad_diff': max(
          float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads))
        ),
        'grad_scale': max(float(jnp.abs(b).max()) for b in jax.tree.leaves(ref_grads)),
        'grads_sharded_like_params': all(
          g.sharding.is_equivalent_to(s, g.ndim)
          for g, s in zip(jax.tree.leaves(grads), jax.tree.leaves(shardings))
        ),
        'carry_specs': sorted({tuple(c.sharding.spec) for c in jax.tree.leaves(carry)}),
        'model_sharded': len(model_sharded),
        'error': None,
      }
    except Exception as e:  # pylint: disable=broad-except
      results[name] = {'error': f'{type(e).__name__}: {str(e).splitlines()[0][:300]}'}
  print('RESULTS ' + json.dumps(results))


def _run_child(which: str) -> dict:
  env = dict(
    os.environ,
    XLA_FLAGS='--xla_force_host_platform_device_count=8',
    JAX_PLATFORMS='cpu',
    PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
  )
  proc = subprocess.run(
    [sys.executable, os.path.abspath(__file__), which],
    env=env,
    capture_output=True,
    text=True,
    timeout=1800,
    check=False,
  )
  lines = [l for l in proc.stdout.splitlines() if l.startswith('RESULTS ')]
  assert proc.returncode == 0 and lines, proc.stderr[-3000:]
  return json.loads(lines[-1][len('RESULTS ') :])


@pytest.fixture(scope='module')
def results():
  return _run_child('default')


@pytest.fixture(scope='module')
def slow_results():
  return _run_child('slow')


def _check(r: dict, types: str, shape: tuple[int, int]) -> None:
  assert r['error'] is None, r['error']
  assert r['loss_diff'] <= 1e-5, r
  assert r['grad_diff'] <= 1e-5 * max(1.0, r['grad_scale']), r
  if types == 'explicit':
    # The carry was created split along the batch over 'data', like the inputs, and stayed so.
    assert r['carry_specs'] == [['data', None]], r
    assert r['grads_sharded_like_params'], r
  if shape[1] > 1:
    assert r['model_sharded'] >= 3, r  # the rule table did split kernels along 'model'


@pytest.mark.parametrize('name,types,shape,kind,cell', CASES, ids=[c[0] for c in CASES])
def test_mesh_equals_one_device(results, name, types, shape, kind, cell):
  del kind, cell
  _check(results[name], types, shape)


@pytest.mark.slow
@pytest.mark.parametrize('name,types,shape,kind,cell', SLOW_CASES, ids=[c[0] for c in SLOW_CASES])
def test_every_cell_mesh_equals_one_device(slow_results, name, types, shape, kind, cell):
  del kind, cell
  _check(slow_results[name], types, shape)


if __name__ == '__main__':
  _child(SLOW_CASES if sys.argv[1:] == ['slow'] else CASES)
