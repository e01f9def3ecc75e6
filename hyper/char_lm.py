"""Character-level language model of sections 4.2-4.3: one-hot input, recurrent stack, softmax head."""

from __future__ import annotations

from typing import Any

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

      lm = CharLM(vocab_size=50, cell=HyperLSTMCell(1000, recurrent_dropout=0.1), output_dropout=0.1)

  Attributes:
    vocab_size: number of symbols (50 for PTB, 205 for enwik8).
    cell: the recurrent cell of every layer, an unbound module such as `LSTMCell(1000)` or
      `HyperLSTMCell(1000, hyper_features=128, embedding_size=4)` (see `RecurrentStack`); it holds all
      cell options (units, recurrent dropout, dtype, remat, ...). Leave its `vocab_size` unset: CharLM
      gives the first layer `vocab_size` (a different value set on the cell is an error).
    num_layers: stacked layers.
    input_dropout, output_dropout: dropout rates on the one-hot input and on the top layer's output
      (rng stream 'dropout'); the recurrent dropout rate is the cell's.
    unroll: `scan` unroll factor.
    dtype, param_dtype: computation and parameter dtypes of the softmax head; None: the cell's (logits
      are always float32).
  """

  vocab_size: int
  cell: nn.Module
  num_layers: int = 1
  input_dropout: float = 0.0
  output_dropout: float = 0.0
  unroll: int = 1
  dtype: Any = None
  param_dtype: Any = None

  @nn.nowrap
  def stack(self, **kwargs) -> RecurrentStack:
    """The recurrent stack (unbound unless `parent` is passed), first layer reading token ids."""
    vocab = getattr(self.cell, 'vocab_size', None)
    if vocab is not None and vocab != self.vocab_size:
      raise ValueError(
        f"the cell's vocab_size ({vocab}) differs from CharLM's ({self.vocab_size}); "
        "leave the cell's vocab_size unset"
      )
    return RecurrentStack(
      cell=self.cell.clone(vocab_size=self.vocab_size),
      num_layers=self.num_layers,
      input_dropout=self.input_dropout,
      unroll=self.unroll,
      **kwargs,
    )

  @nn.nowrap
  def initialize_carry(self, batch_size: int):
    """Initial carry for `batch_size` streams (one carry per layer); works on an unbound module."""
    return self.stack(parent=None).initialize_carry(None, (batch_size, 1))

  @nn.compact
  def __call__(
    self,
    tokens: Array,
    carry=None,
    *,
    deterministic: bool = True,
    return_diagnostics: bool = False,
    lengths: Array | None = None,
    reset: Array | None = None,
  ):
    """tokens int [B, T] (T may be 1 for step-by-step sampling; pass the returned carry back in).

    Returns (logits float32 [B, T, V], new_carry), plus the stack's diagnostics dict
    ({'layer_<l>': {'weight_change': [B, T, 4], 'weight_change_x': [B, T, 4], 'tanh_c': [B, T, H]}})
    when `return_diagnostics`.
    """
    result = self.stack(name='rnn')(
      tokens.astype(jnp.int32),
      carry,
      lengths=lengths,
      reset=reset,
      deterministic=deterministic,
      return_diagnostics=return_diagnostics,
    )
    outputs, new_carry = result[0], result[1]
    outputs = nn.Dropout(self.output_dropout)(outputs, deterministic=deterministic)
    dtype = self.dtype if self.dtype is not None else getattr(self.cell, 'dtype', None)
    param_dtype = self.param_dtype or getattr(self.cell, 'param_dtype', None) or jnp.float32
    logits = nn.Dense(
      self.vocab_size,
      dtype=dtype,
      param_dtype=param_dtype,
      name='softmax',
      kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), ('embed', 'vocab')),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ('vocab',)),
    )(outputs)
    logits = logits.astype(jnp.float32)
    if return_diagnostics:
      return logits, new_carry, result[2]
    return logits, new_carry
