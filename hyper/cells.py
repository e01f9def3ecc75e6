"""Recurrent cells of the paper: LSTM, LN LSTM, the HyperLSTM (appendix A.2.2), the HyperRNN (eq. 4-8).

This module is the paper's equations, one line each. The same cells also have a fast form
(`hyper.cells_fast`: per-gate layout, rematerialisation, a custom JVP for eq. 8), chosen by one attribute,
`impl='fast'` (default) or `impl='reference'`; both use the same parameters (same names, same shapes) and
give the same values and gradients (`tests/test_cell_transforms.py`, float64).

Every cell is a `flax.linen.RNNCellBase`: `cell(carry, x) -> (carry, y)`,
`initialize_carry(rng, input_shape)`, `num_feature_axes == 1`. It also splits its step in two so that
sequence code can take the work that does not depend on the recurrence out of the time loop:

- `project_inputs(x)`: W_x x_t (and, for hypernetwork cells, the x-rows of the hyper network's input
  weights times x_t) for any leading axes, e.g. all [T, B] steps in one matmul;
- `step(carry, projected, deterministic=None, diagnostics=False) -> (carry, y, diagnostics dict)`.

`__call__(carry, x)` is `step(carry, project_inputs(x))`. Inputs are float vectors [..., D] or, when the
cell has `vocab_size`, integer token ids [...] standing for one-hot vectors (one-hot @ W_x is a row
gather: same parameter, no matmul). Any leading axes work, none included (a single example).

Gate order is (i, j, f, o) as in the reference code (j is the candidate, passed through tanh). Weight
matrices are stored [fan_in, 4 * units] with gate g in columns g*units:(g+1)*units, so "the rows of W" in
the paper's [out, in] convention are our columns. Big kernels carry Flax logical axis names ('embed' for a
fan-in axis, 'gates' for a main-units output axis, 'hyper' for a hyper-units axis, 'nz' for N_z): `init`
returns them as `nn.LogicallyPartitioned` boxes, which `apply` accepts boxed or `nn.meta.unbox`-ed. On a
mesh with Explicit axes the token gather, the split into gates and the new carry take their shardings from
`hyper.partitioning` (`take_rows`, `split_groups`, `like`); elsewhere those are the plain operations.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from hyper import cells_fast, partitioning

Array = jax.Array
Dtype = Any

LN_EPSILON = 1e-3  # the reference code's layer-norm epsilon ("found this works best")
NUM_GATES = 4
IMPLS = ('fast', 'reference')


# ----------------------------------------------------------------------------------------------------------
# Initialisers (appendix A.2.3).


def per_gate_orthogonal(num_gates: int = NUM_GATES, scale: float = 1.0):
  """Orthogonal init of each [fan_in, units] gate block of a [fan_in, num_gates * units] matrix.

  As the reference code's `lstm_ortho_initializer`: each gate's block is orthogonal on its own (not the
  whole [fan_in, 4 * units] matrix). Non-square blocks get orthonormal rows or columns.
  """
  ortho = nn.initializers.orthogonal(scale)

  def init(key, shape, dtype=jnp.float32):
    fan_in, total = shape[0], shape[-1]
    keys = jax.random.split(key, num_gates)
    blocks = [ortho(k, (fan_in, total // num_gates), jnp.float32) for k in keys]
    return jnp.concatenate(blocks, axis=-1).reshape(shape).astype(dtype)

  return init


Z_INITS = ('reference', 'random_embedding', 'random_projection')


def z_initializers(z_init: str, embedding_size: int):
  """(init of W_ĥh and W_ĥx, init of W_hz and W_xz) for `HyperLSTMCell.z_init`.

  'reference' (A.2.3, the author's code): W_ĥh = W_ĥx = 0 and W_hz = W_xz = 0.1 / N_z. Then the N_z
  coordinates of z_h (and of z_x) are exchangeable: they receive equal gradients at every step and stay
  equal, so d_h and d_x are driven by one number per gate whatever N_z is.
  'random_embedding': W_ĥh, W_ĥx ~ N(0, 0.01²), as the reference code's W_ĥb, so z_h = 1 + noise.
  'random_projection': W_hz, W_xz = 0.1 / N_z · (1 + N(0, 0.1²)), entry by entry.
  In all three, d_h = d_x = 0.1 at the start up to small noise and the generated bias starts at 0.
  """
  constant = nn.initializers.constant(0.1 / embedding_size)
  if z_init == 'reference':
    return nn.initializers.zeros, constant
  if z_init == 'random_embedding':
    return nn.initializers.normal(0.01), constant
  if z_init == 'random_projection':

    def noisy(key, shape, dtype=jnp.float32):
      noise = 0.1 * jax.random.normal(key, shape, jnp.float32)
      return ((0.1 / embedding_size) * (1.0 + noise)).astype(dtype)

    return nn.initializers.zeros, noisy
  raise ValueError(f'z_init must be one of {Z_INITS}, got {z_init!r}')


def _concat_init(first, first_columns: int, rest):
  """Init a [fan_in, n] matrix as columns [:first_columns] from `first`, the others from `rest`."""

  def init(key, shape, dtype=jnp.float32):
    k1, k2 = jax.random.split(key)
    a = first(k1, shape[:-1] + (first_columns,), dtype)
    b = rest(k2, shape[:-1] + (shape[-1] - first_columns,), dtype)
    return jnp.concatenate([a, b], axis=-1)

  return init


def _named(init, *names):
  """`init` whose parameter carries the logical axis names `names` (see the module docstring)."""
  return nn.with_logical_partitioning(init, names)


# ----------------------------------------------------------------------------------------------------------
# Small pure helpers.


def layer_norm(x: Array, scale: Array, bias: Array, epsilon: float = LN_EPSILON) -> Array:
  """Layer norm over the last axis, as the reference code: (x - mean) / sqrt(var + eps) * scale + bias."""
  mean = jnp.mean(x, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
  return (x - mean) / jnp.sqrt(var + epsilon) * scale + bias


def _up(x: Array) -> Array:
  """At least float32 (float64 stays float64): the gate arithmetic and the carry."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _dot(x: Array, kernel: Array, dtype: Dtype | None) -> Array:
  """x @ kernel computed in `dtype` (None: the promoted dtype), returned in at least float32."""
  if dtype is not None:
    x, kernel = x.astype(dtype), kernel.astype(dtype)
  else:
    x, kernel = nn.dtypes.promote_dtype(x, kernel)
  return _up(jnp.dot(x, kernel))


def _gates(x: Array, units: int) -> Array:
  """[..., 4 * units] -> [..., 4, units] (gates i, j, f, o); on an explicit mesh units keeps x's split."""
  assert x.shape[-1] == NUM_GATES * units, (x.shape, units)
  return partitioning.split_groups(x, NUM_GATES)


def _keep_sharding(new_carry, carry):
  """new_carry leaf by leaf in the sharding of carry on an explicit mesh (a scan's carry keeps one type:
  gates split over 'model' would otherwise split c_t too); unchanged otherwise."""
  leaves = [partitioning.like(n, o) for n, o in zip(jax.tree.leaves(new_carry), jax.tree.leaves(carry))]
  return jax.tree.unflatten(jax.tree.structure(new_carry), leaves)


def lstm_update(
  pre: Array,
  c: Array,
  forget_bias: float,
  candidate_mask: Array | None,
  ln_cell: tuple[Array, Array] | None,
) -> tuple[Array, Array, Array]:
  """The LSTM state update from gate pre-activations pre [..., 4, units]: (c_t, h_t, tanh(LN(c_t))).

  Recurrent dropout without memory loss (Semeniuta et al.) multiplies the candidate tanh(j) only.
  """
  i, j, f, o = pre[..., 0, :], pre[..., 1, :], pre[..., 2, :], pre[..., 3, :]
  candidate = jnp.tanh(j) if candidate_mask is None else jnp.tanh(j) * candidate_mask
  new_c = c * jax.nn.sigmoid(f + forget_bias) + jax.nn.sigmoid(i) * candidate
  tanh_c = jnp.tanh(layer_norm(new_c, *ln_cell) if ln_cell is not None else new_c)
  return new_c, tanh_c * jax.nn.sigmoid(o), tanh_c


def _scaled_weight_change(delta_scale: Array, kernel: Array, groups: int) -> Array:
  """Per group g, ||diag(δ_g) W_g||_F / ||W_g||_F, without building matrices.

  delta_scale [..., groups, units]: change δ of the row scalings d; kernel [fan_in, groups * units].
  Row j of diag(d) W_g is d_j W_g[j], so the change has squared norm sum_j δ_j^2 ||W_g[j]||^2.
  """
  sq_norms = partitioning.split_groups(jnp.sum(jnp.square(_up(kernel)), axis=0), groups)  # [groups, units]
  change = jnp.sqrt(jnp.einsum('...gh,gh->...g', jnp.square(delta_scale), sq_norms))
  return change / jnp.sqrt(jnp.sum(sq_norms, axis=-1))


class InputProjection(nn.Module):
  """x @ W for float x [..., D], or W[ids] (one-hot @ W as a gather) for integer ids with `vocab_size`.

  Attributes:
    features: output size (columns of W).
    vocab_size: rows of W for integer inputs; None: float inputs only.
    kernel_init: initialiser of W.
    axis_names: logical axis names of W [fan_in, features].
    dtype, param_dtype: computation and parameter dtypes.
  """

  features: int
  vocab_size: int | None = None
  kernel_init: Any = per_gate_orthogonal()
  axis_names: tuple[str | None, str | None] = ('embed', 'gates')
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, per_gate: bool = False):
    """x W [..., features]; `per_gate`: the 4 gates' column blocks as a tuple (the fast form's layout)."""
    integer = jnp.issubdtype(x.dtype, jnp.integer)
    if integer and self.vocab_size is None:
      raise ValueError("integer inputs need the cell's vocab_size (they stand for one-hot vectors)")
    fan_in = self.vocab_size if integer else x.shape[-1]
    kernel = self.param(
      'kernel', _named(self.kernel_init, *self.axis_names), (fan_in, self.features), self.param_dtype
    )
    if per_gate:
      return cells_fast.project_per_gate(x, kernel, self.dtype)
    return _up(partitioning.take_rows(kernel, x)) if integer else _dot(x, kernel, self.dtype)


