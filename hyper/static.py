"""Static hypernetworks (sec. 3.1): a shared two-layer generator turns per-tile embeddings z^j into kernels.

`StaticHypernetwork` is a pair of pure functions built from the main network's parameter shapes and a
selection rule: `init(rng, main_params) -> hyper_params` and `apply(hyper_params, condition=None) -> the main
network's complete parameter pytree`, which the main network's own `apply` takes unchanged. With
`condition_size` set, a conditioning input c (a task or example embedding) shifts every z^j, so a batch of
conditions gives a batch of generated kernels (per-task or per-example weights). `Hypernetized` wraps it as a
flax module with the image-model contract of DESIGN.md, keeping the main network's `batch_stats` working.

Kernel layout: the generator is eq. 1-2 of the paper (K_i^j, the slice of kernel j for input channel i, from
a_i^j), and a kernel larger than the basic one is the paper's concatenation of basic kernels along the input
and output channels (`tile_kernels`). The author's reference notebook arranges the generator output
differently; this module does not follow it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from flax.core import FrozenDict, unfreeze
from jax.sharding import PartitionSpec

from hyper import partitioning

PyTree = Any
Path = tuple[str, ...]
# A selection rule: (path of a leaf in the main params, its shape) -> generate it?
Rule = Callable[[Path, tuple[int, ...]], bool]

__all__ = [
  'ConvKernelRule',
  'Hypernetized',
  'KernelGenerator',
  'StaticHypernetwork',
  'conv_kernel_rule',
  'count_params',
  'generate_kernels',
  'init_generator',
  'tile_kernels',
]


def count_params(tree: PyTree) -> int:
  """Number of scalars in a pytree of arrays or ShapeDtypeStructs."""
  return int(sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree)))


# Standard deviation of a unit normal truncated to [-2, 2].
_TRUNC_STD = 0.8796256610342398

# ------------------------------------------------------------------------------------------------------
# Kernel generator, eq. 1-2.
# ------------------------------------------------------------------------------------------------------


def init_generator(
  rng: jax.Array,
  basic_shape: Sequence[int],
  embedding_size: int,
  hidden_size: int | None = None,
  dtype=jnp.float32,
) -> dict[str, jax.Array]:
  """Parameters of the shared generator g(z) for basic kernels of `basic_shape` = (f_h, f_w, N_in, N_out).

  eq. 1: a_i = W_i z + B_i, i = 1..N_in, W_i in R^{d x N_z}  -> stored together as `w_in` [N_z, N_in*d].
  eq. 2: K_i = <W_out, a_i> + B_out, W_out in R^{f f N_out x d} -> `w_out` [d, N_out*f_h*f_w].
  Parameter count: N_z*N_in*d + N_in*d + d*N_out*f*f + N_out*f*f (e.g. 75,920 for 16x16x3x3 from N_z=d=64;
  4,240 for 7x7x16x16 from N_z=d=4).

  Initialisation. The author's reference code draws the weights from a truncated normal and the biases
  are zero; we scale the truncated normals so that, with unit-variance embeddings, a_i has unit variance
  and the generated kernel has He variance 2/(f_h f_w N_in) at init (the paper's std 0.01 for every
  weight would make the kernels ~1e-6, which only the biases would rescue).
  """
  f_h, f_w, n_in, n_out = basic_shape
  d = embedding_size if hidden_size is None else hidden_size
  k_in, k_out = jax.random.split(rng)
  kernel_std = math.sqrt(2.0 / (f_h * f_w * n_in))
  # flax's truncated_normal(stddev) truncates N(0, stddev) at 2 sigma, which leaves std 0.88 * stddev.
  w_in = nn.initializers.truncated_normal(stddev=1.0 / math.sqrt(embedding_size) / _TRUNC_STD)(
    k_in, (embedding_size, n_in * d), dtype
  )
  w_out = nn.initializers.truncated_normal(stddev=kernel_std / math.sqrt(d) / _TRUNC_STD)(
    k_out, (d, n_out * f_h * f_w), dtype
  )
  return {
    'w_in': w_in,  # [N_z, N_in*d]   (W_i of eq. 1)
    'b_in': jnp.zeros((n_in * d,), dtype),  # [N_in*d]        (B_i of eq. 1)
    'w_out': w_out,  # [d, N_out*f*f]  (W_out of eq. 2)
    'b_out': jnp.zeros((n_out * f_h * f_w,), dtype),  # [N_out*f*f]     (B_out of eq. 2)
  }


def _unshard_trailing(x: jax.Array, n: int | None = None) -> jax.Array:
  """On a mesh with explicit axis types, drop the sharding of x's trailing n dims (all when None) so the
  reshapes of eq. 1-2 and of the tiling type-check; leading (batch) dims keep theirs. The generator and
  the embeddings are small, so gathering them costs little. A no-op without an explicit mesh."""
  keep = 0 if n is None else x.ndim - n
  spec = partitioning.explicit_spec(x)
  if spec is None:
    if jax.sharding.get_abstract_mesh().empty or not isinstance(x, jax.core.Tracer):
      return x
    # Auto axes under a mesh: the same constraint for the partitioner (leading dims left to it).
    return jax.lax.with_sharding_constraint(
      x, PartitionSpec(*(PartitionSpec.UNCONSTRAINED,) * keep, *(None,) * (x.ndim - keep))
    )
  if all(s is None for s in spec[keep:]):
    return x
  return jax.sharding.reshard(x, PartitionSpec(*spec[:keep], *(None,) * (x.ndim - keep)))


def generate_kernels(
  generator: Mapping[str, jax.Array], z: jax.Array, basic_shape: Sequence[int]
) -> jax.Array:
  """Eq. 1-2 for a batch of embeddings: z [..., N_z] -> basic kernels [..., f_h, f_w, N_in, N_out].

  K_i (eq. 2: one row of N_out*f*f per input channel i) becomes the kernel's input-channel slice i; its
  N_out*f*f entries are read as (N_out, f_h, f_w) (any fixed order is the same model, W_out being i.i.d.
  at init) and the kernel is then moved to flax's HWIO layout.
  """
  f_h, f_w, n_in, n_out = basic_shape
  batch = z.shape[:-1]
  generator = {name: _unshard_trailing(w) for name, w in generator.items()}
  z = _unshard_trailing(z, 1)
  a = z @ generator['w_in'] + generator['b_in']  # [..., N_in*d]
  a = a.reshape(*batch, n_in, -1)  # [..., N_in, d]
  k = a @ generator['w_out'] + generator['b_out']  # [..., N_in, N_out*f*f]
  k = k.reshape(*batch, n_in, n_out, f_h, f_w)
  nb = len(batch)
  return jnp.transpose(k, (*range(nb), nb + 2, nb + 3, nb, nb + 1))  # [..., f_h, f_w, N_in, N_out]


def tile_kernels(tiles: jax.Array) -> jax.Array:
  """Assemble a [..., T_in, T_out, f_h, f_w, n_in, n_out] grid of basic kernels into one
  [..., f_h, f_w, T_in*n_in, T_out*n_out] kernel (sec. 3.1's concatenation of basic kernels): tile (i, j)
  fills input channels i*n_in:(i+1)*n_in and output channels j*n_out:(j+1)*n_out."""
  *batch, t_in, t_out, f_h, f_w, n_in, n_out = tiles.shape
  nb = len(batch)
  perm = (*range(nb), *(nb + a for a in (2, 3, 0, 4, 1, 5)))
  return jnp.transpose(tiles, perm).reshape(*batch, f_h, f_w, t_in * n_in, t_out * n_out)


class KernelGenerator(nn.Module):
  """Flax form of the sec. 3.1 generator: z [..., N_z] -> kernels [..., f_h, f_w, N_in, N_out].

  Attributes:
    basic_shape: (f_h, f_w, N_in, N_out) of one basic kernel (16x16x3x3 is (3, 3, 16, 16)).
    embedding_size: N_z.
    hidden_size: d (defaults to N_z, as in the paper).
  Its params are exactly `init_generator`'s dict, so `generate_kernels` can be applied to them.
  """

  basic_shape: tuple[int, int, int, int]
  embedding_size: int
  hidden_size: int | None = None

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    full = self.param(
      'generator', lambda rng: init_generator(rng, self.basic_shape, self.embedding_size, self.hidden_size)
    )
    return generate_kernels(full, z, self.basic_shape)


# ------------------------------------------------------------------------------------------------------
# Pure-functional hypernetize.
# ------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ConvKernelRule:
  """Selection rule: leaves called `leaf_name` with 4-d shape (*kernel_hw, in, out), optionally only under
  top-level modules whose names start with one of `under`. A frozen dataclass, so two equal rules (and the
  flax modules holding them) compare and hash equal, e.g. as static arguments of jax.jit."""

  kernel_hw: tuple[int, int] = (3, 3)
  under: tuple[str, ...] | None = None
  leaf_name: str = 'kernel'

  def __call__(self, path: Path, shape: tuple[int, ...]) -> bool:
    if path[-1] != self.leaf_name or len(shape) != 4 or tuple(shape[:2]) != tuple(self.kernel_hw):
      return False
    return self.under is None or path[0].startswith(self.under)


def conv_kernel_rule(
  kernel_hw: tuple[int, int] = (3, 3), under: Sequence[str] | None = None, leaf_name: str = 'kernel'
) -> Rule:
  """A `ConvKernelRule`, e.g. `conv_kernel_rule((3, 3), under=('stage2', 'stage3', 'stage4'))`."""
  return ConvKernelRule(tuple(kernel_hw), None if under is None else tuple(under), leaf_name)


def _default_leaf_init(rng: jax.Array, path: Path, shape: tuple[int, ...], dtype) -> jax.Array:
  """Fallback init for ordinary (non-generated) leaves when no main-network init values are given."""
  if path[-1] == 'scale':
    return jnp.ones(shape, dtype)
  if len(shape) < 2:
    return jnp.zeros(shape, dtype)
  return nn.initializers.lecun_normal()(rng, shape, dtype)


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: hashed by identity (param_shapes is a dict)
class StaticHypernetwork:
  """A static hypernetwork for any main network, as a pair of pure functions (init, apply).

  Built from the main network's parameter shapes (e.g. `jax.eval_shape(main.init, ...)['params']`) and a
  selection rule on (path, shape). Every selected leaf [f_h, f_w, A*n_in, B*n_out] is generated as an
  A x B grid of basic kernels K^j, each from its own embedding z^j (N_z) by eq. 1-2; one generator is
  shared by all tiles of all leaves. Other leaves are ordinary learned parameters, passed through.

  hyper_params = {'generator': {w_in, b_in, w_out, b_out},                   # eq. 1-2
                  'embeddings': {<same nesting as main>: [A, B, N_z]},        # z^j, one per tile
                  'condition': {<same nesting as main>: [A, B, C, N_z]},      # W_c^j, only if condition_size
                  'direct': {<main params without the generated leaves>}}    # ordinary leaves
  `apply(hyper_params)` runs the generator ONCE on all tiles of all leaves (one batched matmul pair) and
  returns the main network's complete params.

  Conditioning. With `condition_size=C`, a condition c in R^C (a task or example embedding) shifts every
  layer embedding before eq. 1:
      z^j(c) = z^j + W_c^j c,        W_c^j in R^{N_z x C}, initialised to 0,
  so an untrained conditioned hypernetwork equals the unconditioned one and `condition=None` means c = 0.
  `apply(hyper_params, c)` with c [..., C] returns params whose every leaf has the leading batch dims of c
  (generated kernels per condition; ordinary leaves broadcast), the same as
  `jax.vmap(lambda c: hnet.apply(hyper_params, c))(cs)`. Embeddings with extra leading dims
  ([..., A, B, N_z], e.g. produced by your own encoder) batch the same way. Gradients reach c and W_c^j;
  a main network takes per-example params by `jax.vmap` over (params, x).
  With `condition_size=None` (default) nothing is added: parameter counts are the paper's.

  Attributes:
    param_shapes: the main network's params (arrays or ShapeDtypeStructs; flax boxes are unboxed).
    rule: which leaves to generate, a predicate on (path, shape), e.g. `conv_kernel_rule((3, 3))`.
    basic_shape: (f_h, f_w, N_in, N_out) of one basic kernel K^j.
    embedding_size: N_z.  hidden_size: d (default N_z).
    embedding_std: standard deviation of the initial z^j.
    condition_size: C, the size of the conditioning input, or None for an unconditioned hypernetwork.
  """

  param_shapes: PyTree
  rule: Rule
  basic_shape: tuple[int, int, int, int]
  embedding_size: int
  hidden_size: int | None = None
  embedding_std: float = 1.0
  condition_size: int | None = None

  def __post_init__(self):
    object.__setattr__(self, 'basic_shape', tuple(int(s) for s in self.basic_shape))
    if self.condition_size is not None and int(self.condition_size) < 1:
      raise ValueError(f'condition_size must be a positive int or None, got {self.condition_size!r}')
    boxed = traverse_util.flatten_dict(_to_dict(self.param_shapes))
    flat = {path: nn.meta.unbox(leaf) for path, leaf in boxed.items()}
    generated, direct, direct_names = {}, {}, {}
    f_h, f_w, n_in, n_out = self.basic_shape
    for path, leaf in flat.items():
      shape = tuple(leaf.shape)
      if self.rule(path, shape):
        if len(shape) != 4 or shape[:2] != (f_h, f_w) or shape[2] % n_in or shape[3] % n_out:
          raise ValueError(
            f'leaf {"/".join(path)} with shape {shape} was selected but cannot be '
            f'tiled from basic kernels of shape {self.basic_shape}'
          )
        generated[path] = (shape[2] // n_in, shape[3] // n_out)
      else:
        direct[path] = jax.ShapeDtypeStruct(shape, leaf.dtype)
        # The main network's own logical axis names, if it gave any.
        names = getattr(boxed[path], 'names', None)
        direct_names[path] = tuple(names) if names is not None else (None,) * len(shape)
    object.__setattr__(self, '_generated', generated)  # path -> (tiles_in, tiles_out), in order
    object.__setattr__(self, '_direct', direct)  # path -> ShapeDtypeStruct
    object.__setattr__(self, '_direct_names', direct_names)
    object.__setattr__(self, '_order', list(flat))  # the main network's leaf order
    object.__setattr__(self, '_dtype', next(iter(flat.values())).dtype if flat else jnp.float32)

  # -- introspection ------------------------------------------------------------------------------
  @property
  def generated_paths(self) -> list[Path]:
    """Paths of the generated leaves (in flatten order)."""
    return list(self._generated)

  @property
  def num_tiles(self) -> int:
    return sum(a * b for a, b in self._generated.values())

  def tile_grid(self, path: Path) -> tuple[int, int]:
    return self._generated[tuple(path)]

  def logical_axes(self) -> dict[str, PyTree]:
    """Flax logical axis names of every hyper param (a tuple per leaf, same tree as `init`'s output):
    'nz' (N_z), 'hyper' (the generator's hidden units, N_in*d in w_in and d in w_out), 'kernel_out'
    (a basic kernel's N_out*f*f outputs); tile grids and C are unnamed; ordinary leaves keep the main
    network's names when its params were boxed, else are unnamed."""
    axes = {
      'generator': {
        'w_in': ('nz', 'hyper'),
        'b_in': ('hyper',),
        'w_out': ('hyper', 'kernel_out'),
        'b_out': ('kernel_out',),
      },
      'embeddings': traverse_util.unflatten_dict({path: (None, None, 'nz') for path in self._generated}),
      'direct': traverse_util.unflatten_dict(dict(self._direct_names)),
    }
    if self.condition_size is not None:
      axes['condition'] = traverse_util.unflatten_dict(
        {path: (None, None, None, 'nz') for path in self._generated}
      )
    return axes

  # -- pure functions -----------------------------------------------------------------------------
  def init(self, rng: jax.Array, main_params: PyTree | None = None) -> dict[str, PyTree]:
    """Hyper params. Ordinary leaves are copied from `main_params` (the main network's own init) when
    given, else get a default init (ones for 'scale', zeros for vectors, lecun normal otherwise).
    The conditioning weights W_c^j (if `condition_size`) start at zero."""
    k_gen, k_emb, k_dir = jax.random.split(rng, 3)
    generator = init_generator(k_gen, self.basic_shape, self.embedding_size, self.hidden_size, self._dtype)
    embeddings = {}
    emb_keys = jax.random.split(k_emb, max(len(self._generated), 1))
    for key, (path, (a, b)) in zip(emb_keys, self._generated.items()):
      embeddings[path] = (
        self.embedding_std
        * jax.random.truncated_normal(key, -2.0, 2.0, (a, b, self.embedding_size), self._dtype)
        / _TRUNC_STD
      )
    if main_params is not None:
      flat_main = traverse_util.flatten_dict(_to_dict(nn.meta.unbox(main_params)))
      direct = {path: flat_main[path] for path in self._direct}
    else:
      dir_keys = jax.random.split(k_dir, max(len(self._direct), 1))
      direct = {
        path: _default_leaf_init(k, path, s.shape, s.dtype)
        for k, (path, s) in zip(dir_keys, self._direct.items())
      }
    hyper_params = {
      'generator': generator,
      'embeddings': traverse_util.unflatten_dict(embeddings),
      'direct': traverse_util.unflatten_dict(direct),
    }
    if self.condition_size is not None:
      hyper_params['condition'] = traverse_util.unflatten_dict(
        {
          path: jnp.zeros((a, b, self.condition_size, self.embedding_size), self._dtype)
          for path, (a, b) in self._generated.items()
        }
      )
    return hyper_params

  def embeddings(
    self, hyper_params: Mapping[str, PyTree], condition: jax.Array | None = None
  ) -> dict[Path, jax.Array]:
    """The layer embeddings z^j(c) = z^j + W_c^j c: path -> [..., A, B, N_z] (leading dims: those of
    the condition and of the stored embeddings, broadcast)."""
    hyper_params = nn.meta.unbox(hyper_params)
    flat_emb = traverse_util.flatten_dict(_to_dict(hyper_params['embeddings']))
    if condition is not None:
      condition = self._check_condition(hyper_params, condition)
      flat_cond = traverse_util.flatten_dict(_to_dict(hyper_params['condition']))
    zs = {}
    for path, (a, b) in self._generated.items():
      z = flat_emb[path]
      if tuple(z.shape[-3:]) != (a, b, self.embedding_size):
        raise ValueError(
          f'embeddings of {"/".join(path)} have shape {tuple(z.shape)}; expected '
          f'[..., {a}, {b}, {self.embedding_size}] (tiles_in, tiles_out, N_z)'
        )
      z = _unshard_trailing(z, 3)
      if condition is not None:
        z = z + jnp.einsum('...c,abcz->...abz', condition, _unshard_trailing(flat_cond[path]))
      zs[path] = _unshard_trailing(z, 3)
    return zs

  def _check_condition(self, hyper_params, condition) -> jax.Array:
    if self.condition_size is None:
      raise ValueError(
        'this StaticHypernetwork has no conditioning path: build it with condition_size=C to pass a condition'
      )
    if 'condition' not in hyper_params:
      raise ValueError("hyper_params has no 'condition' entry: make them with this hypernetwork's init")
    condition = jnp.asarray(condition)
    if condition.ndim < 1 or condition.shape[-1] != self.condition_size:
      raise ValueError(
        f'condition has shape {condition.shape}; expected [..., {self.condition_size}] (condition_size last)'
      )
    return condition

  def generate(
    self, hyper_params: Mapping[str, PyTree], condition: jax.Array | None = None
  ) -> dict[Path, jax.Array]:
    """The generated leaves only: path -> kernel [..., f_h, f_w, A*n_in, B*n_out]. One generator call
    for all tiles (and all conditions)."""
    if not self._generated:
      return {}
    hyper_params = nn.meta.unbox(hyper_params)
    zs = self.embeddings(hyper_params, condition)
    batch = jnp.broadcast_shapes(*(z.shape[:-3] for z in zs.values()))
    zs = [
      jnp.broadcast_to(z, (*batch, *z.shape[-3:])).reshape(*batch, -1, self.embedding_size)
      for z in zs.values()
    ]
    kernels = generate_kernels(
      hyper_params['generator'], jnp.concatenate(zs, axis=-2), self.basic_shape
    )  # [..., T, f_h, f_w, n_in, n_out]
    sizes = [a * b for a, b in self._generated.values()]
    # split (whose transpose is one concatenate), not slices (whose transposes are pads to full size).
    chunks = jnp.split(kernels, list(np.cumsum(sizes)[:-1]), axis=len(batch))
    return {
      path: tile_kernels(chunk.reshape(*batch, a, b, *self.basic_shape))
      for chunk, (path, (a, b)) in zip(chunks, self._generated.items())
    }

  def apply(
    self, hyper_params: Mapping[str, PyTree], condition: jax.Array | None = None
  ) -> dict[str, PyTree]:
    """The main network's complete params (generated + ordinary leaves), same nesting as main.init.

    condition: None, or c [C] (one set of params), or c [..., C] (every leaf gets the leading dims:
    ordinary leaves are broadcast, sharded like the generated ones on an explicit mesh).
    """
    hyper_params = nn.meta.unbox(hyper_params)
    generated = self.generate(hyper_params, condition)
    if generated:
      first = next(iter(generated.values()))
      batch, batch_spec = first.shape[:-4], partitioning.leading_spec(first, first.ndim - 4)
    else:
      batch = () if condition is None else jnp.shape(condition)[:-1]
      batch_spec = None
    direct = traverse_util.flatten_dict(_to_dict(hyper_params['direct']))
    if batch:
      direct = {path: _broadcast_leading(leaf, batch, batch_spec) for path, leaf in direct.items()}
    return self.merge(traverse_util.unflatten_dict(direct), generated)

  def merge(self, direct: PyTree, generated: Mapping[Path, jax.Array]) -> dict[str, PyTree]:
    """The main network's params from the ordinary leaves and `generate`'s output, in main's order.
    Under `jax.vmap` over the generated leaves only (ordinary leaves closed over), per-example params
    need no broadcast copies of the ordinary leaves (what `Hypernetized` does)."""
    flat = dict(traverse_util.flatten_dict(_to_dict(nn.meta.unbox(direct))))
    flat.update(generated)
    return traverse_util.unflatten_dict({path: flat[path] for path in self._order})

  __call__ = apply


def _broadcast_leading(leaf: jax.Array, batch: tuple[int, ...], batch_spec) -> jax.Array:
  out = jnp.broadcast_to(leaf, (*batch, *jnp.shape(leaf)))
  if batch_spec is None or all(s is None for s in batch_spec):
    return out
  return jax.sharding.reshard(out, PartitionSpec(*batch_spec, *(None,) * jnp.ndim(leaf)))


def _to_dict(tree: PyTree) -> dict:
  """Flax FrozenDict -> dict (flatten_dict accepts both, but plain dicts keep tree structures equal)."""
  return unfreeze(tree) if isinstance(tree, FrozenDict) else tree


def _box(tree: PyTree, names: PyTree) -> PyTree:
  """Wrap every leaf of `tree` in nn.Partitioned with its logical axis names."""
  return jax.tree.map(lambda n, v: nn.Partitioned(v, n), names, tree, is_leaf=lambda n: isinstance(n, tuple))


# ------------------------------------------------------------------------------------------------------
# Flax wrapper with the trainer-facing contract.
# ------------------------------------------------------------------------------------------------------


class Hypernetized(nn.Module):
  """Any flax main network with some of its kernels generated by a static hypernetwork.

  `main` must take `(x, train=...)`. Variables:
    {'params': {'generator': ..., 'embeddings': ..., 'direct': <ordinary main leaves>,
                'condition': ... (only with condition_size)},
     'batch_stats': {'main_stats': <the main network's batch_stats>}}   (if the main network has any)
  Every hyper param is boxed with flax logical axis names (`StaticHypernetwork.logical_axes`;
  `nn.get_partition_spec(variables)` reads them, `nn.unbox` strips them).
  `model.init({'params': rng}, x, train=False)` and
  `model.apply(variables, x, train=True, mutable=['batch_stats'])` behave as for the main network; the
  generator runs once per call (per step), not per example. A 'dropout' rng, if given, is forwarded.

  Conditioning (`condition_size=C`, eq. 1 with z^j(c) = z^j + W_c^j c, see `StaticHypernetwork`):
  `model.apply(variables, x, condition=c)` with c [C] generates one set of kernels for the whole batch
  (e.g. a task embedding); c [B, C] generates kernels per example and runs the main network on each
  example with its own params (`jax.vmap` over (params, x)). Per-example conditioning of a main network
  with batch norm works in eval mode; in train mode it raises (the batch statistics would be per example).

  Attributes:
    main: the main network (an unbound flax module).
    rule: which leaves of main's params to generate, a predicate on (path, shape).
    basic_shape: (f_h, f_w, N_in, N_out) of a basic kernel.
    embedding_size: N_z.  hidden_size: d (default N_z).
    condition_size: C, the size of the conditioning input, or None (default: unconditioned).
  """

  main: nn.Module
  rule: Rule
  basic_shape: tuple[int, int, int, int]
  embedding_size: int
  hidden_size: int | None = None
  condition_size: int | None = None

  def hypernetwork(self, x_shape: Sequence[int], x_dtype=jnp.float32) -> StaticHypernetwork:
    """The pure-functional hypernetwork for inputs of this shape (shapes only, nothing is run)."""
    return self._hypernetwork_and_shapes(x_shape, x_dtype)[0]

  def _hypernetwork_and_shapes(self, x_shape, x_dtype):
    main = self._unbound_main()
    shapes = jax.eval_shape(
      lambda x: main.init({'params': jax.random.key(0)}, x, train=False),
      jax.ShapeDtypeStruct(tuple(x_shape), x_dtype),
    )
    hn = StaticHypernetwork(
      shapes['params'],
      self.rule,
      self.basic_shape,
      self.embedding_size,
      self.hidden_size,
      condition_size=self.condition_size,
    )
    return hn, shapes

  def _unbound_main(self) -> nn.Module:
    return self.main.clone(parent=None, _deep_clone=True)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, condition: jax.Array | None = None) -> jax.Array:
    main = self._unbound_main()
    hn, shapes = self._hypernetwork_and_shapes(x.shape, x.dtype)
    axes = hn.logical_axes()
    cache = {}  # init only: the main network's own init and the hyper params, computed once

    def main_init(rng):
      if 'main' not in cache:
        cache['main'] = nn.meta.unbox(_to_dict(main.init({'params': rng}, x, train=False)))
      return cache['main']

    def init_part(rng, name):
      if 'hyper' not in cache:
        k_main, k_hyper = jax.random.split(rng)
        cache['hyper'] = hn.init(k_hyper, main_init(k_main)['params'])
      return _box(cache['hyper'][name], axes[name])

    # One param per part so the tree reads {'generator', 'embeddings', 'direct'[, 'condition']}.
    names = ('generator', 'embeddings', 'direct') + (('condition',) if self.condition_size else ())
    hyper_params = {name: self.param(name, init_part, name) for name in names}

    per_example = condition is not None and jnp.ndim(condition) == 2
    if condition is not None and not (
      jnp.ndim(condition) == 1 or (per_example and condition.shape[0] == x.shape[0])
    ):
      raise ValueError(
        f'condition has shape {jnp.shape(condition)}; expected [C] (one for the batch) '
        f'or [batch={x.shape[0]}, C] (one per example)'
      )
    # The generator runs here, once per call (for all conditions).
    generated = hn.generate(hyper_params, condition)

    rng = self.make_rng('dropout') if (train and self.has_rng('dropout')) else None
    has_stats = bool(shapes.get('batch_stats'))
    stats = (
      self.variable('batch_stats', 'main_stats', lambda: main_init(self.make_rng('params'))['batch_stats'])
      if has_stats
      else None
    )
    if per_example:
      if has_stats and train:
        raise ValueError(
          'per-example conditioning (condition [batch, C]) of a main network with '
          'batch norm cannot run in train mode; pass one condition [C] for the batch'
        )
      extra = {'batch_stats': stats.value} if has_stats else {}

      def one(direct, extra, generated_i, xi, key):
        p = hn.merge(direct, generated_i)  # ordinary leaves shared, not copied per example
        rngs = {} if key is None else {'dropout': key}
        return main.apply({'params': p, **extra}, xi[None], train=train, rngs=rngs)[0]

      keys = None if rng is None else jax.random.split(rng, x.shape[0])
      per_example_apply = jax.vmap(one, in_axes=(None, None, 0, 0, 0))
      x_spec = partitioning.leading_spec(x, 1)
      if x_spec is not None:
        # Explicit axes: jax's batching rule for a conv with per-example kernels folds the batch
        # into feature groups, a reshape explicit sharding cannot type; run it on auto axes.
        per_example_apply = jax.sharding.auto_axes(per_example_apply, out_sharding=PartitionSpec(*x_spec))
      return per_example_apply(hyper_params['direct'], extra, generated, x, keys)

    params = hn.merge(hyper_params['direct'], generated)
    rngs = {} if rng is None else {'dropout': rng}
    if not has_stats:
      return main.apply({'params': params}, x, train=train, rngs=rngs)
    if train:
      y, updates = main.apply(
        {'params': params, 'batch_stats': stats.value}, x, train=True, rngs=rngs, mutable=['batch_stats']
      )
      if not self.is_initializing():
        stats.value = updates['batch_stats']
      return y
    return main.apply({'params': params, 'batch_stats': stats.value}, x, train=False, rngs=rngs)
