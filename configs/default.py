"""The default experiment (`python launch.py`): an LN HyperLSTM character model on the synthetic corpus.

experiments/data/synthetic.py generates regime-switching text with nested brackets, where re-weighting
the recurrent matrices at every step (sec. 3.2) pays off. Sized to train in a few minutes on a 2-core
CPU; it reports train/valid bits per character, and leaves checkpoints, metrics, a generated sample and
a Figure 4-style weight-change plot in its workdir (runs/default).
"""

import ml_collections

from configs import common


def _default(config: ml_collections.ConfigDict) -> None:
  common.char_lm(
    config,
    cell='ln_hyperlstm',
    features=128,
    num_layers=1,
    hyper_features=32,  # Small hypernetwork, 1/4 of the main LSTM as in the paper's ratio for PTB.
    embedding_size=4,  # N_z as in A.3.3.
    keep_input=1.0,
    keep_output=1.0,
    keep_recurrent=1.0,  # 1M characters: dropout not needed.
    data='synthetic',
    seq_len=50,
    batch_size=32,
    learning_rate=0.003,
    grad_clip_norm=1.0,
    num_epochs=-1.0,
    eval_every_steps=200,
  )
  config.train.num_steps = 1000  # ~1.6M characters, a little over one pass of the 1M-character train split.
  config.eval.max_batches = 20  # 32 streams x 20 batches x 50 chars = 32k of the 50k validation characters.
  config.checkpoint.every_steps = 200
  config.log.every_steps = 50
  config.sample.length = 1000
  config.plots.weight_change = True  # Figure 4 style weight_change.png at the end of training.


VARIANTS = {'default': _default}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return common.select_variant('default', VARIANTS, arg, default='default')
