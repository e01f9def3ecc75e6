"""Recurrent cells: LSTM, layer-norm LSTM, the HyperLSTM (appendix A.2.2) and the basic HyperRNN (eq. 4-8).

Every cell is a `flax.linen.RNNCellBase` (`__call__(carry, inputs, deterministic=None)`,
`initialize_carry(rng, input_shape)`, `num_feature_axes == 1`) and additionally splits its step in two so
that sequence code can hoist the work that does not depend on the recurrence out of the time loop:

- `project_inputs(x)`: the input projections (W_x x_t, and for hypernetwork cells the x-part of the hyper
  network's input projection) for any number of leading axes, e.g. all [T, B] steps at once;
- `step(carry, projected, deterministic, diagnostics)`: the recurrent part of one step.

`__call__` is `step(carry, project_inputs(x))`. `hyper.sequence.RecurrentStack` runs `project_inputs` on a
whole sequence (one big matmul) and `jax.lax.scan`s `step`.

Inputs are float vectors [..., D], or, when the cell has `vocab_size`, integer token ids [...] standing for
one-hot vectors over `vocab_size` symbols: one-hot @ W_x is then done as a row gather (same parameter, same
count, no matmul).

Gate order is (i, j, f, o) as in the reference code (j is the candidate, tanh). All weight matrices are
stored [fan_in, 4 * units], gate g in columns g*units:(g+1)*units; "the rows of W" in the paper's
[out, in] convention are our columns.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

Array = jax.Array
Dtype = Any

LN_EPSILON = 1e-3  # the reference code's layer-norm epsilon ("found this works best")
NUM_GATES = 4
GATE_NAMES = ("i", "j", "f", "o")


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


Z_INITS = ("reference", "random_embedding", "random_projection")


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
    if z_init == "reference":
        return nn.initializers.zeros, constant
    if z_init == "random_embedding":
        return nn.initializers.normal(0.01), constant
    if z_init == "random_projection":
        def noisy(key, shape, dtype=jnp.float32):
            noise = 0.1 * jax.random.normal(key, shape, jnp.float32)
            return ((0.1 / embedding_size) * (1.0 + noise)).astype(dtype)
        return nn.initializers.zeros, noisy
    raise ValueError(f"z_init must be one of {Z_INITS}, got {z_init!r}")


def _concat_init(first, first_columns: int, rest):
    """Init a [fan_in, n] matrix as columns [:first_columns] from `first`, the others from `rest`."""

    def init(key, shape, dtype=jnp.float32):
        k1, k2 = jax.random.split(key)
        a = first(k1, shape[:-1] + (first_columns,), dtype)
        b = rest(k2, shape[:-1] + (shape[-1] - first_columns,), dtype)
        return jnp.concatenate([a, b], axis=-1)

    return init


def _orthogonal_stack(scale: float):
    """[n, fan_in, units]: n independent orthogonal matrices times `scale` (HyperRNN 'full' weights)."""
    ortho = nn.initializers.orthogonal(1.0)

    def init(key, shape, dtype=jnp.float32):
        keys = jax.random.split(key, shape[0])
        return (jnp.stack([ortho(k, shape[1:], jnp.float32) for k in keys]) * scale).astype(dtype)

    return init


# ----------------------------------------------------------------------------------------------------------
# Small pure helpers shared by the cells.


def layer_norm(x: Array, scale: Array, bias: Array, epsilon: float = LN_EPSILON) -> Array:
    """Layer norm over the last axis, as the reference code: (x - mean) / sqrt(var + eps) * scale + bias."""
    # One pass over x for both moments (E[x^2] - mean^2; fine in float32 at these scales with eps 1e-3).
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.maximum(jnp.mean(jnp.square(x), axis=-1, keepdims=True) - jnp.square(mean), 0.0)
    return (x - mean) * jax.lax.rsqrt(var + epsilon) * scale + bias


def _up(x: Array) -> Array:
    """At least float32 (float64 stays float64) for the gate arithmetic and the carry."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _dot(x: Array, kernel: Array, dtype: Optional[Dtype]) -> Array:
    """x @ kernel in `dtype` (None: promoted dtype), result in float32 for the gate arithmetic."""
    if dtype is not None:
        x, kernel = x.astype(dtype), kernel.astype(dtype)
    else:
        x, kernel = nn.dtypes.promote_dtype(x, kernel)
    return _up(jnp.dot(x, kernel))


def _lstm_update(pre: Array, c: Array, forget_bias: float, cand_mask: Optional[Array],
                 ln_cell: Optional[tuple[Array, Array]]) -> tuple[Array, Array, Array]:
    """LSTM state update from gate pre-activations pre [B, 4, H]; returns (c_t, h_t, tanh(c_t)).

    Recurrent dropout without memory loss (Semeniuta et al.) multiplies the candidate tanh(j) only.
    With layer norm, tanh(c_t) is tanh(LN(c_t)), the value that enters h_t.
    """
    if isinstance(pre, (tuple, list)):
        i, j, f, o = pre
    else:
        i, j, f, o = pre[..., 0, :], pre[..., 1, :], pre[..., 2, :], pre[..., 3, :]
    g = jnp.tanh(j)
    if cand_mask is not None:
        g = g * cand_mask
    new_c = c * jax.nn.sigmoid(f + forget_bias) + jax.nn.sigmoid(i) * g
    cc = layer_norm(new_c, *ln_cell) if ln_cell is not None else new_c
    tanh_c = jnp.tanh(cc)
    return new_c, tanh_c * jax.nn.sigmoid(o), tanh_c


