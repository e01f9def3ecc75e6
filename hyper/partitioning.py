"""Sharding by name: the logical axis names of `hyper`'s kernels, a rule table mapping them to mesh axes.

The big kernels carry Flax logical axis names (`nn.with_logical_partitioning`; `init` then returns
`nn.LogicallyPartitioned` boxes), as in MaxText and big_vision:

    'embed'  an input (fan-in) dimension: x features, vocabulary rows, h rows
    'gates'  an output dimension of 4 * units (LSTM gates) or units
    'hyper'  hyper units (N_hat_h)
    'nz'     the embedding size N_z
    'vocab'  the softmax head's output (CharLM)
    'batch'  the batch dimension of inputs, carries and activations

`DEFAULT_RULES` maps them onto a ('data', 'model') mesh: batch -> 'data', the wide gate and vocabulary
dimensions -> 'model', everything small replicated. Typical use:

    variables = jax.eval_shape(model.init, rng, tokens)              # boxed, with names
    shardings = partitioning.shardings(variables["params"], mesh)   # NamedSharding per parameter
    params = jax.jit(lambda r: nn.unbox(model.init(r, tokens)["params"]), out_shardings=shardings)(rng)

Parameters without names are replicated; a mesh axis that does not divide a dimension is dropped for
that dimension (replicated there), so one rule table serves every model size.

On a mesh with Explicit axis types (`jax.make_mesh`'s default) every array carries its sharding in its type
and an operation whose output sharding is ambiguous is an error. The helpers at the end (`explicit_spec`,
`leading_spec`, `take_rows`, `split_groups`, `like`) give the cells what they need there; each is a no-op
(the operation it replaces, unchanged) without a mesh or on Auto axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

Rules = Sequence[tuple[str, str | tuple[str, ...] | None]]

DEFAULT_RULES: tuple[tuple[str, str | None], ...] = (
  ('batch', 'data'),
  ('embed', None),
  ('gates', 'model'),
  ('hyper', None),
  ('kernel_out', None),
  ('nz', None),
  ('vocab', 'model'),
)


def _is_box(x) -> bool:
  return isinstance(x, nn.LogicallyPartitioned)


def logical_specs(variables: Any) -> Any:
  """PartitionSpec of logical names per leaf (P() where unnamed), shaped like the unboxed tree."""
  return jax.tree.map(lambda x: P(*x.names) if _is_box(x) else P(), variables, is_leaf=_is_box)


def _fit(spec: P, shape: tuple[int, ...], mesh: Mesh) -> P:
  """`spec` without the mesh axes that do not divide their dimension (those dimensions replicated)."""
  out = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
    size = int(np.prod([mesh.shape[a] for a in names])) if names else 1
    out.append(axes if size > 1 and dim % size == 0 else None)
  return P(*out)


def mesh_specs(variables: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Any:
  """PartitionSpec over mesh axes per leaf of `variables` (boxed, as `init` / `jax.eval_shape` return)."""

  def spec(x):
    if not _is_box(x):
      return P()
    mesh_spec = nn.logical_to_mesh_axes(x.names, rules)
    return _fit(mesh_spec, tuple(np.shape(x.value)), mesh)

  return jax.tree.map(spec, variables, is_leaf=_is_box)


def shardings(variables: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Any:
  """NamedSharding per leaf of `variables` (boxed), shaped like the unboxed tree (`nn.unbox(variables)`)."""
  return jax.tree.map(
    lambda s: NamedSharding(mesh, s), mesh_specs(variables, mesh, rules), is_leaf=lambda s: isinstance(s, P)
  )


def logical_sharding(mesh: Mesh, names: Sequence[str | None], rules: Rules = DEFAULT_RULES) -> NamedSharding:
  """NamedSharding of one array from its logical names, e.g. tokens ('batch', None) -> P('data', None)."""
  return NamedSharding(mesh, nn.logical_to_mesh_axes(tuple(names), rules))


def shard(variables: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Any:
  """`variables` (boxed) unboxed and placed on `mesh` by name (`jax.device_put`)."""
  return jax.device_put(nn.unbox(variables), shardings(variables, mesh, rules))


# ----------------------------------------------------------------------------------------------------------
# Explicit axes.


def explicit_spec(x: Any) -> P | None:
  """x's PartitionSpec (one entry per dimension) inside a mesh context with an Explicit axis, else None."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or AxisType.Explicit not in tuple(mesh.axis_types):
    return None
  ndim = np.ndim(x)
  spec = tuple(getattr(jax.typeof(x).sharding, 'spec', None) or ())
  return P(*spec[:ndim], *(None,) * (ndim - len(spec)))


def leading_spec(x: Any, n: int) -> tuple | None:
  """The sharding of x's leading n dimensions (e.g. the batch) on an explicit mesh, else None."""
  spec = explicit_spec(x)
  return None if spec is None else tuple(spec)[:n]


def _axes_size(axes, mesh) -> int:
  names = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
  return int(np.prod([mesh.shape[a] for a in names])) if names else 1


def take_rows(table: jax.Array, ids: jax.Array) -> jax.Array:
  """table[ids]: rows of table [V, ...] for integer ids [...] -> [..., *table.shape[1:]] (`jnp.take`).

  On an explicit mesh the gather's output sharding is not implied by its inputs; it is given as the ids'
  sharding followed by the sharding of a table row (e.g. ids [T, B] over ('data') and W_x [V, 4H] split
  over 'model' give [T, B, 4H] over (None, 'data', 'model')). Out-of-range ids give NaN rows, as
  `jnp.take`.
  """
  ids_spec, table_spec = explicit_spec(ids), explicit_spec(table)
  if ids_spec is None:
    return jnp.take(table, ids, axis=0)
  return table.at[ids].get(mode='fill', out_sharding=P(*ids_spec, *table_spec[1:]))


def split_groups(x: jax.Array, n: int) -> jax.Array:
  """[..., n * units] -> [..., n, units]: column block k of the last axis becomes x[..., k, :].

  A plain reshape, except on an explicit mesh whose axis splits the last dimension: a reshape would move
  that axis onto the group dimension (n blocks over the devices, so picking one gate would cut a mesh
  axis); instead the n column blocks are sliced out and stacked, so each block keeps the last dimension's
  sharding (units split over 'model'). Where units is not divisible by that axis, the last dimension is
  gathered first.
  """
  units = x.shape[-1] // n
  spec = explicit_spec(x)
  if spec is None or spec[-1] is None:
    return x.reshape(x.shape[:-1] + (n, units))
  if units % _axes_size(spec[-1], jax.sharding.get_abstract_mesh()):
    x = jax.sharding.reshard(x, P(*spec[:-1], None))
    return x.reshape(x.shape[:-1] + (n, units))
  return jnp.stack([x[..., k * units : (k + 1) * units] for k in range(n)], axis=-2)


def like(x: jax.Array, ref: Any) -> jax.Array:
  """x resharded to the sharding of `ref` (same rank) on an explicit mesh; x itself otherwise.

  E.g. a new carry kept in the sharding of the carry it replaces (a scan's carry keeps one type).
  """
  spec, ref_spec = explicit_spec(x), explicit_spec(ref)
  if spec is None or spec == ref_spec:
    return x
  return jax.sharding.reshard(x, ref_spec)
