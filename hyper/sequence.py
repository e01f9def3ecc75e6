"""Multi-layer recurrent sequence module: a stack of recurrent cells, one `scan` over time per layer.

The stack takes the cell as a value, as `flax.linen.RNN` does: `RecurrentStack(cell=HyperLSTMCell(1000))`.
The cell is a template: layer l is `cell.clone(name=f"layer_{l}")` (layers l >= 1 with `vocab_size=None`,
since their inputs are the previous layer's outputs), and each layer's carry comes from that cell's own
`initialize_carry`.

Per layer, the work that does not depend on the recurrence -- the input projections W_x x_t of all steps
(and the x-part of the hyper LSTM's input) -- is one big matmul over [T * B, D] outside the scan; only the
recurrent part (`cell.step`) runs inside it. Cells without `project_inputs` / `step` (e.g. `flax.linen`'s
own `LSTMCell` or `GRUCell`) are run as `cell(carry, x_t)` at every step.

Sharding: the carry is created sharded like the inputs' batch axis, and every step's new carry is kept
in the sharding of the carry it replaces, so the stack runs on meshes with explicit axis types
(`jax.make_mesh`'s default) as well as auto ones (`hyper.partitioning` has the rule table for the
parameters).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax.sharding import PartitionSpec as P

from hyper import partitioning

Array = jax.Array


def _batch_sharded(tree, batch_spec):
  """Reshards every leaf [B, ...] of `tree` to `batch_spec` on its leading axis, replicated elsewhere."""
  return jax.tree.map(lambda c: jax.sharding.reshard(c, P(batch_spec, *([None] * (c.ndim - 1)))), tree)


def _same_sharding(new, old):
  """`new` resharded to the sharding of `old`, leaf by leaf (a scan's carry keeps one sharding type)."""
  return jax.tree.map(partitioning.like, new, old)


def _has_step(cell) -> bool:
  return hasattr(cell, 'step') and hasattr(cell, 'project_inputs')


def _scan_body(cell, carry, xs, deterministic: bool, diagnostics: bool, explicit: bool):
  projected, reset, valid = xs  # reset, valid: [B] bool
  if reset is not None:
    carry = jax.tree.map(lambda c: jnp.where(reset[:, None], jnp.zeros_like(c), c), carry)
  if _has_step(cell):
    new_carry, out, diag = cell.step(carry, projected, deterministic, diagnostics=diagnostics)
  else:
    (new_carry, out), diag = cell(carry, projected), {}
  if valid is not None:
    # Past an example's length: carry frozen, outputs and diagnostics zero.
    new_carry = jax.tree.map(lambda n, o: jnp.where(valid[:, None], n, o.astype(n.dtype)), new_carry, carry)
    out = jnp.where(valid[:, None], out, jnp.zeros_like(out))
    diag = jax.tree.map(lambda d: jnp.where(valid[:, None], d, jnp.zeros_like(d)), diag)
  if explicit:
    new_carry = _same_sharding(new_carry, carry)
  return new_carry, (out, diag)


class RecurrentStack(nn.Module):
  """`num_layers` layers of one recurrent cell over [B, T, D] inputs (or [B, T] token ids).

  Attributes:
    cell: the cell of every layer, an unbound module (a template): a `hyper.cells` cell
      (`LSTMCell`, `LayerNormLSTMCell`, `HyperLSTMCell`, `HyperRNNCell`) or any Flax recurrent cell
      (`cell(carry, x) -> (carry, y)`, `initialize_carry(rng, input_shape)`). All its options
      (units, dropout, dtype, `remat`, ...) are the cell's own. For token ids give the cell a
      `vocab_size` (`hyper.cells` cells): the first layer's one-hot @ W_x is then a gather; layers
      l >= 1 get `vocab_size=None`.
    num_layers: stacked layers; layer l >= 1 reads the outputs of layer l - 1.
    input_dropout: dropout on the first layer's input (rng stream 'dropout'). For token ids (one-hot
      input) it is applied exactly as dropout on the one-hot vector would act: the whole projected
      input of a token is dropped (and kept ones scaled by 1 / (1 - rate)).
    unroll: `scan` unroll factor.
  """

  cell: nn.Module
  num_layers: int = 1
  input_dropout: float = 0.0
  unroll: int = 1

  @nn.nowrap
  def layer_cell(self, layer: int, parent: Any = None) -> nn.Module:
    """The cell of layer `layer` (unbound unless `parent` is given)."""
    updates = {}
    if layer > 0 and getattr(self.cell, 'vocab_size', None) is not None:
      updates['vocab_size'] = None
    return self.cell.clone(parent=parent, name=f'layer_{layer}', **updates)

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array | None, input_shape: tuple[int, ...]):
    """The initial carry: a tuple with one carry per layer, each from the layer cell's `initialize_carry`.

    Args:
      rng: passed to the cells (those of `hyper.cells` start from zeros and ignore it); None: a fixed key.
      input_shape: the shape of the stack's inputs, [B, T, D] or [B, T] for token ids (any batch
        dimensions before T).
    Works on an unbound module.
    """
    if len(input_shape) < 2:
      raise ValueError(f'input_shape must be [B, T, D] or [B, T] (token ids), got {tuple(input_shape)}')
    rng = jax.random.key(0) if rng is None else rng
    batch, features = tuple(input_shape[:1]), tuple(input_shape[2:])
    carries = []
    for layer in range(self.num_layers):
      cell = self.layer_cell(layer)
      carries.append(cell.initialize_carry(jax.random.fold_in(rng, layer), batch + features))
      features = (cell.features,)  # the next layer reads this layer's outputs
    return tuple(carries)

  @nn.compact
  def __call__(
    self,
    inputs: Array,
    carry=None,
    *,
    lengths: Array | None = None,
    reset: Array | None = None,
    deterministic: bool = True,
    return_diagnostics: bool = False,
  ):
    """Runs the stack.

    Args:
      inputs: [B, T, D] float, or [B, T] int token ids (the cell then needs a `vocab_size`).
      carry: per-layer carries (from `initialize_carry` or a previous call); None: the cells' initial
        carries, sharded like `inputs` along the batch.
      lengths: optional int [B]: steps t >= lengths[b] are padding: the carry is frozen at its value
        after step lengths[b] - 1 (so the final carry is each example's last real state) and outputs
        and diagnostics there are zero.
      reset: optional bool [B, T]: where True, the carry is reset to zero before that step (e.g. at
        document boundaries in a packed stream).
      deterministic: no dropout when True.
      return_diagnostics: also return per-layer diagnostics (`hyper.cells` cells; empty otherwise).

    Returns:
      (outputs [B, T, units], final_carry), plus, with return_diagnostics, a dict
      {'layer_<l>': {'weight_change': [B, T, 4], 'weight_change_x': [B, T, 4], 'tanh_c': [B, T, H]}}
      ('weight_change*' per gate, see `HyperLSTMCell`; zero for fixed-weight cells; [B, T, 1] and no
      'weight_change_x' for the HyperRNN).
    """
    if inputs.ndim < 2:
      raise ValueError(f'inputs must be [B, T, D] floats or [B, T] token ids, got shape {inputs.shape}')
    steps = inputs.shape[1]
    batch_spec = partitioning.leading_spec(inputs, 1)  # None unless on a mesh with Explicit axes
    explicit = batch_spec is not None
    if carry is None:
      carry = self.initialize_carry(None, inputs.shape)
      if explicit:
        carry = _batch_sharded(carry, batch_spec[0])
    if len(carry) != self.num_layers:
      raise ValueError(
        f'carry has {len(carry)} layers, the stack {self.num_layers}; build it with initialize_carry'
      )
    x = jnp.swapaxes(inputs, 0, 1)  # time-major [T, B, ...]
    token_inputs = jnp.issubdtype(x.dtype, jnp.integer)
    if not token_inputs and self.input_dropout > 0:
      x = nn.Dropout(self.input_dropout)(x, deterministic=deterministic)
    valid = None
    if lengths is not None:
      valid = jnp.arange(steps)[:, None] < jnp.asarray(lengths)[None, :]  # [T, B]
    reset_tm = None if reset is None else jnp.swapaxes(jnp.asarray(reset, bool), 0, 1)

    body = functools.partial(
      _scan_body, deterministic=deterministic, diagnostics=return_diagnostics, explicit=explicit
    )
    scan = nn.scan(
      body,
      variable_broadcast='params',
      split_rngs={'params': False, 'dropout': True},
      in_axes=0,
      out_axes=0,
      unroll=self.unroll,
    )

    new_carry, diagnostics = [], {}
    for layer in range(self.num_layers):
      cell = self.layer_cell(layer, parent=self)
      # All T steps' input projections in one matmul (or gather).
      projected = cell.project_inputs(x) if _has_step(cell) else x
      if layer == 0 and token_inputs and self.input_dropout > 0 and not deterministic:
        keep = 1.0 - self.input_dropout
        token_mask = jax.random.bernoulli(self.make_rng('dropout'), keep, x.shape) / keep
        projected = jax.tree.map(
          lambda p, m=token_mask: p * m.reshape(m.shape + (1,) * (p.ndim - 2)), projected
        )
      layer_carry, (x, diag) = scan(cell, carry[layer], (projected, reset_tm, valid))
      new_carry.append(layer_carry)
      if return_diagnostics:
        diagnostics[f'layer_{layer}'] = jax.tree.map(lambda d: jnp.swapaxes(d, 0, 1), diag)
    outputs = jnp.swapaxes(x, 0, 1)
    if return_diagnostics:
      return outputs, tuple(new_carry), diagnostics
    return outputs, tuple(new_carry)