def _gate_tuple(x) -> tuple[Array, ...]:
    """The 4 gates of x: a tuple of [..., H] as is, or x [..., 4, H] split."""
    return tuple(x) if isinstance(x, (tuple, list)) else tuple(x[..., k, :] for k in range(NUM_GATES))


def _sum_preactivation(*parts):
    """W_x x + W_h h (+ b): the plain LSTM's gate pre-activations. Each part is an array [..., 4, H] or a
    tuple of the 4 gates' [..., H]; the result is an array if every part is one, else a tuple by gate."""
    if not any(isinstance(p, (tuple, list)) for p in parts):
        return functools.reduce(jnp.add, parts)
    return tuple(functools.reduce(jnp.add, gates) for gates in zip(*map(_gate_tuple, parts)))


def _gate_update(pre_fn: Callable[..., Array], pre_args: tuple, c: Array, forget_bias: float,
                 cand_mask: Optional[Array], ln_gates: Optional[tuple[Array, Array]],
                 ln_cell: Optional[tuple[Array, Array]]) -> tuple[Array, Array, Array]:
    """pre = pre_fn(*pre_args) ([B, 4, H], or a tuple of the 4 gates' [B, H]), optional layer norm per
    gate, then `_lstm_update`."""
    pre = pre_fn(*pre_args)
    if ln_gates is not None:
        if isinstance(pre, (tuple, list)):
            pre = tuple(layer_norm(p, ln_gates[0][k], ln_gates[1][k]) for k, p in enumerate(pre))
        else:
            pre = layer_norm(pre, *ln_gates)
    return _lstm_update(pre, c, forget_bias, cand_mask, ln_cell)


# `_gate_update` rematerialised (`jax.checkpoint`): the backward pass keeps only the arguments (for the
# HyperLSTM: W_h h_{t-1}, the scanned W_x x_t and the tiny embeddings z; for layer norm also its parameters)
# and recomputes the pre-activations and the gate nonlinearities, a few elementwise operations away,
# instead of storing about a dozen [B, H] intermediates at every time step: on CPU every stored byte is a
# freshly written page at every call. Used by the HyperLSTM (`HyperLSTMCell.remat`) and the LN LSTM, where
# `benchmarks/compare_trees.py` measured it faster; not by the plain LSTM, where it was not (README).
_gate_update_remat = jax.checkpoint(_gate_update, static_argnums=(0, 3))


def _split_gates(x: Array, units: int) -> Array:
    return x.reshape(x.shape[:-1] + (NUM_GATES, units))


def _scaled_weight_change(delta_scale: Array, kernel: Array, groups: int) -> Array:
    """Per-group ||diag(delta) W_g||_F / ||W_g||_F without building matrices.

    delta_scale: [B, groups, H] change of the row scalings d; kernel: [fan_in, groups * H]. Row j of the
    effective matrix diag(d) W_g is d_j W_g[j]; its change has norm^2 sum_j delta_j^2 ||W_g[j]||^2.
    """
    sq_norms = jnp.sum(jnp.square(_up(kernel)), axis=0)
    sq_norms = sq_norms.reshape(groups, -1)  # [G, H]
    change = jnp.sqrt(jnp.einsum("bgh,gh->bg", jnp.square(delta_scale), sq_norms))
    return change / jnp.sqrt(jnp.sum(sq_norms, axis=-1))


def _embed_unrolled(z: Array, w: Array) -> Array:
    """sum_n z[..., n] w[..., n, :] for z [B, *G, N_z], w [*G, N_z, units] as N_z fused multiply-adds.

    Written out term by term (for the small N_z of the paper's char models) so that XLA fuses it into its
    consumer instead of materialising a reduction; a plain reduction for large N_z.
    """
    nz = z.shape[-1]
    if nz > 16:
        return jnp.sum(z[..., None] * w, axis=-2)
    out = z[..., 0, None] * w[..., 0, :]
    for n in range(1, nz):
        out = out + z[..., n, None] * w[..., n, :]
    return out


@jax.custom_vjp
def _modulated_gate(z: Array, w: Array, main_h: Array, main_x: Array, bias: Array) -> Array:
    """One gate's d_h ⊙ W_h h + d_x ⊙ W_x x + b(z_b) + b_0, (d_h, d_x, b) = z @ w (eq. 8, one LSTM gate).

    z [B, 3, N_z] (z_h, z_x, z_b of this gate), w [3, N_z, units], main_h / main_x [B, units] (this gate's
    rows of W_h h_{t-1} and W_x x_t), bias [units] (b_0) -> [B, units]. The custom VJP keeps only z (tiny)
    as a residual and regenerates d_h, d_x in the backward pass instead of storing the [B, 3, units]
    scales at every time step: the scales are a few multiply-adds away from z, and storing them dominated
    the memory traffic of the HyperLSTM step on CPU.
    """
    d_h = _embed_unrolled(z[:, 0], w[0])
    d_x = _embed_unrolled(z[:, 1], w[1])
    d_b = _embed_unrolled(z[:, 2], w[2])
    return d_h * main_h + d_x * main_x + d_b + bias


