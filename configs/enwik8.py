"""Hutter Prize Wikipedia, enwik8 (paper section 4.3, Table 4; training details in appendix A.3.4).

`--config=configs/enwik8.py:<variant>`: one variant per row of Table 4, plus `tiny` for tests.
A.3.4: 205 symbols, 90M/5M/5M split, sequences of 250 characters, batch 128, Adam 0.001, gradient
clipping at global norm 1.0, hypernetwork of 256 units (512 for the 2048-unit model) with N_z = 64,
recurrent dropout keep 0.9 (no input/output dropout: the corpus is large).
"""

import ml_collections

from configs import common


def _row(cell: str, features: int, params: str, test_bpc: str, *, hyper_features: int = 256):
  def apply(config: ml_collections.ConfigDict) -> None:
    config.paper.params, config.paper.test = params, f'{test_bpc} bpc'  # Table 4.
    common.char_lm(
      config,
      cell=cell,
      features=features,
      num_layers=1,
      hyper_features=hyper_features,  # A.3.4: 256 (512 for ln_hyperlstm2048).
      embedding_size=64,  # A.3.4: N_z = 64.
      keep_input=1.0,
      keep_output=1.0,
      keep_recurrent=0.9,
      data='enwik8',
      seq_len=250,
      batch_size=128,
      learning_rate=0.001,
      grad_clip_norm=1.0,
      num_epochs=10.0,  # Upper bound; early stopping on validation bpc ends the run.
      eval_every_steps=2000,
    )  # 90M train characters / (128 * 250) = 2812 steps per epoch.
    config.eval.patience = 5  # Evaluations without a better validation bpc before stopping.
    config.checkpoint.every_steps = 2000

  return apply


def _tiny(config: ml_collections.ConfigDict) -> None:
  # A plain LSTM keeps this test config quick to compile; ptb_char:tiny covers the LN HyperLSTM.
  common.char_lm(
    config,
    cell='lstm',
    features=32,
    num_layers=1,
    hyper_features=16,
    embedding_size=8,
    keep_input=1.0,
    keep_output=1.0,
    keep_recurrent=0.9,
    data='synthetic',
    seq_len=25,
    batch_size=8,
    learning_rate=0.01,
    grad_clip_norm=1.0,
    num_epochs=-1.0,
    eval_every_steps=10,
  )
  config.train.num_steps = 30
  config.eval.max_batches = 4
  config.checkpoint.every_steps = 10
  config.log.every_steps = 5
  config.sample.length = 40


VARIANTS = {
  'lstm1800': _row('lstm', 1800, '14.81M', '1.470'),
  'lstm2000': _row('lstm', 2000, '18.06M', '1.461'),
  'ln_lstm1800': _row('ln_lstm', 1800, '14.82M', '1.402'),
  'hyperlstm1800': _row('hyperlstm', 1800, '18.71M', '1.391'),
  'ln_hyperlstm1800': _row('ln_hyperlstm', 1800, '18.78M', '1.353'),
  'ln_hyperlstm2048': _row('ln_hyperlstm', 2048, '26.54M', '1.340', hyper_features=512),
  'tiny': _tiny,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return common.select_variant('enwik8', VARIANTS, arg, default='ln_hyperlstm1800')
