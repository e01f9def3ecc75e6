"""The fast form of the cells in `hyper.cells`: same parameters, same values, faster training step on CPU.

Selected by the cells' `impl='fast'` (the default); `impl='reference'` runs the plain equations in
`hyper.cells`, and `tests/test_cell_transforms.py` checks that both forms agree in values and in every
gradient (float64). What this module does differently, and why (measurements: `benchmarks/README.md`):

- Per-gate layout: the HyperLSTM's input projections are handed to the time loop as 4 separate
  [..., units] arrays (one per gate) instead of one [..., 4, units] array: XLA's CPU code for a fusion that
  reads several gate slices of one scanned array was several times slower (`benchmarks/gate_layout.py`).
- `_embed_unrolled`: z @ W for the small N_z of the paper's char models written as N_z multiply-adds, so
  XLA fuses it into its consumer instead of materialising a reduction.
- `modulated_gate` (eq. 8 for one gate) has a custom JVP whose tangent is rematerialised: reverse mode
  (JAX linearises the JVP and transposes it) then keeps only z, W and the two projections as residuals and
  regenerates the [B, units] scales d_h, d_x in the backward pass, instead of storing them at every time
  step. Being a JVP rule (not a custom VJP), it also works under `jax.jvp`, `jax.jacfwd` and Hessians.
- `_gate_update_remat`: the whole gate update (pre-activations, layer norm, nonlinearities) is
  rematerialised (`jax.checkpoint`) in the backward pass for the HyperLSTM (when `remat`) and the
  layer-norm LSTM; the residuals are its arguments only.
- Layer norm computes both moments in one pass (E[x^2] - mean^2; fine in float32 with eps 1e-3).

Each step function takes the (bound) cell whose parameters it reads and the dropout masks the cell drew,
so that the fast and the reference forms consume the same random numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from hyper import partitioning

Array = jax.Array
NUM_GATES = 4


def _up(x: Array) -> Array:
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _dot(x: Array, kernel: Array, dtype: Any | None) -> Array:
  if dtype is not None:
    x, kernel = x.astype(dtype), kernel.astype(dtype)
  else:
    x, kernel = nn.dtypes.promote_dtype(x, kernel)
  return _up(jnp.dot(x, kernel))


def _layer_norm(x: Array, scale: Array, bias: Array, epsilon: float) -> Array:
  mean = jnp.mean(x, axis=-1, keepdims=True)
  var = jnp.maximum(jnp.mean(jnp.square(x), axis=-1, keepdims=True) - jnp.square(mean), 0.0)
  return (x - mean) * jax.lax.rsqrt(var + epsilon) * scale + bias


def _gates(x) -> tuple[Array, ...]:
  """The 4 gates of x: a tuple of [..., H] as is, or x [..., 4, H] split."""
  return tuple(x) if isinstance(x, (tuple, list)) else tuple(x[..., k, :] for k in range(NUM_GATES))


def _split_gates(x: Array, units: int) -> Array:
  assert x.shape[-1] == NUM_GATES * units, (x.shape, units)
  return partitioning.split_groups(x, NUM_GATES)  # [..., 4, units], units split as x's last axis


def _sum_preactivation(*parts):
  """W_x x + W_h h (+ b): arrays [..., 4, H] stay an array; if any part is a per-gate tuple, a tuple."""
  if not any(isinstance(p, (tuple, list)) for p in parts):
    return functools.reduce(jnp.add, parts)
  return tuple(functools.reduce(jnp.add, gates) for gates in zip(*map(_gates, parts)))


def _gate_update(
  pre_fn: Callable,
  pre_args: tuple,
  c: Array,
  forget_bias: float,
  cand_mask: Array | None,
  ln_gates: tuple | None,
  ln_cell: tuple | None,
  epsilon: float,
):
  """pre = pre_fn(*pre_args) (array [..., 4, H] or 4-tuple), optional per-gate LN, LSTM update.

  Returns (c_t, h_t, tanh(LN(c_t))).
  """
  pre = pre_fn(*pre_args)
  if ln_gates is not None:
    if isinstance(pre, (tuple, list)):
      pre = tuple(_layer_norm(p, ln_gates[0][k], ln_gates[1][k], epsilon) for k, p in enumerate(pre))
    else:
      pre = _layer_norm(pre, *ln_gates, epsilon)
  i, j, f, o = _gates(pre)
  g = jnp.tanh(j)
  if cand_mask is not None:
    g = g * cand_mask
  new_c = c * jax.nn.sigmoid(f + forget_bias) + jax.nn.sigmoid(i) * g
  tanh_c = jnp.tanh(_layer_norm(new_c, *ln_cell, epsilon) if ln_cell is not None else new_c)
  return new_c, tanh_c * jax.nn.sigmoid(o), tanh_c


# The backward pass keeps only the arguments (for the HyperLSTM: W_h h_{t-1}, the scanned W_x x_t and the
# tiny z; for layer norm its parameters) and recomputes the rest, a few elementwise operations away,
# instead of storing about a dozen [B, H] intermediates per time step.
_gate_update_remat = jax.checkpoint(_gate_update, static_argnums=(0, 3, 7))


def _embed_unrolled(z: Array, w: Array) -> Array:
  """sum_n z[..., n] w[..., n, :] for z [B, *G, N_z], w [*G, N_z, units]; unrolled for N_z <= 16."""
  nz = z.shape[-1]
  if nz > 16:
    return jnp.sum(z[..., None] * w, axis=-2)
  out = z[..., 0, None] * w[..., 0, :]
  for n in range(1, nz):
    out = out + z[..., n, None] * w[..., n, :]
  return out


@jax.custom_jvp
def modulated_gate(z: Array, w: Array, main_h: Array, main_x: Array, bias: Array) -> Array:
  """One gate of eq. 8: d_h ⊙ W_h h + d_x ⊙ W_x x + d_b + b_0 with (d_h, d_x, d_b) = (z_h, z_x, z_b) @ W.

  z [B, 3, N_z] (z_h, z_x, z_b of this gate), w [3, N_z, units] (W_hz, W_xz, W_bz of this gate),
  main_h / main_x [B, units] (this gate's W_h h_{t-1} and W_x x_t), bias [units] (b_0) -> [B, units].
  """
  d_h = _embed_unrolled(z[:, 0], w[0])
  d_x = _embed_unrolled(z[:, 1], w[1])
  d_b = _embed_unrolled(z[:, 2], w[2])
  return d_h * main_h + d_x * main_x + d_b + bias


@jax.checkpoint
def _modulated_gate_tangent(z, w, main_h, main_x, tz, tw, t_main_h, t_main_x, t_bias):
  # Under `jax.checkpoint`, linearisation saves only the primal inputs (z, w, main_h, main_x) and the
  # transpose recomputes d_h, d_x from them: the backward pass is the one a hand-written VJP would be
  # (dz = (g ⊙ [W_h h, W_x x, 1]) W^T, dW = z^T (g ⊙ ...)), and forward mode still works.
  d_h = _embed_unrolled(z[:, 0], w[0])
  d_x = _embed_unrolled(z[:, 1], w[1])
  # Tangents of d_h, d_x, d_b, each [B, units] straight from the tiny z and w (no slice of a stacked
  # [B, 3, units] array: its transpose would pad and add full-size arrays).
  t_h, t_x, t_b = (tz[:, k] @ w[k] + z[:, k] @ tw[k] for k in range(3))
  return t_h * main_h + t_x * main_x + t_b + d_h * t_main_h + d_x * t_main_x + t_bias


@modulated_gate.defjvp
def _modulated_gate_jvp(primals, tangents):
  z, w, main_h, main_x, bias = primals
  return modulated_gate(*primals), _modulated_gate_tangent(z, w, main_h, main_x, *tangents)


def _modulated_preactivation(z: Array, w: Array, main_h, main_x, bias: Array) -> tuple[Array, ...]:
  """The 4 gates' eq. 8 pre-activations, each [..., units], for any leading axes (none included).

  z [..., 3, 4, N_z], w [3, 4, N_z, units], main_h / main_x: tuples of the 4 gates' [..., units],
  bias [4, units].
  """
  lead = z.shape[:-3]
  z = z.reshape((-1,) + z.shape[-3:])
  flat = lambda a: a.reshape((-1, a.shape[-1]))  # noqa: E731
  return tuple(
    modulated_gate(z[:, :, k], w[:, k], flat(main_h[k]), flat(main_x[k]), bias[k]).reshape(
      lead + (w.shape[-1],)
    )
    for k in range(NUM_GATES)
  )


def project_per_gate(x: Array, kernel: Array, dtype: Any | None) -> tuple[Array, ...]:
  """The 4 gates' projections of x (float [..., D] or integer ids [...]), each from its block of
  `kernel` [D or vocab, 4 * units] (no copy of a full-width result)."""
  n = kernel.shape[-1] // NUM_GATES
  blocks = [kernel[:, k * n : (k + 1) * n] for k in range(NUM_GATES)]
  if jnp.issubdtype(x.dtype, jnp.integer):
    return tuple(_up(partitioning.take_rows(w, x)) for w in blocks)
  return tuple(_dot(x, w, dtype) for w in blocks)


# ----------------------------------------------------------------------------------------------------------
# Steps. `cell` is the bound `hyper.cells` module; they return what its reference step computes.


def _ln(cell, prefix: str = ''):
  if not cell.layer_norm:
    return None, None
  p = lambda name: _up(getattr(cell, f'{prefix}ln_{name}'))  # noqa: E731
  return (p('gates_scale'), p('gates_bias')), (p('cell_scale'), p('cell_bias'))


def lstm_step(cell, carry, projected: Array, mask: Array | None, epsilon: float):
  """(LayerNorm)LSTMCell: returns ((c_t, h_t), tanh(LN(c_t)))."""
  c, h = carry
  units = cell.features
  parts = (_split_gates(projected, units), _split_gates(_dot(h, cell.recurrent_kernel, cell.dtype), units))
  ln_gates, ln_cell = _ln(cell)
  if ln_gates is None:
    parts += (_split_gates(_up(cell.bias), units),)
  # Rematerialising measured faster with layer norm and not without (benchmarks/README.md).
  update = _gate_update_remat if ln_gates is not None else _gate_update
  new_c, new_h, tanh_c = update(
    _sum_preactivation, parts, _up(c), cell.forget_bias, mask, ln_gates, ln_cell, epsilon
  )
  return (new_c, new_h), tanh_c


def hyperlstm_project_inputs(cell, x: Array):
  """(W_x x, the x-rows of W_x̂ times x), each as the 4 gates' arrays (the per-gate layout)."""
  return cell.input_proj(x, per_gate=True), cell.hyper_input_proj(x, per_gate=True)


def hyperlstm_step(cell, carry, projected, hyper_mask: Array | None, mask: Array | None, epsilon: float):
  """HyperLSTMCell: returns (((c_t, h_t), (ĉ_t, ĥ_t)), tanh(LN(c_t)))."""
  (c, h), (c_hat, h_hat) = carry
  main_x, hyper_x = projected
  units, hyper_units = cell.features, cell.hyper_features
  # One matmul for everything multiplying h_{t-1}: W_h and the h-rows of W_x̂.
  both = _dot(h, cell.recurrent_kernel, cell.dtype)
  main_h, hyper_h = both[..., : NUM_GATES * units], both[..., NUM_GATES * units :]
  hyper_parts = (
    hyper_x,
    _split_gates(hyper_h, hyper_units),
    _split_gates(_dot(h_hat, cell.hyper_recurrent_kernel, cell.dtype), hyper_units),
  )
  hyper_ln_gates, hyper_ln_cell = _ln(cell, 'hyper_')
  if hyper_ln_gates is None:
    hyper_parts += (_split_gates(_up(cell.hyper_bias), hyper_units),)
  new_c_hat, new_h_hat, _ = _gate_update(
    _sum_preactivation,
    hyper_parts,
    _up(c_hat),
    cell.forget_bias,
    hyper_mask,
    hyper_ln_gates,
    hyper_ln_cell,
    epsilon,
  )
  h_hat_used = new_h_hat if cell.hyper_output == 'current' else _up(h_hat)
  # ĥ -> z [..., 3, 4, N_z] (z_h, z_x, z_b of each gate) in one matmul.
  kernel = jnp.concatenate([cell.z_h_kernel, cell.z_x_kernel, cell.z_b_kernel], axis=1)
  z = _dot(h_hat_used, kernel.reshape(hyper_units, -1), cell.dtype)
  z = z.reshape(z.shape[:-1] + (3, NUM_GATES, cell.embedding_size))
  # Kept in z's sharding: a z bias split over a mesh axis would split N_z, which eq. 8 reads entry by entry.
  z = partitioning.like(z + _up(jnp.stack([cell.z_h_bias, cell.z_x_bias, jnp.zeros_like(cell.z_h_bias)])), z)
  w = _up(jnp.stack([cell.scale_h, cell.scale_x, cell.bias_projection]))  # [3, 4, N_z, units]
  main_h = tuple(main_h[..., k * units : (k + 1) * units] for k in range(NUM_GATES))
  pre_args = (z, w, main_h, main_x, _split_gates(_up(cell.bias), units))
  ln_gates, ln_cell = _ln(cell)
  update = _gate_update_remat if cell.remat else _gate_update
  new_c, new_h, tanh_c = update(
    _modulated_preactivation, pre_args, _up(c), cell.forget_bias, mask, ln_gates, ln_cell, epsilon
  )
  return ((new_c, new_h), (new_c_hat, new_h_hat)), tanh_c