def _modulated_gate_fwd(z, w, main_h, main_x, bias):
    return _modulated_gate(z, w, main_h, main_x, bias), (z, w, main_h, main_x)


def _modulated_gate_bwd(res, g):
    z, w, main_h, main_x = res
    d_h = _embed_unrolled(z[:, 0], w[0])
    d_x = _embed_unrolled(z[:, 1], w[1])
    # d loss / d (d_h, d_x, b) as [3, B, units]: the scale index is the batch axis of the dw contraction.
    dd = jnp.stack([g * main_h, g * main_x, g])
    dz = jnp.einsum("kbh,knh->bkn", dd, w)
    dw = jnp.einsum("bkn,kbh->knh", z, dd)
    return (dz.astype(z.dtype), dw.astype(w.dtype), (g * d_h).astype(main_h.dtype),
            (g * d_x).astype(main_x.dtype), jnp.sum(g, axis=0))


_modulated_gate.defvjp(_modulated_gate_fwd, _modulated_gate_bwd)


def _modulated_preactivation(z: Array, w: Array, main_h, main_x, bias: Array) -> tuple[Array, ...]:
    """The 4 gates' weight-scaled pre-activations (eq. 8), each [..., units], for any leading axes.

    z [..., 3, 4, N_z], w [3, 4, N_z, units], main_h / main_x: tuples of the 4 gates' [..., units]
    (W_h h_{t-1} and W_x x_t by gate), bias [4, units]. The gates stay separate arrays: XLA's CPU code for
    a fusion that reads several gate slices of one scanned [T, B, 4, units] array was measured several
    times slower than for separate [T, B, units] arrays.
    """
    lead = z.shape[:-3]
    z = z.reshape((-1,) + z.shape[-3:])
    flat = lambda a: a.reshape((-1, a.shape[-1]))  # noqa: E731
    return tuple(_modulated_gate(z[:, :, k], w[:, k], flat(main_h[k]), flat(main_x[k]), bias[k])
                 .reshape(lead + (w.shape[-1],)) for k in range(NUM_GATES))


class InputProjection(nn.Module):
    """x @ W for float x [..., D], or W[ids] (one-hot @ W as a gather) for integer ids with `vocab_size`.

    `num_blocks > 1`: a tuple of the projections onto W's `num_blocks` equal column blocks (e.g. the 4
    gates), each computed directly from its block of W (no copy of a full-width result).
    """

    features: int
    vocab_size: Optional[int] = None
    kernel_init: Any = per_gate_orthogonal()
    dtype: Optional[Dtype] = None
    param_dtype: Dtype = jnp.float32
    num_blocks: int = 1

    @nn.compact
    def __call__(self, x: Array):
        if jnp.issubdtype(x.dtype, jnp.integer):
            if self.vocab_size is None:
                raise ValueError("integer inputs need the cell's vocab_size (they stand for one-hot vectors)")
            kernel = self.param("kernel", self.kernel_init, (self.vocab_size, self.features),
                                self.param_dtype)
            project = lambda w: _up(jnp.take(w, x, axis=0))  # noqa: E731
        else:
            kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), self.param_dtype)
            project = lambda w: _dot(x, w, self.dtype)  # noqa: E731
        if self.num_blocks == 1:
            return project(kernel)
        n = self.features // self.num_blocks
        return tuple(project(kernel[:, k * n:(k + 1) * n]) for k in range(self.num_blocks))


class _CellBase(nn.RNNCellBase):
    """Shared plumbing: deterministic resolution, dropout masks, `__call__` = step(project_inputs(x))."""

    def _dropout_mask(self, rate: float, shape, deterministic: Optional[bool]) -> Optional[Array]:
        det = deterministic if deterministic is not None else self.deterministic
        if det or rate <= 0.0 or not self.has_rng("dropout"):
            return None
        keep = 1.0 - rate
        return jax.random.bernoulli(self.make_rng("dropout"), keep, shape).astype(jnp.float32) / keep

    def __call__(self, carry, inputs: Array, deterministic: Optional[bool] = None):
        new_carry, out, diag = self.step(carry, self.project_inputs(inputs), deterministic, diagnostics=True)
        for name, value in diag.items():
            self.sow("diagnostics", name, value)
        return new_carry, out

    @property
    def num_feature_axes(self) -> int:
        return 1


# ----------------------------------------------------------------------------------------------------------
# Baselines.


