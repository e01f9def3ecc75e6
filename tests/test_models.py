"""experiments/models.py: config.model -> CharLM with every cell option reachable, strict one-line errors."""

import jax.numpy as jnp
import ml_collections
import pytest

from configs import ptb_char
from experiments import models
from hyper import cells
from hyper.char_lm import CharLM


def _cell(**kw):
  return ml_collections.ConfigDict(kw)


@pytest.mark.parametrize(
  'name,cls,layer_norm',
  [
    ('lstm', cells.LSTMCell, None),
    ('ln_lstm', cells.LayerNormLSTMCell, None),
    ('hyperlstm', cells.HyperLSTMCell, False),
    ('ln_hyperlstm', cells.HyperLSTMCell, True),
    ('hyperrnn', cells.HyperRNNCell, None),
  ],
)
def test_names_map_to_cell_classes(name, cls, layer_norm):
  cell = models.make_cell(_cell(name=name, features=8))
  assert type(cell) is cls and cell.features == 8  # pylint: disable=unidiomatic-typecheck
  if layer_norm is not None:
    assert cell.layer_norm is layer_norm


def test_every_option_goes_straight_to_the_cell():
  rnn = models.make_cell(_cell(name='hyperrnn', features=8, weights='full', hyper_output='previous'))
  assert (rnn.weights, rnn.hyper_output) == ('full', 'previous')
  hyper = models.make_cell(
    _cell(
      name='ln_hyperlstm',
      features=8,
      hyper_recurrent_dropout=0.2,
      remat=False,
      forget_bias=0.5,
      z_init='random_embedding',
      dtype='bfloat16',
    )
  )
  assert (hyper.hyper_recurrent_dropout, hyper.remat, hyper.forget_bias, hyper.z_init) == (
    0.2,
    False,
    0.5,
    'random_embedding',
  )
  assert hyper.dtype == jnp.bfloat16
  # The paper rows' configs: every cell field of the config reaches the cell.
  config = ptb_char.get_config('ln_hyperlstm1000')
  config.model.cell.z_init = 'random_projection'  # what --config.model.cell.z_init=... sets
  lm = models.make_char_lm(config.model, 50)
  assert isinstance(lm, CharLM) and lm.vocab_size == 50
  for key, value in config.model.cell.items():
    if key != 'name':
      assert getattr(lm.cell, key) == (jnp.dtype(value) if key == 'dtype' else value), key
  assert (lm.num_layers, lm.input_dropout, lm.output_dropout) == (1, 0.1, 0.1)


def test_switching_the_name_drops_the_other_cells_options():
  # `--config.model.cell.name=lstm` on a HyperLSTM config: hyper_features etc. are not LSTM options.
  config = ptb_char.get_config('tiny')
  config.model.cell.name = 'lstm'
  cell = models.make_char_lm(config.model, 10).cell
  assert type(cell) is cells.LSTMCell and cell.features == 32  # pylint: disable=unidiomatic-typecheck


def test_unknown_names_and_options_are_one_line_errors():
  with pytest.raises(
    ValueError,
    match=r"^unknown cell name 'gru' .*choose one of: lstm, ln_lstm, hyperlstm, "
    r'ln_hyperlstm, hyperrnn$',
  ):
    models.make_cell(_cell(name='gru', features=8))
  with pytest.raises(
    ValueError,
    match=r'^unknown option\(s\) hyper_size for cell .*its options are: '
    r'features, .*hyper_features',
  ) as err:
    models.make_cell(_cell(name='ln_hyperlstm', features=8, hyper_size=3))
  assert '\n' not in str(err.value) and 'layer_norm' not in str(err.value)
  with pytest.raises(ValueError, match=r"^cell 'hyperlstm' means layer_norm=False"):
    models.make_cell(_cell(name='hyperlstm', features=8, layer_norm=True))
  config = ptb_char.get_config('tiny')
  config.model.features = 8  # the old flat layout
  with pytest.raises(
    ValueError,
    match=r'^unknown option\(s\) features in config.model for CharLM.*'
    r'cell options go under config.model.cell\)$',
  ):
    models.make_char_lm(config.model, 10)