class _CellBase(nn.RNNCellBase):
  """Shared plumbing: `impl` check, strict dropout masks, `__call__` = step(project_inputs(x))."""

  def _check_impl(self):
    impl = getattr(self, 'impl', 'reference')
    if impl not in IMPLS:
      raise ValueError(f'impl must be one of {IMPLS}, got {impl!r}')

  def _dropout_mask(self, rate: float, shape, deterministic: bool | None) -> Array | None:
    """A new inverted-dropout keep mask (1 / keep or 0), or None when there is no dropout.

    Like `flax.linen.Dropout`, a rate > 0 needs `deterministic` (call argument, else attribute) and,
    when not deterministic, a 'dropout' rng: missing either is an error, not a silent no-op.
    """
    if rate <= 0.0:
      return None
    det = deterministic if deterministic is not None else self.deterministic  # the call's wins
    if det is None:
      raise ValueError(
        f'{type(self).__name__} has recurrent dropout {rate}: pass deterministic=True '
        "or False to the call (or set the cell's `deterministic` attribute)"
      )
    if det:
      return None
    if not self.has_rng('dropout'):
      raise ValueError(
        f'{type(self).__name__} has recurrent dropout {rate} and deterministic=False '
        "but no 'dropout' rng: call apply(..., rngs={'dropout': key}) (or pass "
        'deterministic=True)'
      )
    keep = 1.0 - rate
    return jax.random.bernoulli(self.make_rng('dropout'), keep, shape).astype(jnp.float32) / keep

  def __call__(self, carry, inputs: Array, deterministic: bool | None = None):
    new_carry, out, diag = self.step(
      carry, self.project_inputs(inputs), deterministic, diagnostics=self.diagnostics
    )
    for name, value in diag.items():
      self.sow('diagnostics', name, value)
    return new_carry, out

  @property
  def num_feature_axes(self) -> int:
    return 1