class LSTMCell(_CellBase):
    """LSTM with per-gate orthogonal init, forget bias and recurrent dropout without memory loss.

    i, j, f, o = W_x x_t + W_h h_{t-1} + b;  c_t = c_{t-1} σ(f + forget_bias) + σ(i) drop(tanh j);
    h_t = tanh(c_t) σ(o). b starts at 0 (the forget bias is a constant, as in the reference code).
    carry = (c, h), each [B, features].

    Recurrent dropout: applied when `recurrent_dropout > 0`, the call is not deterministic (call argument,
    else the `deterministic` attribute, default True) and a 'dropout' rng is given; a new mask every step.
    Inside `flax.linen.RNN` (which calls the cell without a `deterministic` argument) build the cell with
    `deterministic=False` and give the RNN `split_rngs={'params': False, 'dropout': True}` (otherwise the
    same mask is reused at every step); to get the per-step values sown into 'diagnostics' (weight change,
    tanh(c_t)) add `variable_axes={'diagnostics': 1}` and `mutable=['diagnostics']` (otherwise they
    come back empty).
    """

    features: int
    forget_bias: float = 1.0
    recurrent_dropout: float = 0.0
    vocab_size: Optional[int] = None
    deterministic: bool = True
    dtype: Optional[Dtype] = None
    param_dtype: Dtype = jnp.float32

    use_layer_norm = False

    def setup(self):
        h = self.features
        self.input_proj = InputProjection(NUM_GATES * h, self.vocab_size, per_gate_orthogonal(),
                                          self.dtype, self.param_dtype)
        self.recurrent_kernel = self.param("recurrent_kernel", per_gate_orthogonal(), (h, NUM_GATES * h),
                                           self.param_dtype)
        if self.use_layer_norm:
            # LN's own bias replaces b (as in the reference LayerNormLSTMCell; Table 4's 14.82M needs this).
            self.ln_gates_scale = self.param("ln_gates_scale", nn.initializers.ones, (NUM_GATES, h),
                                             self.param_dtype)
            self.ln_gates_bias = self.param("ln_gates_bias", nn.initializers.zeros, (NUM_GATES, h),
                                            self.param_dtype)
            self.ln_cell_scale = self.param("ln_cell_scale", nn.initializers.ones, (h,), self.param_dtype)
            self.ln_cell_bias = self.param("ln_cell_bias", nn.initializers.zeros, (h,), self.param_dtype)
        else:
            self.bias = self.param("bias", nn.initializers.zeros, (NUM_GATES * h,), self.param_dtype)

    def project_inputs(self, x: Array) -> Array:
        return self.input_proj(x)  # [..., 4H] float32

    def step(self, carry, projected: Array, deterministic: Optional[bool] = None, diagnostics: bool = False):
        c, h = carry
        units = self.features
        parts = (_split_gates(projected, units),
                 _split_gates(_dot(h, self.recurrent_kernel, self.dtype), units))
        if self.use_layer_norm:
            ln_gates = (_up(self.ln_gates_scale), _up(self.ln_gates_bias))
            ln_cell = (_up(self.ln_cell_scale), _up(self.ln_cell_bias))
        else:
            parts += (_split_gates(_up(self.bias), units),)
            ln_gates = ln_cell = None
        mask = self._dropout_mask(self.recurrent_dropout, c.shape, deterministic)
        # Rematerialising pays with layer norm and not without (see `_gate_update_remat`).
        update = _gate_update_remat if self.use_layer_norm else _gate_update
        new_c, new_h, tanh_c = update(_sum_preactivation, parts, _up(c), self.forget_bias, mask, ln_gates,
                                      ln_cell)
        out = new_h if self.dtype is None else new_h.astype(self.dtype)
        diag = {}
        if diagnostics:
            zeros = jnp.zeros(c.shape[:-1] + (NUM_GATES,), jnp.float32)  # fixed weights never change
            diag = {"weight_change": zeros, "weight_change_x": zeros, "tanh_c": tanh_c}
        return (new_c, new_h), out, diag

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        return zero_carry("lstm", _batch_shape(input_shape, self.vocab_size), self.features)


class LayerNormLSTMCell(LSTMCell):
    """LSTM with layer norm (eps 1e-3) on each gate's pre-activation and on c_t before tanh.

    As the reference code, no separate gate bias b: each gate's LN bias plays its role.
    """

    use_layer_norm = True


# ----------------------------------------------------------------------------------------------------------
# HyperLSTM (appendix A.2.2, weight-scaling form).


