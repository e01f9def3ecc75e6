"""Multi-layer recurrent sequence module: a stack of `hyper.cells` cells, each run with one `scan` over time.

Per layer, the work that does not depend on the recurrence — the input projections W_x x_t of all steps
(and the x-part of the hyper LSTM's input) — is one big matmul over [T * B, D] outside the scan; only the
recurrent part (`cell.step`) runs inside it.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from hyper import cells as cells_lib

Array = jax.Array

CELL_KINDS = ("lstm", "ln_lstm", "hyperlstm", "ln_hyperlstm", "hyperrnn")


def make_cell(kind: str, features: int, *, hyper_features: int = 128, embedding_size: int = 4,
              recurrent_dropout: float = 0.0, forget_bias: float = 1.0, hyper_output: str = "current",
              vocab_size: Optional[int] = None, dtype=None, param_dtype=jnp.float32,
              name: Optional[str] = None, z_init: str = "reference"):
    """The cell for a kind name ('lstm' | 'ln_lstm' | 'hyperlstm' | 'ln_hyperlstm' | 'hyperrnn')."""
    common = dict(vocab_size=vocab_size, dtype=dtype, param_dtype=param_dtype, name=name)
    if kind in ("lstm", "ln_lstm"):
        cls = cells_lib.LSTMCell if kind == "lstm" else cells_lib.LayerNormLSTMCell
        return cls(features, forget_bias=forget_bias, recurrent_dropout=recurrent_dropout, **common)
    if kind in ("hyperlstm", "ln_hyperlstm"):
        return cells_lib.HyperLSTMCell(
            features, hyper_features=hyper_features, embedding_size=embedding_size,
            layer_norm=kind == "ln_hyperlstm", recurrent_dropout=recurrent_dropout,
            forget_bias=forget_bias, hyper_output=hyper_output, z_init=z_init, **common)
    if kind == "hyperrnn":
        return cells_lib.HyperRNNCell(features, hyper_features=hyper_features,
                                      embedding_size=embedding_size, hyper_output=hyper_output, **common)
    raise ValueError(f"unknown cell kind {kind!r}; expected one of {CELL_KINDS}")


def _scan_body(cell, carry, xs, deterministic: bool, diagnostics: bool):
    projected, reset, valid = xs  # reset, valid: [B] bool
    if reset is not None:
        carry = jax.tree.map(lambda c: jnp.where(reset[:, None], jnp.zeros_like(c), c), carry)
    new_carry, out, diag = cell.step(carry, projected, deterministic, diagnostics=diagnostics)
    if valid is not None:
        # Past an example's length: carry frozen, outputs and diagnostics zero.
        new_carry = jax.tree.map(lambda n, o: jnp.where(valid[:, None], n, o.astype(n.dtype)),
                                 new_carry, carry)
        out = jnp.where(valid[:, None], out, jnp.zeros_like(out))
        diag = jax.tree.map(lambda d: jnp.where(valid[:, None], d, jnp.zeros_like(d)), diag)
    return new_carry, (out, diag)


class RecurrentStack(nn.Module):
    """`num_layers` recurrent layers of one cell kind over [B, T, D] inputs (or [B, T] token ids).

    Attributes:
      cell: 'lstm' | 'ln_lstm' | 'hyperlstm' | 'ln_hyperlstm' | 'hyperrnn' (see `hyper.cells`).
      num_layers, features: layers and main units per layer (the second layer's input is `features`).
      hyper_features, embedding_size: hyper units and N_z (hypernetwork cells).
      recurrent_dropout: candidate dropout rate of the main cells (Semeniuta et al.).
      input_dropout: dropout on the first layer's input. For token ids (one-hot input) it is applied
        exactly as dropout on the one-hot vector would act: the whole projected input of a token is
        dropped (and kept ones scaled by 1 / (1 - rate)).
      vocab_size: when set, inputs are int token ids standing for one-hot vectors over `vocab_size`
        symbols; the first layer's one-hot @ W_x is a gather.
      hyper_output: 'current' (ĥ_t, reference code) or 'previous' (ĥ_{t-1}, paper's text).
      dtype, param_dtype: computation dtype of the matmuls (e.g. jnp.bfloat16 on GPU/TPU; the gate
        arithmetic and the carry stay float32) and parameter dtype.
      unroll: `scan` unroll factor.
      z_init: initialisation of the HyperLSTM's z projections (`hyper.cells.z_initializers`).
      remat: rematerialise the step in the backward pass: None (save every residual), 'dots' (save only
        matmul results, recompute the elementwise work: less memory traffic) or 'full'.
    """

    cell: str = "ln_hyperlstm"
    num_layers: int = 1
    features: int = 1000
    hyper_features: int = 128
    embedding_size: int = 4
    recurrent_dropout: float = 0.0
    input_dropout: float = 0.0
    forget_bias: float = 1.0
    hyper_output: str = "current"
    vocab_size: Optional[int] = None
    dtype: Any = None
    param_dtype: Any = jnp.float32
    unroll: int = 1
    remat: Optional[str] = None
    z_init: str = "reference"

    @nn.nowrap
    def initialize_carry(self, batch_size: int):
        """Zero carry, a tuple with one cell carry per layer; works on an unbound module."""
        return tuple(cells_lib.zero_carry(self.cell, (batch_size,), self.features, self.hyper_features)
                     for _ in range(self.num_layers))

    @nn.compact
    def __call__(self, inputs: Array, carry=None, *, lengths: Optional[Array] = None,
                 reset: Optional[Array] = None, deterministic: bool = True,
                 return_diagnostics: bool = False):
        """Runs the stack.

        Args:
          inputs: [B, T, D] float, or [B, T] int token ids when `vocab_size` is set.
          carry: per-layer carries (from `initialize_carry` or a previous call); None: zeros.
          lengths: optional int [B]: steps t >= lengths[b] are padding: the carry is frozen at its value
            after step lengths[b] - 1 (so the final carry is each example's last real state) and outputs
            and diagnostics there are zero.
          reset: optional bool [B, T]: where True, the carry is reset to zero before that step (e.g. at
            document boundaries in a packed stream).
          deterministic: no dropout when True.
          return_diagnostics: also return per-layer diagnostics.

        Returns:
          (outputs [B, T, features], final_carry), plus, with return_diagnostics, a dict
          {'layer_<l>': {'weight_change': [B, T, 4], 'weight_change_x': [B, T, 4], 'tanh_c': [B, T, H]}}
          ('weight_change*' per gate, see `HyperLSTMCell`; zero for fixed-weight cells; [B, T, 1] and no
          'weight_change_x' for the HyperRNN).
        """
        batch, steps = inputs.shape[0], inputs.shape[1]
        if carry is None:
            carry = self.initialize_carry(batch)
        if len(carry) != self.num_layers:
            raise ValueError(f"carry has {len(carry)} layers, the stack {self.num_layers}")
        x = jnp.swapaxes(inputs, 0, 1)  # time-major [T, B, ...]
        token_inputs = jnp.issubdtype(x.dtype, jnp.integer)
        if not token_inputs and self.input_dropout > 0:
            x = nn.Dropout(self.input_dropout)(x, deterministic=deterministic)
        valid = None
        if lengths is not None:
            valid = jnp.arange(steps)[:, None] < jnp.asarray(lengths)[None, :]  # [T, B]
        reset_tm = None if reset is None else jnp.swapaxes(jnp.asarray(reset, bool), 0, 1)

        body = functools.partial(_scan_body, deterministic=deterministic, diagnostics=return_diagnostics)
        if self.remat is not None:
            policies = {"dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable, "full": None}
            body = nn.remat(body, policy=policies[self.remat], prevent_cse=False)
        scan = nn.scan(
            body,
            variable_broadcast="params",
            split_rngs={"params": False, "dropout": True},
            in_axes=0, out_axes=0, unroll=self.unroll)

        new_carry, diagnostics = [], {}
        for layer in range(self.num_layers):
            cell = make_cell(
                self.cell, self.features, hyper_features=self.hyper_features,
                embedding_size=self.embedding_size, recurrent_dropout=self.recurrent_dropout,
                forget_bias=self.forget_bias, hyper_output=self.hyper_output,
                vocab_size=self.vocab_size if layer == 0 else None, dtype=self.dtype,
                param_dtype=self.param_dtype, name=f"layer_{layer}", z_init=self.z_init)
            projected = cell.project_inputs(x)  # all T steps in one matmul (or gather)
            if layer == 0 and token_inputs and self.input_dropout > 0 and not deterministic:
                keep = 1.0 - self.input_dropout
                token_mask = jax.random.bernoulli(self.make_rng("dropout"), keep, x.shape) / keep
                projected = jax.tree.map(
                    lambda p: p * token_mask.reshape(token_mask.shape + (1,) * (p.ndim - 2)), projected)
            layer_carry, (x, diag) = scan(
                cell, carry[layer], (projected, reset_tm, valid))
            new_carry.append(layer_carry)
            if return_diagnostics:
                diagnostics[f"layer_{layer}"] = jax.tree.map(lambda d: jnp.swapaxes(d, 0, 1), diag)
        outputs = jnp.swapaxes(x, 0, 1)
        if return_diagnostics:
            return outputs, tuple(new_carry), diagnostics
        return outputs, tuple(new_carry)