# ----------------------------------------------------------------------------------------------------------
# Baselines.


class LSTMCell(_CellBase):
  """LSTM with per-gate orthogonal init, a constant forget bias and recurrent dropout without memory loss.

      i, j, f, o = W_x x_t + W_h h_{t-1} + b
      c_t = c_{t-1} σ(f + forget_bias) + σ(i) drop(tanh j),   h_t = tanh(c_t) σ(o)

  b starts at 0 (the forget bias is a constant, as in the reference code). carry = (c, h), each
  [..., features].

  Attributes:
    features: units H.
    forget_bias: constant added to the forget gate's pre-activation.
    recurrent_dropout: rate of dropout on the candidate tanh(j), a new mask every step.
    vocab_size: when set, inputs are integer ids standing for one-hot vectors over `vocab_size` symbols.
    deterministic: no dropout when True; may instead be passed to the call. With recurrent_dropout > 0
      one of the two must be given, and deterministic=False needs a 'dropout' rng (errors otherwise).
      Inside `flax.linen.RNN` (which calls the cell without `deterministic`) set it here and give the RNN
      `split_rngs={'params': False, 'dropout': True}` (without it the cell sees no 'dropout' rng).
    diagnostics: `__call__` sows the per-step diagnostics (`weight_change`, `weight_change_x`, zero for
      a fixed-weight cell, and `tanh_c`) into the 'diagnostics' collection; off by default (no cost).
      Inside `flax.linen.RNN` add `variable_axes={'diagnostics': 1}` and `mutable=['diagnostics']`.
    impl: 'fast' (default, `hyper.cells_fast`) or 'reference' (the equations below); same parameters.
    dtype, param_dtype: matmul dtype (None: promoted; the gate arithmetic and carry stay float32) and
      parameter dtype.
  """

  features: int
  forget_bias: float = 1.0
  recurrent_dropout: float = 0.0
  vocab_size: int | None = None
  deterministic: bool | None = None
  diagnostics: bool = False
  impl: str = 'fast'
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  layer_norm = False  # class constant; LayerNormLSTMCell sets it

  def setup(self):
    self._check_impl()
    h, pd = self.features, self.param_dtype
    self.input_proj = InputProjection(
      NUM_GATES * h, self.vocab_size, per_gate_orthogonal(), ('embed', 'gates'), self.dtype, pd
    )  # W_x
    self.recurrent_kernel = self.param(  # W_h
      'recurrent_kernel', _named(per_gate_orthogonal(), 'embed', 'gates'), (h, NUM_GATES * h), pd
    )
    if self.layer_norm:
      # LN's own bias replaces b (as in the reference LayerNormLSTMCell; Table 4's 14.82M needs this).
      self.ln_gates_scale = self.param('ln_gates_scale', nn.initializers.ones, (NUM_GATES, h), pd)
      self.ln_gates_bias = self.param('ln_gates_bias', nn.initializers.zeros, (NUM_GATES, h), pd)
      self.ln_cell_scale = self.param('ln_cell_scale', nn.initializers.ones, (h,), pd)
      self.ln_cell_bias = self.param('ln_cell_bias', nn.initializers.zeros, (h,), pd)
    else:
      self.bias = self.param('bias', nn.initializers.zeros, (NUM_GATES * h,), pd)  # b

  def project_inputs(self, x: Array) -> Array:
    """W_x x [..., 4 * features]."""
    return self.input_proj(x)

  def _equations(self, carry, W_x_x: Array, mask: Array | None):
    c, h = carry
    a = _gates(W_x_x + _dot(h, self.recurrent_kernel, self.dtype), self.features)  # [..., 4, H]
    if self.layer_norm:
      a = layer_norm(a, _up(self.ln_gates_scale), _up(self.ln_gates_bias))
      ln_cell = (_up(self.ln_cell_scale), _up(self.ln_cell_bias))
    else:
      a = a + _gates(_up(self.bias), self.features)
      ln_cell = None
    new_c, new_h, tanh_c = lstm_update(a, _up(c), self.forget_bias, mask, ln_cell)
    return (new_c, new_h), tanh_c

  def step(self, carry, projected: Array, deterministic: bool | None = None, diagnostics: bool = False):
    """One step from W_x x_t (`project_inputs`): (new carry, h_t, diagnostics: {} unless asked)."""
    mask = self._dropout_mask(self.recurrent_dropout, carry[0].shape, deterministic)
    if self.impl == 'fast':
      new_carry, tanh_c = cells_fast.lstm_step(self, carry, projected, mask, LN_EPSILON)
    else:
      new_carry, tanh_c = self._equations(carry, projected, mask)
    new_carry = _keep_sharding(new_carry, carry)
    new_h = new_carry[1]
    out = new_h if self.dtype is None else new_h.astype(self.dtype)
    diag = {}
    if diagnostics:
      zeros = jnp.zeros(new_h.shape[:-1] + (NUM_GATES,), jnp.float32)  # fixed weights never change
      diag = {'weight_change': zeros, 'weight_change_x': zeros, 'tanh_c': tanh_c}
    return new_carry, out, diag

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    return zero_carry('lstm', _batch_shape(input_shape, self.vocab_size), self.features)