class HyperLSTMCell(_CellBase):
    """HyperLSTM cell (appendix A.2.2) in the memory-efficient weight-scaling form (eq. 8 for the LSTM).

    A small hyper LSTM (`hyper_features` units, layer-norm LSTM when `layer_norm`) reads x̂_t = [x_t; h_{t-1}]:
    ĥ_t = HyperLSTM(x̂_t, ĥ_{t-1}). For each gate y in (i, j, f, o), from the hyper output ĥ:

        z_h^y = W_ĥh^y ĥ + b_ĥh^y,   z_x^y = W_ĥx^y ĥ + b_ĥx^y,   z_b^y = W_ĥb^y ĥ        (size N_z)
        d_h^y = W_hz^y z_h^y,        d_x^y = W_xz^y z_x^y,        b^y = W_bz^y z_b^y      (size units)
        y = LN(d_h^y ⊙ W_h^y h_{t-1} + d_x^y ⊙ W_x^y x_t + b^y + b_0^y)   (LN only when layer_norm)
        c_t = c_{t-1} σ(f + forget_bias) + σ(i) drop(tanh j),   h_t = tanh(LN(c_t)) σ(o).

    Which ĥ drives the projections (`hyper_output`): the paper (eq. 5, A.2.2) writes ĥ_{t-1};
    the author's reference code (hardmaru's supercell.py HyperLSTMCell) uses the freshly computed ĥ_t,
    so h_t's weights already depend on x_t. Default 'current' (ĥ_t, reference code); 'previous' (ĥ_{t-1},
    the paper's text).

    Initialisation (A.2.3 / reference code): W_x, W_h and the hyper LSTM's weights orthogonal per gate
    block (each input source — x, h, ĥ — its own block); parameter `recurrent_kernel` holds W_h in its
    first 4*units columns and the h_{t-1} rows of the hyper LSTM's input weights in the rest; b_0 = 0;
    W_ĥh, W_ĥx = 0 with biases 1; W_ĥb ~ N(0, 0.01²), no bias (as the reference `zb`);
    W_hz, W_xz = 0.1 / N_z (so d = 0.1 at init); W_bz = 0 (generated bias 0 at init). With this init (`z_init='reference'`) the N_z coordinates of z_h
    (and z_x) are exchangeable and stay equal under gradient descent (only z_b is randomly initialised);
    `z_init` offers symmetry-breaking alternatives (see `z_initializers`).

    Bias / layer-norm rule (fixed by the paper's parameter counts): this cell keeps b_0 even with layer
    norm (as the reference code; Table 3's 14.41M two-layer LN HyperLSTM needs it), while the hyper LSTM,
    being a `LayerNormLSTMCell` when `layer_norm`, has no gate bias of its own (LN's bias replaces it), and
    a plain LSTM bias otherwise. `layer_norm=False` turns layer norm off in both the main and the hyper LSTM.
    LN epsilon is 1e-3.

    Recurrent dropout (main cell candidate; `hyper_recurrent_dropout` for the hyper LSTM, off as in the
    paper) follows `LSTMCell`: see there for the `flax.linen.RNN` arguments
    (`split_rngs={'params': False, 'dropout': True}`, `variable_axes={'diagnostics': 1}`, cell built with
    `deterministic=False`).

    carry = ((c, h), (ĉ, ĥ)). Diagnostics (`step(..., diagnostics=True)` / sown by `__call__`):
    `weight_change` [B, 4]: per gate ||W_h^eff(ĥ_t) - W_h^eff(ĥ_{t-1})||_F / ||W_h||_F where
    W_h^eff(ĥ) = diag(d_h(ĥ)) W_h, computed from d_h and the row norms of W_h (with
    hyper_output='current' this is the change from the matrix used at t-1 to the one used at t; with
    'previous' from the one used at t to the one used at t+1); `weight_change_x` the same for W_x;
    `tanh_c` [B, units].

    `remat` (default True): recompute the main cell's gate pre-activations and nonlinearities in the
    backward pass instead of storing them (`_gate_update_remat`); values and gradients are the same.
    Measured on CPU with `benchmarks/compare_trees.py` against a copy with it off, ms per time step:
    1000 units 28.3 vs 29.4 (LN 33.1 vs 45.6), 512 units 10.3 vs 11.4, 256 units (batch 32) 1.20 vs
    1.28 (LN 1.82 vs 1.91).
    """

    features: int
    hyper_features: int = 128
    embedding_size: int = 4
    layer_norm: bool = True
    recurrent_dropout: float = 0.0
    hyper_recurrent_dropout: float = 0.0
    forget_bias: float = 1.0
    hyper_output: str = "current"
    vocab_size: Optional[int] = None
    deterministic: bool = True
    dtype: Optional[Dtype] = None
    param_dtype: Dtype = jnp.float32
    remat: bool = True
    z_init: str = "reference"

    def setup(self):
        if self.hyper_output not in ("current", "previous"):
            raise ValueError(f"hyper_output must be 'current' or 'previous', got {self.hyper_output!r}")
        if self.z_init not in Z_INITS:
            raise ValueError(f"z_init must be one of {Z_INITS}, got {self.z_init!r}")
        h, hh, nz, pd = self.features, self.hyper_features, self.embedding_size, self.param_dtype
        ortho = per_gate_orthogonal()
        # Main LSTM.
        self.input_proj = InputProjection(NUM_GATES * h, self.vocab_size, ortho, self.dtype, pd,
                                          num_blocks=NUM_GATES)
        # Everything multiplying h_{t-1}, in one matrix so that one matmul (and, in the backward pass, one
        # gradient accumulation) serves both: columns [:4 units] are W_h (gates i, j, f, o), columns
        # [4 units:] the h_{t-1} rows of the hyper LSTM's input weights W_x̂ (x̂ = [x; h_{t-1}]).
        self.recurrent_kernel = self.param("recurrent_kernel", _concat_init(ortho, NUM_GATES * h, ortho),
                                           (h, NUM_GATES * (h + hh)), pd)
        self.bias = self.param("bias", nn.initializers.zeros, (NUM_GATES * h,), pd)  # b_0
        # The x_t rows of W_x̂ (precomputable outside the time loop).
        self.hyper_input_proj = InputProjection(NUM_GATES * hh, self.vocab_size, ortho, self.dtype, pd,
                                                num_blocks=NUM_GATES)
        self.hyper_recurrent_kernel = self.param("hyper_recurrent_kernel", ortho, (hh, NUM_GATES * hh), pd)
        if self.layer_norm:
            ones, zeros = nn.initializers.ones, nn.initializers.zeros
            self.ln_gates_scale = self.param("ln_gates_scale", ones, (NUM_GATES, h), pd)
            self.ln_gates_bias = self.param("ln_gates_bias", zeros, (NUM_GATES, h), pd)
            self.ln_cell_scale = self.param("ln_cell_scale", ones, (h,), pd)
            self.ln_cell_bias = self.param("ln_cell_bias", zeros, (h,), pd)
            self.hyper_ln_gates_scale = self.param("hyper_ln_gates_scale", ones, (NUM_GATES, hh), pd)
            self.hyper_ln_gates_bias = self.param("hyper_ln_gates_bias", zeros, (NUM_GATES, hh), pd)
            self.hyper_ln_cell_scale = self.param("hyper_ln_cell_scale", ones, (hh,), pd)
            self.hyper_ln_cell_bias = self.param("hyper_ln_cell_bias", zeros, (hh,), pd)
        else:
            self.hyper_bias = self.param("hyper_bias", nn.initializers.zeros, (NUM_GATES * hh,), pd)
        # Embeddings z (eq. 5 / A.2.2), per gate: [hyper_units, 4, N_z].
        embed_init, scale_init = z_initializers(self.z_init, nz)
        self.z_h_kernel = self.param("z_h_kernel", embed_init, (hh, NUM_GATES, nz), pd)
        self.z_h_bias = self.param("z_h_bias", nn.initializers.ones, (NUM_GATES, nz), pd)
        self.z_x_kernel = self.param("z_x_kernel", embed_init, (hh, NUM_GATES, nz), pd)
        self.z_x_bias = self.param("z_x_bias", nn.initializers.ones, (NUM_GATES, nz), pd)
        self.z_b_kernel = self.param("z_b_kernel", nn.initializers.normal(0.01), (hh, NUM_GATES, nz), pd)
        # Projections z -> d_h, d_x, b (eq. 7-8), per gate: [4, N_z, units].
        self.scale_h = self.param("scale_h", scale_init, (NUM_GATES, nz, h), pd)
        self.scale_x = self.param("scale_x", scale_init, (NUM_GATES, nz, h), pd)
        self.bias_z = self.param("bias_z", nn.initializers.zeros, (NUM_GATES, nz, h), pd)

    def project_inputs(self, x: Array) -> tuple[tuple[Array, ...], Array]:
        """(W_x x as the 4 gates' [..., units], the x-rows of the hyper LSTM's input projection as the 4
        gates' [..., hyper_units]).

        One array per gate, so that the scan hands each gate to the step as its own [B, units] slice (see
        `_modulated_preactivation`).
        """
        return self.input_proj(x), self.hyper_input_proj(x)

    def _embeddings(self, hyper_out: Array) -> Array:
        """ĥ [B, Ĥ] -> z [B, 3, 4, N_z]: (z_h, z_x, z_b) for each gate, in one matmul."""
        kernel = jnp.concatenate([self.z_h_kernel, self.z_x_kernel, self.z_b_kernel], axis=1)
        z = _dot(hyper_out, kernel.reshape(self.hyper_features, -1), self.dtype)
        z = z.reshape(z.shape[:-1] + (3, NUM_GATES, self.embedding_size))
        bias = jnp.stack([self.z_h_bias, self.z_x_bias, jnp.zeros_like(self.z_h_bias)])  # z_b has none
        return z + _up(bias)

    def _projections(self) -> Array:
        """(W_hz, W_xz, W_bz) stacked: [3, 4, N_z, units]."""
        return _up(jnp.stack([self.scale_h, self.scale_x, self.bias_z]))

    def _scales(self, hyper_out: Array) -> tuple[Array, Array, Array]:
        """ĥ -> (d_h, d_x, generated bias), each [B, 4, units] (for diagnostics and `generated`)."""
        d = _embed_unrolled(self._embeddings(hyper_out), self._projections())  # [B, 3, 4, units]
        return d[..., 0, :, :], d[..., 1, :, :], d[..., 2, :, :]

    def generated(self, carry, projected, deterministic: Optional[bool] = None) -> dict[str, Array]:
        """The generated d_h, d_x, b [B, 4, units] this step would use (for tests and analysis)."""
        hyper_out = self._hyper_step(carry, projected, deterministic)[1]
        d_h, d_x, b = self._scales(hyper_out)
        return {"scale_h": d_h, "scale_x": d_x, "bias": b}

    def _recurrent_h(self, h: Array) -> tuple[Array, Array]:
        """(W_h h [B, 4 units], h-rows of the hyper input projection [B, 4 hyper units]) in one matmul."""
        both = _dot(h, self.recurrent_kernel, self.dtype)
        n = NUM_GATES * self.features
        return both[..., :n], both[..., n:]

    def _hyper_step(self, carry, projected, deterministic, h_part=None):
        (c, h), (hc, hh) = carry
        if h_part is None:
            h_part = self._recurrent_h(h)[1]
        _, hyper_x = projected
        hu = self.hyper_features
        parts = (hyper_x, _split_gates(h_part, hu),
                 _split_gates(_dot(hh, self.hyper_recurrent_kernel, self.dtype), hu))
        if self.layer_norm:
            ln_gates = (_up(self.hyper_ln_gates_scale), _up(self.hyper_ln_gates_bias))
            ln_cell = (_up(self.hyper_ln_cell_scale), _up(self.hyper_ln_cell_bias))
        else:
            parts += (_split_gates(_up(self.hyper_bias), hu),)
            ln_gates = ln_cell = None
        mask = self._dropout_mask(self.hyper_recurrent_dropout, hc.shape, deterministic)
        new_hc, new_hh, _ = _gate_update(_sum_preactivation, parts, _up(hc), self.forget_bias, mask,
                                          ln_gates, ln_cell)
        hyper_out = new_hh if self.hyper_output == "current" else _up(hh)
        return (new_hc, new_hh), hyper_out

    def step(self, carry, projected, deterministic: Optional[bool] = None, diagnostics: bool = False):
        (c, h), (hc, hh) = carry
        main_x, _ = projected
        main_h, hyper_h = self._recurrent_h(h)
        new_hyper, hyper_out = self._hyper_step(carry, projected, deterministic, hyper_h)
        units = self.features
        z = self._embeddings(hyper_out)  # [B, 3, 4, N_z]
        main_h = tuple(main_h[..., k * units:(k + 1) * units] for k in range(NUM_GATES))
        pre_args = (z, self._projections(), main_h, main_x, _split_gates(_up(self.bias), units))
        if self.layer_norm:
            ln_gates = (_up(self.ln_gates_scale), _up(self.ln_gates_bias))
            ln_cell = (_up(self.ln_cell_scale), _up(self.ln_cell_bias))
        else:
            ln_gates = ln_cell = None
        mask = self._dropout_mask(self.recurrent_dropout, c.shape, deterministic)
        update = _gate_update_remat if self.remat else _gate_update
        new_c, new_h, tanh_c = update(_modulated_preactivation, pre_args, _up(c), self.forget_bias, mask,
                                      ln_gates, ln_cell)
        out = new_h if self.dtype is None else new_h.astype(self.dtype)
        diag = {}
        if diagnostics:
            # Change between the matrices generated from ĥ_t and from ĥ_{t-1}.
            d_h_new, d_x_new, _ = self._scales(new_hyper[1])
            d_h_old, d_x_old, _ = self._scales(_up(hh))
            x_kernel = self.input_proj.variables["params"]["kernel"]
            diag = {
                "weight_change": _scaled_weight_change(
                    d_h_new - d_h_old, self.recurrent_kernel[:, :NUM_GATES * units], NUM_GATES),
                "weight_change_x": _scaled_weight_change(d_x_new - d_x_old, x_kernel, NUM_GATES),
                "tanh_c": tanh_c,
            }
        return ((new_c, new_h), new_hyper), out, diag

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        return zero_carry("hyperlstm", _batch_shape(input_shape, self.vocab_size), self.features,
                          self.hyper_features)


