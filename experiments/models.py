"""Config -> model: the only place where cell names ('lstm', 'ln_hyperlstm', ...) become cell modules.

`config.model.cell` is a ConfigDict with a `name` and the cell's options; every key besides `name` is
passed straight to the cell class (so every option of every cell is reachable from a config and the
command line, e.g. `--config.model.cell.z_init=random_embedding`), and the other keys of `config.model`
go straight to `hyper.char_lm.CharLM`. There is no hand-copied list of options in between:

    config.model.cell = ConfigDict(dict(name='ln_hyperlstm', features=1000, hyper_features=128,
                                        embedding_size=4, recurrent_dropout=0.1))
    config.model.num_layers = 1; config.model.input_dropout = 0.1; config.model.output_dropout = 0.1

A key that is an option of another cell but not of the chosen one (e.g. `hyper_features` after
`--config.model.cell.name=lstm`) is left out, since a command line cannot delete keys; a key that is an
option of no cell, or an unknown name, is a one-line error listing the allowed ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from hyper import cells as cells_lib
from hyper import char_lm

# name -> (cell class, fixed options that the name stands for)
CELLS: dict[str, tuple[type, dict[str, Any]]] = {
  'lstm': (cells_lib.LSTMCell, {}),
  'ln_lstm': (cells_lib.LayerNormLSTMCell, {}),
  'hyperlstm': (cells_lib.HyperLSTMCell, {'layer_norm': False}),
  'ln_hyperlstm': (cells_lib.HyperLSTMCell, {'layer_norm': True}),
  'hyperrnn': (cells_lib.HyperRNNCell, {}),
}
_DTYPE_KEYS = ('dtype', 'param_dtype')
_NOT_OPTIONS = ('parent', 'name')  # dataclass fields of every flax module that are not cell options


def _options(cls: type) -> list[str]:
  return [f.name for f in dataclasses.fields(cls) if f.init and f.name not in _NOT_OPTIONS]


def _with_dtypes(options: Mapping[str, Any]) -> dict[str, Any]:
  """Strings such as 'bfloat16' under dtype / param_dtype become jnp dtypes ('' or None: the default)."""
  out = dict(options)
  for key in _DTYPE_KEYS:
    if key in out and isinstance(out[key], str):
      out[key] = jnp.dtype(out[key]) if out[key] else None
  return out


def make_cell(cell_config: Mapping[str, Any]) -> nn.Module:
  """The unbound cell module that `cell_config` (`name` plus the cell's options) describes."""
  options = dict(cell_config)
  name = options.pop('name', None)
  if name not in CELLS:
    raise ValueError(
      f'unknown cell name {name!r} (config.model.cell.name); choose one of: {", ".join(CELLS)}'
    )
  cls, fixed = CELLS[name]
  allowed = _options(cls)
  any_cell = {option for other, _ in CELLS.values() for option in _options(other)}
  unknown = sorted(k for k in options if k not in any_cell)
  if unknown:
    raise ValueError(
      f'unknown option(s) {", ".join(unknown)} for cell {name!r} (config.model.cell); '
      f'its options are: {", ".join(k for k in allowed if k not in fixed)}'
    )
  for key in fixed:
    if key in options and options[key] != fixed[key]:
      raise ValueError(
        f'cell {name!r} means {key}={fixed[key]!r}; remove config.model.cell.{key} or '
        'choose another cell name'
      )
  kwargs = {k: v for k, v in _with_dtypes(options).items() if k in allowed}
  return cls(**kwargs, **fixed)


def make_char_lm(
  model_config: Mapping[str, Any], vocab_size: int, make: Callable[[Mapping[str, Any]], nn.Module] = make_cell
) -> char_lm.CharLM:
  """`CharLM(vocab_size, cell=make_cell(model_config.cell), **the other keys of model_config)`."""
  rest = dict(model_config)
  if 'cell' not in rest or isinstance(rest['cell'], str):
    raise ValueError(
      'config.model.cell must be a ConfigDict with a name and the cell options, e.g. '
      "ConfigDict(dict(name='ln_hyperlstm', features=1000)); see configs/common.py"
    )
  cell = make(rest.pop('cell'))
  allowed = _options(char_lm.CharLM)
  unknown = sorted(k for k in rest if k not in allowed)
  if unknown:
    raise ValueError(
      f'unknown option(s) {", ".join(unknown)} in config.model for CharLM; its options are: '
      f'{", ".join(k for k in allowed if k not in ("vocab_size", "cell"))} (cell options go '
      'under config.model.cell)'
    )
  return char_lm.CharLM(vocab_size=vocab_size, cell=cell, **_with_dtypes(rest))