class LayerNormLSTMCell(LSTMCell):
  """LSTM with layer norm (eps 1e-3) on each gate's pre-activation and on c_t before tanh (Ba et al.).

      i, j, f, o = LN(W_x x_t + W_h h_{t-1})   (each gate its own LN gain and bias)
      c_t = c_{t-1} σ(f + forget_bias) + σ(i) drop(tanh j),   h_t = tanh(LN(c_t)) σ(o)

  As the reference code, no separate gate bias b: each gate's LN bias plays its role. Attributes as
  `LSTMCell`.
  """

  layer_norm = True


# ----------------------------------------------------------------------------------------------------------
# HyperLSTM (appendix A.2.2, weight-scaling form eq. 8).


class HyperLSTMCell(_CellBase):
  """HyperLSTM cell (appendix A.2.2) in the memory-efficient weight-scaling form (eq. 8).

  A small hyper LSTM (`hyper_features` units; a layer-norm LSTM when `layer_norm`) reads
  x̂_t = [x_t; h_{t-1}]. For each gate y in (i, j, f, o), from the hyper output ĥ:

      ĉ_t, ĥ_t = LSTM(W_x̂ x̂_t + W_ĥ ĥ_{t-1} + b̂)                                   (hyper LSTM)
      z_h^y = W_ĥh^y ĥ + b_ĥh^y,   z_x^y = W_ĥx^y ĥ + b_ĥx^y,   z_b^y = W_ĥb^y ĥ       (N_z each)
      d_h^y = W_hz^y z_h^y,        d_x^y = W_xz^y z_x^y,        b^y = W_bz^y z_b^y + b_0^y
      y = LN(d_h^y ⊙ W_h^y h_{t-1} + d_x^y ⊙ W_x^y x_t + b^y)      (eq. 8; LN only when layer_norm)
      c_t = c_{t-1} σ(f + forget_bias) + σ(i) drop(tanh j),   h_t = tanh(LN(c_t)) σ(o)

  Which ĥ drives the projections (`hyper_output`): the paper (eq. 5, A.2.2) writes ĥ_{t-1}; the author's
  reference code (hardmaru's supercell.py) uses the freshly computed ĥ_t, so h_t's weights already depend
  on x_t. Default 'current' (ĥ_t); 'previous' is the paper's text.

  Parameters (the paper's symbol -> name): W_x -> input_proj/kernel [D, 4H]; W_h -> recurrent_kernel
  [:, :4H]; b_0 -> bias; W_x̂ -> hyper_input_proj/kernel (x rows) and recurrent_kernel[:, 4H:] (h rows:
  everything multiplying h_{t-1} is one matrix, so one matmul serves both); W_ĥ -> hyper_recurrent_kernel;
  b̂ -> hyper_bias (no LN) or the hyper LN biases; W_ĥh, b_ĥh, W_ĥx, b_ĥx, W_ĥb -> z_h_kernel, z_h_bias,
  z_x_kernel, z_x_bias, z_b_kernel [Ĥ, 4, N_z]; W_hz, W_xz, W_bz -> scale_h, scale_x, bias_projection
  [4, N_z, H].

  Initialisation (A.2.3 / reference code): W_x, W_h and the hyper LSTM's weights orthogonal per gate
  block (x, h and ĥ each their own block); b_0 = 0; W_ĥh, W_ĥx = 0 with biases 1; W_ĥb ~ N(0, 0.01²),
  no bias; W_hz, W_xz = 0.1 / N_z (so d = 0.1 at init); W_bz = 0. With `z_init='reference'` the N_z
  coordinates of z_h (and z_x) are exchangeable and stay equal under gradient descent; `z_init` offers
  symmetry-breaking alternatives (`z_initializers`).

  Bias / layer-norm rule (fixed by the paper's parameter counts): b_0 is kept even with layer norm (Table
  3's 14.41M two-layer LN HyperLSTM needs it), while the hyper LSTM, a layer-norm LSTM when `layer_norm`,
  then has no gate bias of its own. LN epsilon is 1e-3.

  carry = ((c, h), (ĉ, ĥ)). Diagnostics (`step(..., diagnostics=True)`, or sown by `__call__` when the
  `diagnostics` attribute is set): `weight_change` [..., 4], per gate ||W_h(ĥ_t) - W_h(ĥ_{t-1})||_F /
  ||W_h||_F with W_h(ĥ) = diag(d_h(ĥ)) W_h (with hyper_output='previous', the change from the matrix used
  at t to the one used at t+1); `weight_change_x` the same for W_x; `tanh_c` [..., H].

  Attributes:
    features: main units H.
    hyper_features: hyper units Ĥ.
    embedding_size: N_z.
    layer_norm: layer norm in the main and the hyper LSTM.
    recurrent_dropout: candidate dropout of the main LSTM (see `LSTMCell.deterministic`).
    hyper_recurrent_dropout: the same for the hyper LSTM (off in the paper).
    forget_bias: constant forget-gate bias of both LSTMs.
    hyper_output: 'current' (ĥ_t, reference code) or 'previous' (ĥ_{t-1}, the paper's text).
    vocab_size: integer-id inputs standing for one-hot vectors over `vocab_size` symbols.
    deterministic, diagnostics: as `LSTMCell`.
    impl: 'fast' (default, `hyper.cells_fast`) or 'reference' (the equations above); same parameters,
      same values and gradients. Both work under every JAX transform, forward mode included (the fast
      form's eq. 8 has a custom JVP rather than a custom VJP, see `cells_fast.modulated_gate`).
    remat: fast form only: recompute the gate update in the backward pass instead of storing it (same
      values and gradients, less memory traffic; default True, see benchmarks/README.md).
    z_init: 'reference' | 'random_embedding' | 'random_projection' (`z_initializers`).
    dtype, param_dtype: as `LSTMCell`.
  """

  features: int
  hyper_features: int = 128
  embedding_size: int = 4
  layer_norm: bool = True
  recurrent_dropout: float = 0.0
  hyper_recurrent_dropout: float = 0.0
  forget_bias: float = 1.0
  hyper_output: str = 'current'
  vocab_size: int | None = None
  deterministic: bool | None = None
  diagnostics: bool = False
  impl: str = 'fast'
  remat: bool = True
  z_init: str = 'reference'
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  def setup(self):
    self._check_impl()
    if self.hyper_output not in ('current', 'previous'):
      raise ValueError(f"hyper_output must be 'current' or 'previous', got {self.hyper_output!r}")
    if self.z_init not in Z_INITS:
      raise ValueError(f'z_init must be one of {Z_INITS}, got {self.z_init!r}')
    H, Hh, nz, pd = self.features, self.hyper_features, self.embedding_size, self.param_dtype
    ortho = per_gate_orthogonal()
    ones, zeros = nn.initializers.ones, nn.initializers.zeros
    # Main LSTM.
    self.input_proj = InputProjection(
      NUM_GATES * H, self.vocab_size, ortho, ('embed', 'gates'), self.dtype, pd
    )  # W_x
    self.recurrent_kernel = self.param(  # [W_h | h-rows of W_x̂]
      'recurrent_kernel',
      _named(_concat_init(ortho, NUM_GATES * H, ortho), 'embed', 'gates'),
      (H, NUM_GATES * (H + Hh)),
      pd,
    )
    self.bias = self.param('bias', zeros, (NUM_GATES * H,), pd)  # b_0
    # Hyper LSTM.
    self.hyper_input_proj = InputProjection(
      NUM_GATES * Hh, self.vocab_size, ortho, ('embed', 'hyper'), self.dtype, pd
    )  # x-rows of W_x̂
    self.hyper_recurrent_kernel = self.param(
      'hyper_recurrent_kernel', _named(ortho, 'hyper', None), (Hh, NUM_GATES * Hh), pd
    )  # W_ĥ
    if self.layer_norm:
      self.ln_gates_scale = self.param('ln_gates_scale', ones, (NUM_GATES, H), pd)
      self.ln_gates_bias = self.param('ln_gates_bias', zeros, (NUM_GATES, H), pd)
      self.ln_cell_scale = self.param('ln_cell_scale', ones, (H,), pd)
      self.ln_cell_bias = self.param('ln_cell_bias', zeros, (H,), pd)
      self.hyper_ln_gates_scale = self.param('hyper_ln_gates_scale', ones, (NUM_GATES, Hh), pd)
      self.hyper_ln_gates_bias = self.param('hyper_ln_gates_bias', zeros, (NUM_GATES, Hh), pd)
      self.hyper_ln_cell_scale = self.param('hyper_ln_cell_scale', ones, (Hh,), pd)
      self.hyper_ln_cell_bias = self.param('hyper_ln_cell_bias', zeros, (Hh,), pd)
    else:
      self.hyper_bias = self.param('hyper_bias', zeros, (NUM_GATES * Hh,), pd)  # b̂
    # ĥ -> z (eq. 5), per gate.
    embed_init, scale_init = z_initializers(self.z_init, nz)
    z_names = ('hyper', None, 'nz')
    self.z_h_kernel = self.param('z_h_kernel', _named(embed_init, *z_names), (Hh, NUM_GATES, nz), pd)
    self.z_h_bias = self.param('z_h_bias', ones, (NUM_GATES, nz), pd)
    self.z_x_kernel = self.param('z_x_kernel', _named(embed_init, *z_names), (Hh, NUM_GATES, nz), pd)
    self.z_x_bias = self.param('z_x_bias', ones, (NUM_GATES, nz), pd)
    self.z_b_kernel = self.param(
      'z_b_kernel', _named(nn.initializers.normal(0.01), *z_names), (Hh, NUM_GATES, nz), pd
    )
    # z -> d_h, d_x, b (eq. 7-8), per gate.
    d_names = (None, 'nz', 'gates')
    self.scale_h = self.param('scale_h', _named(scale_init, *d_names), (NUM_GATES, nz, H), pd)  # W_hz
    self.scale_x = self.param('scale_x', _named(scale_init, *d_names), (NUM_GATES, nz, H), pd)  # W_xz
    self.bias_projection = self.param(
      'bias_projection', _named(zeros, *d_names), (NUM_GATES, nz, H), pd
    )  # W_bz

  def project_inputs(self, x: Array):
    """(W_x x_t [..., 4H], x-rows of W_x̂ times x_t [..., 4Ĥ]); the fast form gives each as 4 gates."""
    if self.impl == 'fast':
      return cells_fast.hyperlstm_project_inputs(self, x)
    return self.input_proj(x), self.hyper_input_proj(x)

  def _hyper_lstm(self, carry, W_xhat_x: Array, mask: Array | None):
    """The hyper LSTM on x̂_t = [x_t; h_{t-1}]: (ĉ_t, ĥ_t)."""
    (_, h), (c_hat, h_hat) = carry
    H, Hh = self.features, self.hyper_features
    W_xhat_h = self.recurrent_kernel[:, NUM_GATES * H :]
    a = _gates(
      W_xhat_x + _dot(h, W_xhat_h, self.dtype) + _dot(h_hat, self.hyper_recurrent_kernel, self.dtype), Hh
    )
    if self.layer_norm:
      a = layer_norm(a, _up(self.hyper_ln_gates_scale), _up(self.hyper_ln_gates_bias))
      ln_cell = (_up(self.hyper_ln_cell_scale), _up(self.hyper_ln_cell_bias))
    else:
      a = a + _gates(_up(self.hyper_bias), Hh)
      ln_cell = None
    new_c_hat, new_h_hat, _ = lstm_update(a, _up(c_hat), self.forget_bias, mask, ln_cell)
    return new_c_hat, new_h_hat

  def _weights(self, h_hat: Array) -> tuple[Array, Array, Array]:
    """ĥ [..., Ĥ] -> (d_h, d_x, b), each [..., 4, H]: eq. 5 and 7 for every gate."""
    z_h = jnp.einsum('...k,kgn->...gn', h_hat, _up(self.z_h_kernel)) + _up(self.z_h_bias)
    z_x = jnp.einsum('...k,kgn->...gn', h_hat, _up(self.z_x_kernel)) + _up(self.z_x_bias)
    z_b = jnp.einsum('...k,kgn->...gn', h_hat, _up(self.z_b_kernel))
    d_h = jnp.einsum('...gn,gnu->...gu', z_h, _up(self.scale_h))
    d_x = jnp.einsum('...gn,gnu->...gu', z_x, _up(self.scale_x))
    b = jnp.einsum('...gn,gnu->...gu', z_b, _up(self.bias_projection)) + _gates(_up(self.bias), self.features)
    return d_h, d_x, b

  def _equations(self, carry, projected, hyper_mask: Array | None, mask: Array | None):
    (c, h), (_, h_hat) = carry
    W_x_x, W_xhat_x = projected
    H = self.features
    new_c_hat, new_h_hat = self._hyper_lstm(carry, W_xhat_x, hyper_mask)
    d_h, d_x, b = self._weights(new_h_hat if self.hyper_output == 'current' else _up(h_hat))
    W_h_h = _dot(h, self.recurrent_kernel[:, : NUM_GATES * H], self.dtype)
    a = d_h * _gates(W_h_h, H) + d_x * _gates(W_x_x, H) + b  # eq. 8, [..., 4, H]
    if self.layer_norm:
      a = layer_norm(a, _up(self.ln_gates_scale), _up(self.ln_gates_bias))
      ln_cell = (_up(self.ln_cell_scale), _up(self.ln_cell_bias))
    else:
      ln_cell = None
    new_c, new_h, tanh_c = lstm_update(a, _up(c), self.forget_bias, mask, ln_cell)
    return ((new_c, new_h), (new_c_hat, new_h_hat)), tanh_c

  def step(self, carry, projected, deterministic: bool | None = None, diagnostics: bool = False):
    """One step from `project_inputs(x_t)`: (new carry, h_t, diagnostics dict, empty unless asked)."""
    (c, _), (c_hat, h_hat) = carry
    hyper_mask = self._dropout_mask(self.hyper_recurrent_dropout, c_hat.shape, deterministic)
    mask = self._dropout_mask(self.recurrent_dropout, c.shape, deterministic)
    if self.impl == 'fast':
      new_carry, tanh_c = cells_fast.hyperlstm_step(self, carry, projected, hyper_mask, mask, LN_EPSILON)
    else:
      new_carry, tanh_c = self._equations(carry, projected, hyper_mask, mask)
    new_carry = _keep_sharding(new_carry, carry)
    new_h = new_carry[0][1]
    out = new_h if self.dtype is None else new_h.astype(self.dtype)
    diag = {}
    if diagnostics:
      # Change between the matrices generated from ĥ_t and from ĥ_{t-1}.
      d_h_new, d_x_new, _ = self._weights(new_carry[1][1])
      d_h_old, d_x_old, _ = self._weights(_up(h_hat))
      W_x = self.input_proj.variables['params']['kernel']
      W_h = self.recurrent_kernel[:, : NUM_GATES * self.features]
      diag = {
        'weight_change': _scaled_weight_change(d_h_new - d_h_old, W_h, NUM_GATES),
        'weight_change_x': _scaled_weight_change(d_x_new - d_x_old, nn.meta.unbox(W_x), NUM_GATES),
        'tanh_c': tanh_c,
      }
    return new_carry, out, diag

  def generated(self, carry, projected, deterministic: bool | None = None) -> dict[str, Array]:
    """The d_h, d_x, b [..., 4, H] this step would use (for tests and analysis), from `project_inputs`."""
    (_, _), (_, h_hat) = carry
    if self.impl == 'fast':  # the fast form hands over per-gate tuples
      projected = tuple(jnp.concatenate(p, axis=-1) for p in projected)
    hyper_mask = self._dropout_mask(self.hyper_recurrent_dropout, h_hat.shape, deterministic)
    _, new_h_hat = self._hyper_lstm(carry, projected[1], hyper_mask)
    d_h, d_x, b = self._weights(new_h_hat if self.hyper_output == 'current' else _up(h_hat))
    return {'scale_h': d_h, 'scale_x': d_x, 'bias': b}

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    return zero_carry(
      'hyperlstm', _batch_shape(input_shape, self.vocab_size), self.features, self.hyper_features
    )


