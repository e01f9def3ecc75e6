"""Character-level language model of sections 4.2-4.3: one-hot input, recurrent stack, softmax head."""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from hyper.sequence import RecurrentStack

Array = jax.Array


class CharLM(nn.Module):
    """tokens [B, T] -> logits [B, T, vocab_size] for next-symbol prediction.

    The input is one-hot over the vocabulary (as in the paper's parameter counts: the first layer's W_x is
    [vocab_size, 4 units]); one-hot @ W_x is done as a row gather. Input dropout acts on the one-hot vector
    (whole symbols dropped), output dropout on the last layer's outputs before the dense softmax head.

    Attributes:
      vocab_size: number of symbols (50 for PTB, 205 for enwik8).
      cell: 'lstm' | 'ln_lstm' | 'hyperlstm' | 'ln_hyperlstm' | 'hyperrnn'.
      features, num_layers: main units and layers.
      hyper_features, embedding_size: hyper units and N_z.
      input_dropout, output_dropout, recurrent_dropout: dropout rates (rng stream 'dropout').
      hyper_output: 'current' (ĥ_t, reference code) or 'previous' (ĥ_{t-1}, paper's text).
      dtype, param_dtype: computation and parameter dtypes (logits are always float32).
    """

    vocab_size: int
    cell: str = "ln_hyperlstm"
    features: int = 1000
    num_layers: int = 1
    hyper_features: int = 128
    embedding_size: int = 4
    input_dropout: float = 0.0
    output_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    hyper_output: str = "current"
    dtype: Any = None
    param_dtype: Any = jnp.float32
    unroll: int = 1
    remat: Optional[str] = None  # see RecurrentStack
    z_init: str = "reference"  # see hyper.cells.z_initializers

    @nn.nowrap
    def _stack(self, **kwargs) -> RecurrentStack:
        return RecurrentStack(
            cell=self.cell, num_layers=self.num_layers, features=self.features,
            hyper_features=self.hyper_features, embedding_size=self.embedding_size,
            recurrent_dropout=self.recurrent_dropout, input_dropout=self.input_dropout,
            hyper_output=self.hyper_output, vocab_size=self.vocab_size, dtype=self.dtype,
            param_dtype=self.param_dtype, unroll=self.unroll, remat=self.remat,
            z_init=self.z_init, **kwargs)

    @nn.nowrap
    def initialize_carry(self, batch_size: int):
        """Zero carry for `batch_size` streams; works on an unbound module."""
        return self._stack(parent=None).initialize_carry(batch_size)

    @nn.compact
    def __call__(self, tokens: Array, carry=None, *, deterministic: bool = True,
                 return_diagnostics: bool = False, lengths: Optional[Array] = None,
                 reset: Optional[Array] = None):
        """tokens int [B, T] (T may be 1 for step-by-step sampling; pass the returned carry back in).

        Returns (logits float32 [B, T, V], new_carry), plus the stack's diagnostics dict
        ({'layer_<l>': {'weight_change': [B, T, 4], 'weight_change_x': [B, T, 4], 'tanh_c': [B, T, H]}})
        when `return_diagnostics`.
        """
        result = self._stack(name="rnn")(
            tokens.astype(jnp.int32), carry, lengths=lengths, reset=reset, deterministic=deterministic,
            return_diagnostics=return_diagnostics)
        outputs, new_carry = result[0], result[1]
        outputs = nn.Dropout(self.output_dropout)(outputs, deterministic=deterministic)
        logits = nn.Dense(self.vocab_size, dtype=self.dtype, param_dtype=self.param_dtype,
                          name="softmax")(outputs).astype(jnp.float32)
        if return_diagnostics:
            return logits, new_carry, result[2]
        return logits, new_carry
