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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding
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
