"""`flax.nnx` versions of the cells, the stack, CharLM and the static hypernetworks: a thin layer over
`flax.nnx.bridge.ToNNX`, so that NNX code gets the same computation (and the same parameter names) as the
Linen modules.

    from flax import nnx
    from hyper import cells, nnx as hnnx

    cell = hnnx.Cell(cells.HyperLSTMCell(64, hyper_features=16), input_shape=(1, 32), rngs=nnx.Rngs(0))
    rnn = nnx.RNN(cell)                              # or nnx.scan over cell(carry, x)
    y = rnn(x)                                       # x [B, T, 32] -> [B, T, 64]

    lm = hnnx.Linen(CharLM(50, cell=cells.LSTMCell(256)), tokens, rngs=nnx.Rngs(0))
    logits, carry = lm(tokens)                       # the Linen module's __call__
    optimizer = nnx.Optimizer(lm, optax.adam(1e-3), wrt=nnx.Param)

What the layer adds to a bare `bridge.ToNNX(cell)` (which `nnx.RNN` cannot use):
- `num_feature_axes` (1 for float inputs, 0 for token ids) and NNX's `initialize_carry(input_shape, rngs)`
  argument order, which `nnx.RNN` calls;
- eager initialisation from an input shape (NNX modules own their parameters once built), so that
  `nnx.scan` / `nnx.RNN` see a fixed set of variables (a lazily initialised module inside a scan fails);
- a `deterministic` attribute, switched by `model.eval()` / `model.train()` (dropout draws from the
  module's own `rngs`, stream 'dropout');
- `params(model)` / `set_params(model, params)`: the Linen parameter dict (`module.init(...)['params']`
  layout) out of and into an NNX module, to move weights between the two APIs.
Parameters with Linen logical axis names keep them as NNX sharding metadata, not applied at creation
(`nnx.use_eager_sharding(False)`): place the state with `nnx.get_partition_spec` and the rules of
`hyper.partitioning`, or use the Linen modules with `hyper.partitioning` directly.
"""

from __future__ import annotations

import inspect
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx
from flax.nnx import bridge

Array = jax.Array


def _cell_call(module, carry, x, deterministic: bool):
  """One step of a `hyper.cells` cell (no diagnostics) or of any Flax cell (`cell(carry, x)`)."""
  if hasattr(module, 'step') and hasattr(module, 'project_inputs'):
    new_carry, y, _ = module.step(carry, module.project_inputs(x), deterministic, diagnostics=False)
    return new_carry, y
  return module(carry, x)


class Cell(nnx.Module):
  """A Linen recurrent cell as an NNX cell (`nnx.RNN(Cell(...))`, `nnx.scan`, `nnx.Optimizer`).

  Args:
    cell: an unbound Linen cell, e.g. `hyper.cells.HyperLSTMCell(1000)` or `flax.linen.GRUCell(8)`.
    input_shape: the shape of one step's input, [B, D] floats or [B] token ids (the cell then needs a
      `vocab_size`); only D (or the vocabulary) shapes the parameters.
    rngs: `nnx.Rngs` with a 'params' stream (and 'dropout' when the cell has recurrent dropout).
    deterministic: no dropout when True; `model.train()` / `model.eval()` switch it.
  """

  def __init__(
    self, cell: nn.Module, input_shape: tuple[int, ...], *, rngs: nnx.Rngs, deterministic: bool = True
  ):
    self.deterministic = deterministic
    self.token_inputs = getattr(cell, 'vocab_size', None) is not None and len(input_shape) == 1
    self.cell = bridge.ToNNX(cell, rngs=rngs)
    x = jnp.zeros(input_shape, jnp.int32 if self.token_inputs else jnp.float32)
    carry = cell.initialize_carry(jax.random.key(0), input_shape)
    with nnx.use_eager_sharding(False):
      bridge.lazy_init(self.cell, carry, x, True, method=_cell_call)

  @property
  def num_feature_axes(self) -> int:
    return 0 if self.token_inputs else 1

  def initialize_carry(self, input_shape: tuple[int, ...], rngs: nnx.Rngs | None = None):
    """The Linen cell's initial carry (NNX argument order: `nnx.RNN` calls it so)."""
    del rngs  # the carries of hyper.cells start from zeros
    return self.cell.to_nnx__module.initialize_carry(jax.random.key(0), input_shape)

  def __call__(self, carry, x: Array):
    """(carry, x_t) -> (new_carry, y_t), the Linen cell's step with the same parameters."""
    # Deterministic calls draw no rng, so they leave the module's state unchanged (a broadcast
    # module inside nnx.scan must not change).
    rngs = {} if self.deterministic else None
    return self.cell(carry, x, self.deterministic, method=_cell_call, rngs=rngs)


class Linen(nnx.Module):
  """Any Linen module of `hyper` (RecurrentStack, CharLM, StaticHypernetwork, ...) as an NNX module.

  Args:
    module: the unbound Linen module.
    *sample_args, **sample_kwargs: a sample call, as for Linen's `init` (shapes only matter).
    rngs: `nnx.Rngs` with a 'params' stream (and 'dropout' for dropout).
    deterministic: passed as `deterministic=` to calls of modules whose `__call__` takes it (unless
      the call gives it); `model.train()` / `model.eval()` switch it.
  Calling it calls the Linen module's `__call__` with the module's parameters.
  """

  def __init__(
    self, module: nn.Module, *sample_args, rngs: nnx.Rngs, deterministic: bool = True, **sample_kwargs
  ):
    self.deterministic = deterministic
    self.takes_deterministic = 'deterministic' in inspect.signature(type(module).__call__).parameters
    self.module = bridge.ToNNX(module, rngs=rngs)
    with nnx.use_eager_sharding(False):
      bridge.lazy_init(self.module, *sample_args, **sample_kwargs)

  def __call__(self, *args, **kwargs):
    if self.takes_deterministic:
      kwargs.setdefault('deterministic', self.deterministic)
    if kwargs.get('deterministic', False):
      kwargs.setdefault('rngs', {})  # no rng drawn: the module's state is unchanged
    return self.module(*args, **kwargs)

  @property
  def linen_module(self) -> nn.Module:
    """The wrapped (unbound) Linen module, for its methods that need no parameters
    (e.g. `CharLM.initialize_carry`)."""
    return self.module.to_nnx__module


def params(model: nnx.Module) -> dict[str, Any]:
  """The Linen parameter dict of a `Cell` / `Linen` model (as `module.init(...)['params']`, unboxed)."""
  inner = model.cell if isinstance(model, Cell) else model.module
  return nnx.to_pure_dict(nnx.state(inner, nnx.Param))


def set_params(model: nnx.Module, linen_params: dict[str, Any]) -> None:
  """Loads a Linen parameter dict (boxed or not) into a `Cell` / `Linen` model in place."""
  inner = model.cell if isinstance(model, Cell) else model.module
  state = nnx.state(inner, nnx.Param)
  nnx.replace_by_pure_dict(state, nn.unbox(linen_params))
  nnx.update(inner, state)
