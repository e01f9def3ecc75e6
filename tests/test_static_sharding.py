"""A conditioned `Hypernetized` on 8 fake CPU devices, explicit and auto axis types, data-parallel and with
the generator sharded along 'model' by its logical axis names: values and gradients equal to one device,
for one condition per batch and one per example (per-example kernels under vmap)."""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
  import sys
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
  sys.path.insert(0, 'tests')
  from test_conditioned_static import C, SmallNet
  from hyper.static import Hypernetized, conv_kernel_rule

  assert jax.device_count() == 8
  # Logical names -> mesh axes: the generator's hidden units split along 'model', the rest replicated.
  RULES = (('nz', None), ('hyper', 'model'), ('kernel_out', None))
  model = Hypernetized(main=SmallNet(), rule=conv_kernel_rule((3, 3)), basic_shape=(3, 3, 2, 4),
                       embedding_size=4, condition_size=C)
  x = jax.random.normal(jax.random.key(0), (8, 5, 5, 2))
  cs = jax.random.normal(jax.random.key(3), (8, C))
  variables = jax.jit(lambda k: model.init({'params': k}, x))(jax.random.key(1))
  specs = nn.get_partition_spec(variables)['params']
  assert tuple(specs['generator']['w_in']) == ('nz', 'hyper')
  params = nn.unbox(variables)['params']
  params['condition'] = jax.tree.map(lambda w: 0.3 * jax.random.normal(jax.random.key(2), w.shape),
                                     params['condition'])

  def loss(p, x, c):
    return jnp.mean(model.apply({'params': p}, x, condition=c) ** 2)

  f = jax.value_and_grad(loss, argnums=(0, 2))
  conditions = {'batch': cs[0], 'example': cs}
  refs = {k: jax.jit(f)(params, x, c) for k, c in conditions.items()}
  for mode in sys.argv[1].split(','):
    axis_type, shape, kind = mode.split(':')
    mesh = jax.make_mesh(tuple(int(s) for s in shape.split('x')), ('data', 'model'),
                         axis_types=(getattr(AxisType, axis_type),) * 2)
    c = conditions[kind]
    p_sh = jax.device_put(params, nn.logical_to_mesh_sharding(specs, mesh, RULES))
    x_sh = jax.device_put(x, NamedSharding(mesh, P('data')))
    c_sh = jax.device_put(c, NamedSharding(mesh, P('data') if c.ndim == 2 else P()))
    with jax.set_mesh(mesh):
      out = jax.jit(f)(p_sh, x_sh, c_sh)
    assert p_sh['generator']['w_in'].sharding.spec == P(None, 'model')
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), out, refs[kind])
    print(mode, 'equal')
""")

MODES = [
  'Explicit:4x2:batch',
  'Explicit:4x2:example',
  'Explicit:8x1:example',
  'Auto:4x2:batch',
  'Auto:4x2:example',
  'Auto:8x1:example',
]


def test_sharded_equals_one_device_explicit_and_auto():
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8', 'PYTHONPATH': ROOT}
  proc = subprocess.run(
    [sys.executable, '-c', SCRIPT, ','.join(MODES)],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split('\n')[: len(MODES)] == [f'{m} equal' for m in MODES], proc.stdout