# ----------------------------------------------------------------------------------------------------------
# Basic HyperRNN (section 3.2, eq. 4-8).


class HyperRNNCell(_CellBase):
  """Basic HyperRNN (eq. 4-7), with tanh main and hyper RNNs.

      ĥ_t = tanh(W_ĥ ĥ_{t-1} + W_x̂ [h_{t-1}; x_t] + b̂)                                     (4)
      z_h = W_ĥh ĥ + b_ĥh,  z_x = W_ĥx ĥ + b_ĥx,  z_b = W_ĥb ĥ                              (5)
      h_t = tanh(W_h(z_h) h_{t-1} + W_x(z_x) x_t + b(z_b)),  b(z_b) = W_bz z_b + b_0          (6, 7)

  `weights='scaled'` (default) is the memory-efficient eq. 8: W_h(z_h) = diag(W_hz z_h) W_h;
  `weights='full'` the general eq. 6-7: W_h(z_h) = <W_hz, z_h> with W_hz a [N_z, units, units] tensor
  (N_z times the LSTM's memory; for completeness). ĥ is ĥ_t or ĥ_{t-1} per `hyper_output` (see
  `HyperLSTMCell`). Init as A.2.3 (scaled form: d = 0.1 at init); in the full form each slice W_hz[n]
  is an independent orthogonal matrix times 0.1 / sqrt(N_z), so that W_h(z_0) has the Frobenius norm of
  0.1 W_h. carry = (h, ĥ). Diagnostics: `weight_change` [..., 1] as in `HyperLSTMCell` (full form:
  ||W_h(z_h(ĥ_t)) - W_h(z_h(ĥ_{t-1}))||_F / ||W_h(z_h(ĥ_t))||_F, from the Gram matrix of the slices) and
  `tanh_c` (= h_t).

  Parameters: W_x -> input_proj/kernel; W_h -> recurrent_kernel (full form: [fan_in, N_z * H], column
  block n is the slice W_{·z}[n]); W_x̂ -> hyper_input_proj/kernel (x rows), hyper_main_kernel (h rows);
  W_ĥ -> hyper_recurrent_kernel; W_hz, W_xz, W_bz -> scale_h, scale_x, bias_projection [N_z, H].

  Attributes:
    features, hyper_features, embedding_size: H, Ĥ, N_z.
    weights: 'scaled' (eq. 8) or 'full' (eq. 6-7).
    hyper_output, vocab_size, diagnostics, dtype, param_dtype: as `HyperLSTMCell`.
    deterministic: accepted for the common cell interface (this cell has no dropout).

  One form only: this cell has no performance machinery to keep apart.
  """

  features: int
  hyper_features: int = 128
  embedding_size: int = 4
  weights: str = 'scaled'
  hyper_output: str = 'current'
  vocab_size: int | None = None
  deterministic: bool | None = None
  diagnostics: bool = False
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  def setup(self):
    H, Hh, nz, pd = self.features, self.hyper_features, self.embedding_size, self.param_dtype
    if self.weights not in ('scaled', 'full'):
      raise ValueError(f"weights must be 'scaled' or 'full', got {self.weights!r}")
    if self.hyper_output not in ('current', 'previous'):
      raise ValueError(f"hyper_output must be 'current' or 'previous', got {self.hyper_output!r}")
    if self.weights == 'scaled':
      ortho = nn.initializers.orthogonal()
      self.input_proj = InputProjection(H, self.vocab_size, ortho, ('embed', 'gates'), self.dtype, pd)
      self.recurrent_kernel = self.param('recurrent_kernel', _named(ortho, 'embed', 'gates'), (H, H), pd)
      scale_init = _named(nn.initializers.constant(0.1 / nz), 'nz', 'gates')
      self.scale_h = self.param('scale_h', scale_init, (nz, H), pd)
      self.scale_x = self.param('scale_x', scale_init, (nz, H), pd)
    else:
      full = per_gate_orthogonal(nz, 0.1 / np.sqrt(nz))
      self.input_proj = InputProjection(nz * H, self.vocab_size, full, ('embed', 'gates'), self.dtype, pd)
      self.recurrent_kernel = self.param('recurrent_kernel', _named(full, 'embed', 'gates'), (H, nz * H), pd)
    self.bias = self.param('bias', nn.initializers.zeros, (H,), pd)  # b_0
    hyper_init = nn.initializers.orthogonal()
    self.hyper_input_proj = InputProjection(
      Hh, self.vocab_size, hyper_init, ('embed', 'hyper'), self.dtype, pd
    )
    self.hyper_main_kernel = self.param(
      'hyper_main_kernel', _named(hyper_init, 'embed', 'hyper'), (H, Hh), pd
    )
    self.hyper_recurrent_kernel = self.param(
      'hyper_recurrent_kernel', _named(hyper_init, 'hyper', None), (Hh, Hh), pd
    )
    self.hyper_bias = self.param('hyper_bias', nn.initializers.zeros, (Hh,), pd)
    z_init = lambda init: _named(init, 'hyper', 'nz')  # noqa: E731
    self.z_h_kernel = self.param('z_h_kernel', z_init(nn.initializers.zeros), (Hh, nz), pd)
    self.z_h_bias = self.param('z_h_bias', nn.initializers.ones, (nz,), pd)
    self.z_x_kernel = self.param('z_x_kernel', z_init(nn.initializers.zeros), (Hh, nz), pd)
    self.z_x_bias = self.param('z_x_bias', nn.initializers.ones, (nz,), pd)
    self.z_b_kernel = self.param('z_b_kernel', z_init(nn.initializers.normal(0.01)), (Hh, nz), pd)
    self.bias_projection = self.param(
      'bias_projection', _named(nn.initializers.zeros, 'nz', 'gates'), (nz, H), pd
    )  # W_bz

  def project_inputs(self, x: Array) -> tuple[Array, Array]:
    """(W_x x_t, the x-rows of W_x̂ times x_t)."""
    return self.input_proj(x), self.hyper_input_proj(x)

  def _z(self, h_hat: Array) -> tuple[Array, Array, Array]:
    """Eq. 5: ĥ -> (z_h, z_x, z_b), each [..., N_z]."""
    z_h = _dot(h_hat, self.z_h_kernel, self.dtype) + _up(self.z_h_bias)
    z_x = _dot(h_hat, self.z_x_kernel, self.dtype) + _up(self.z_x_bias)
    z_b = _dot(h_hat, self.z_b_kernel, self.dtype)
    return z_h, z_x, z_b

  def step(self, carry, projected, deterministic: bool | None = None, diagnostics: bool = False):
    """One step from `project_inputs(x_t)`: (new carry, h_t, diagnostics dict, empty unless asked)."""
    h, h_hat = carry
    W_x_x, W_xhat_x = projected
    nz = self.embedding_size
    new_h_hat = jnp.tanh(
      W_xhat_x
      + _dot(h, self.hyper_main_kernel, self.dtype)  # eq. 4
      + _dot(h_hat, self.hyper_recurrent_kernel, self.dtype)
      + _up(self.hyper_bias)
    )
    z_h, z_x, z_b = self._z(new_h_hat if self.hyper_output == 'current' else _up(h_hat))
    W_h_h = _dot(h, self.recurrent_kernel, self.dtype)
    if self.weights == 'scaled':  # eq. 8
      a = (z_h @ _up(self.scale_h)) * W_h_h + (z_x @ _up(self.scale_x)) * W_x_x
    else:  # eq. 6: sum_n z_n W_hz[n] h, column block n of the kernel being W_hz[n]
      split = partitioning.split_groups
      a = jnp.einsum('...n,...nh->...h', z_h, split(W_h_h, nz)) + jnp.einsum(
        '...n,...nh->...h', z_x, split(W_x_x, nz)
      )
    new_h = jnp.tanh(a + z_b @ _up(self.bias_projection) + _up(self.bias))  # eq. 6-7
    new_h, new_h_hat = _keep_sharding((new_h, new_h_hat), carry)
    out = new_h if self.dtype is None else new_h.astype(self.dtype)
    diag = {}
    if diagnostics:
      zh_new, _, _ = self._z(new_h_hat)
      zh_old, _, _ = self._z(_up(h_hat))
      if self.weights == 'scaled':
        delta = (zh_new - zh_old) @ _up(self.scale_h)
        change = _scaled_weight_change(delta[..., None, :], self.recurrent_kernel, 1)
      else:
        w = partitioning.split_groups(_up(self.recurrent_kernel), nz)  # [H, nz, H]
        gram = jnp.einsum('inj,imj->nm', w, w)  # <W_hz[n], W_hz[m]>_F
        dz = zh_new - zh_old
        change = jnp.sqrt(
          jnp.einsum('...n,nm,...m->...', dz, gram, dz)
          / jnp.einsum('...n,nm,...m->...', zh_new, gram, zh_new)
        )[..., None]
      diag = {'weight_change': change, 'tanh_c': new_h}
    return (new_h, new_h_hat), out, diag

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    return zero_carry(
      'hyperrnn', _batch_shape(input_shape, self.vocab_size), self.features, self.hyper_features
    )