# ----------------------------------------------------------------------------------------------------------
# Basic HyperRNN (section 3.2, eq. 4-8).


class HyperRNNCell(_CellBase):
    """Basic HyperRNN (eq. 4-7), with tanh main and hyper RNNs.

        ĥ_t = tanh(W_ĥ ĥ_{t-1} + W_x̂ [h_{t-1}; x_t] + b̂)                                     (4)
        z_h = W_ĥh ĥ + b_ĥh,  z_x = W_ĥx ĥ + b_ĥx,  z_b = W_ĥb ĥ                              (5)
        h_t = tanh(W_h(z_h) h_{t-1} + W_x(z_x) x_t + b(z_b)),  b(z_b) = W_bz z_b + b_0          (6, 7)

    `weights='scaled'` (default) uses the memory-efficient form of eq. 8: W_h(z_h) = diag(W_hz z_h) W_h;
    `weights='full'` the general eq. 6-7: W_h(z_h) = <W_hz, z_h> with W_hz a [N_z, units, units] tensor
    (N_z times the LSTM's memory; for completeness). ĥ is ĥ_t or ĥ_{t-1} per `hyper_output` (see
    `HyperLSTMCell`). Init as A.2.3 (scaled form: d = 0.1 at init); in the full form each slice W_hz[n]
    is an independent orthogonal matrix times 0.1 / sqrt(N_z), so that W_h(z_0) has the Frobenius norm of
    0.1 W_h. carry = (h, ĥ). Diagnostics: `weight_change` [B, 1] as in `HyperLSTMCell` (full form:
    ||W_h(z_h(ĥ_t)) - W_h(z_h(ĥ_{t-1}))||_F / ||W_h(z_h(ĥ_t))||_F, from the Gram matrix of the slices).
    """

    features: int
    hyper_features: int = 128
    embedding_size: int = 4
    weights: str = "scaled"
    hyper_output: str = "current"
    vocab_size: Optional[int] = None
    deterministic: bool = True
    dtype: Optional[Dtype] = None
    param_dtype: Dtype = jnp.float32

    def setup(self):
        h, hh, nz, pd = self.features, self.hyper_features, self.embedding_size, self.param_dtype
        if self.weights not in ("scaled", "full"):
            raise ValueError(f"weights must be 'scaled' or 'full', got {self.weights!r}")
        if self.weights == "scaled":
            ortho = nn.initializers.orthogonal()
            self.input_proj = InputProjection(h, self.vocab_size, ortho, self.dtype, pd)
            self.recurrent_kernel = self.param("recurrent_kernel", ortho, (h, h), pd)
            self.scale_h = self.param("scale_h", nn.initializers.constant(0.1 / nz), (nz, h), pd)
            self.scale_x = self.param("scale_x", nn.initializers.constant(0.1 / nz), (nz, h), pd)
        else:
            # [fan_in, N_z * units] column blocks are the slices W_hz[n] (so one matmul gives all W_hz[n] h).
            full = per_gate_orthogonal(nz, 0.1 / np.sqrt(nz))
            self.input_proj = InputProjection(nz * h, self.vocab_size, full, self.dtype, pd)
            self.recurrent_kernel = self.param("recurrent_kernel", full, (h, nz * h), pd)
        self.bias = self.param("bias", nn.initializers.zeros, (h,), pd)  # b_0
        hyper_init = nn.initializers.orthogonal()
        self.hyper_input_proj = InputProjection(hh, self.vocab_size, hyper_init, self.dtype, pd)
        self.hyper_main_kernel = self.param("hyper_main_kernel", hyper_init, (h, hh), pd)
        self.hyper_recurrent_kernel = self.param("hyper_recurrent_kernel", hyper_init, (hh, hh), pd)
        self.hyper_bias = self.param("hyper_bias", nn.initializers.zeros, (hh,), pd)
        self.z_h_kernel = self.param("z_h_kernel", nn.initializers.zeros, (hh, nz), pd)
        self.z_h_bias = self.param("z_h_bias", nn.initializers.ones, (nz,), pd)
        self.z_x_kernel = self.param("z_x_kernel", nn.initializers.zeros, (hh, nz), pd)
        self.z_x_bias = self.param("z_x_bias", nn.initializers.ones, (nz,), pd)
        self.z_b_kernel = self.param("z_b_kernel", nn.initializers.normal(0.01), (hh, nz), pd)
        self.bias_z = self.param("bias_z", nn.initializers.zeros, (nz, h), pd)

    def project_inputs(self, x: Array) -> tuple[Array, Array]:
        return self.input_proj(x), self.hyper_input_proj(x)

    def _z(self, hyper_out):
        z_h = _dot(hyper_out, self.z_h_kernel, self.dtype) + _up(self.z_h_bias)
        z_x = _dot(hyper_out, self.z_x_kernel, self.dtype) + _up(self.z_x_bias)
        z_b = _dot(hyper_out, self.z_b_kernel, self.dtype)
        return z_h, z_x, z_b

    def step(self, carry, projected, deterministic: Optional[bool] = None, diagnostics: bool = False):
        h, hh = carry
        main_x, hyper_x = projected
        new_hh = jnp.tanh(hyper_x + _dot(h, self.hyper_main_kernel, self.dtype)
                          + _dot(hh, self.hyper_recurrent_kernel, self.dtype) + _up(self.hyper_bias))
        hyper_out = new_hh if self.hyper_output == "current" else _up(hh)
        z_h, z_x, z_b = self._z(hyper_out)
        rec = _dot(h, self.recurrent_kernel, self.dtype)
        nz, units = self.embedding_size, self.features
        if self.weights == "scaled":
            pre = (z_h @ _up(self.scale_h)) * rec + (z_x @ _up(self.scale_x)) * main_x
        else:
            rec = rec.reshape(rec.shape[:-1] + (nz, units))
            xs = main_x.reshape(main_x.shape[:-1] + (nz, units))
            pre = jnp.einsum("bn,bnh->bh", z_h, rec) + jnp.einsum("bn,bnh->bh", z_x, xs)
        pre = pre + z_b @ _up(self.bias_z) + _up(self.bias)
        new_h = jnp.tanh(pre)
        out = new_h if self.dtype is None else new_h.astype(self.dtype)
        diag = {}
        if diagnostics:
            zh_new, _, _ = self._z(new_hh)
            zh_old, _, _ = self._z(_up(hh))
            if self.weights == "scaled":
                delta = (zh_new - zh_old) @ _up(self.scale_h)
                change = _scaled_weight_change(delta[:, None, :], self.recurrent_kernel, 1)
            else:
                w = _up(self.recurrent_kernel).reshape(units, nz, units)
                gram = jnp.einsum("inj,imj->nm", w, w)  # <W_hz[n], W_hz[m]>_F
                dz = zh_new - zh_old
                change = jnp.sqrt(jnp.einsum("bn,nm,bm->b", dz, gram, dz)
                                  / jnp.einsum("bn,nm,bm->b", zh_new, gram, zh_new))[:, None]
            diag = {"weight_change": change, "tanh_c": new_h}
        return (new_h, new_hh), out, diag

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        return zero_carry("hyperrnn", _batch_shape(input_shape, self.vocab_size), self.features,
                          self.hyper_features)


# ----------------------------------------------------------------------------------------------------------
# Carries.


def _batch_shape(input_shape, vocab_size) -> tuple[int, ...]:
    # Token ids have no feature axis.
    return tuple(input_shape) if vocab_size is not None and len(input_shape) == 1 else tuple(input_shape[:-1])


def zero_carry(kind: str, batch_shape, features: int, hyper_features: int = 0):
    """All-zero float32 carry of a cell kind ('lstm', 'ln_lstm', 'hyperlstm', 'ln_hyperlstm', 'hyperrnn')."""
    batch_shape = tuple(batch_shape) if isinstance(batch_shape, (tuple, list)) else (batch_shape,)
    z = lambda n: jnp.zeros(batch_shape + (n,), jnp.float32)  # noqa: E731
    if kind in ("lstm", "ln_lstm"):
        return (z(features), z(features))
    if kind in ("hyperlstm", "ln_hyperlstm"):
        return ((z(features), z(features)), (z(hyper_features), z(hyper_features)))
    if kind == "hyperrnn":
        return (z(features), z(hyper_features))
    raise ValueError(f"unknown cell kind {kind!r}")