# ----------------------------------------------------------------------------------------------------------
# Carries.


def _batch_shape(input_shape, vocab_size) -> tuple[int, ...]:
  # Token ids have no feature axis: an id input of shape [B] (or [] for one example) is all batch.
  if vocab_size is not None and len(input_shape) <= 1:
    return tuple(input_shape)
  return tuple(input_shape[:-1])


def zero_carry(kind: str, batch_shape, features: int, hyper_features: int = 0):
  """All-zero float32 carry of a cell kind ('lstm', 'ln_lstm', 'hyperlstm', 'ln_hyperlstm', 'hyperrnn').

  Kept for `hyper.sequence`; prefer the cell's own `initialize_carry(rng, input_shape)`.
  """
  batch_shape = tuple(batch_shape) if isinstance(batch_shape, (tuple, list)) else (batch_shape,)
  z = lambda n: jnp.zeros(batch_shape + (n,), jnp.float32)  # noqa: E731
  if kind in ('lstm', 'ln_lstm'):
    return (z(features), z(features))
  if kind in ('hyperlstm', 'ln_hyperlstm'):
    return ((z(features), z(features)), (z(hyper_features), z(hyper_features)))
  if kind == 'hyperrnn':
    return (z(features), z(hyper_features))
  raise ValueError(f'unknown cell kind {kind!r}')
