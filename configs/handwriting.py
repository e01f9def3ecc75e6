"""Handwriting generation (paper section 4.3, Table 5, Figure 7; Graves 2013 section 4).

`--config=configs/handwriting.py:<variant>`: the four rows of Table 5 on IAM-OnDB (`lstm900`,
`ln_lstm1000`, `hyperlstm900`, `ln_hyperlstm900`), the same four cells at a CPU size on the UNIPEN
lines of ../shared/data/strokes (`cpu_*`, the open stand-in for IAM-OnDB), an Omniglot row, and `tiny`
(synthetic lines, for tests).

Section 4.3: one recurrent layer, a mixture of 20 bivariate Gaussians and an end-of-stroke bit
(3 inputs, 121 outputs), batch 32, Adam, gradient clipping, lines shorter than 300 points dropped, a
random ±10% scale of the offsets. IAM-OnDB splits as Graves (2013) section 4: train on the task's
trainset + testset_t + testset_f (training, the larger validation set and the test set), validate on
testset_v (the smaller validation set) -- `data.split_lists = 'graves2013'`
(experiments/data/strokes.py IAM_SPLIT_LISTS). Table 5 reports that validation log-loss.
Values the text does not give (learning rate, clipping threshold, run length, hyper units) are marked
"ours" below.
"""

import ml_collections

from configs import common


def _cell(
  name: str,
  features: int,
  *,
  hyper_features: int = 128,
  embedding_size: int = 4,
  recurrent_dropout: float = 0.0,
) -> ml_collections.ConfigDict:
  cell = ml_collections.ConfigDict()
  cell.name = name  # 'lstm' | 'ln_lstm' | 'hyperlstm' | 'ln_hyperlstm' (tasks/handwriting.py make_cell).
  cell.features = features  # Units of the main LSTM (N_h).
  if 'hyper' in name:
    cell.hyper_features = hyper_features  # Units of the hypernetwork's LSTM (N_hat_h); ours: 128 as A.3.3.
    cell.embedding_size = embedding_size  # N_z; ours: 4 as A.3.3.
  cell.recurrent_dropout = recurrent_dropout  # Recurrent dropout on the cell update; 0 (no regulariser).
  return cell


def handwriting(
  config: ml_collections.ConfigDict,
  *,
  cell: ml_collections.ConfigDict,
  data: str,
  batch_size: int,
  window: int,
  min_length: int,
  learning_rate: float,
  grad_clip_norm: float,
  eval_every_steps: int,
  num_layers: int = 1,
) -> None:
  """Fills the handwriting task fields; every row passes its values explicitly."""
  config.task = 'handwriting'
  m = config.model
  m.cell = cell  # The recurrent cell of every layer, by name and keyword arguments.
  m.num_layers = num_layers  # Stacked recurrent layers (one in section 4.3; Graves used three).
  m.num_mixtures = 20  # M bivariate Gaussians: 6M + 1 = 121 outputs (section 4.3).
  m.min_log_sigma = -7.0  # Floor of log σ in normalised units (numerical safety, hyper/mdn.py).
  m.max_rho = 0.9999  # Bound of |ρ| (numerical safety, hyper/mdn.py).

  d = config.data
  d.name = data  # 'iam_ondb' (TFDS), 'unipen_lines' / 'omniglot' (npz), 'synthetic', or a .npz path.
  d.manual_dir = ''  # Folder with the official files ('' = $HYPER_DATA_DIR/strokes for the npz sets).
  d.data_dir = ''  # TFDS data_dir ('' = the tfds default).
  d.split_lists = 'graves2013'  # IAM-OnDB: which task lists make train/valid (strokes.IAM_SPLIT_LISTS).
  d.min_length = min_length  # Lines with fewer points are dropped (300: section 4.3).
  d.max_length = 0  # Lines with more points are dropped (0: keep all; long lines are read in windows).
  d.window = window  # Points per training window; the state is carried across a line's windows.
  d.augment_scale = 0.1  # Random scale of each line's Δx and Δy in [1 - a, 1 + a] (section 4.3: ±10%).
  d.synthetic_lines = (64, 16, 16)  # Lines per split of the 'synthetic' set.

  t = config.train
  t.batch_size = batch_size  # Streams of lines per step (section 4.3: 32).
  t.optimizer = 'adam'  # Section 4.3.
  t.learning_rate = learning_rate
  t.grad_clip_norm = grad_clip_norm  # Global-norm clipping (section 4.3 clips; the threshold is ours).
  config.eval.every_steps = eval_every_steps
  config.eval.batch_size = batch_size  # Streams per eval batch (every line read once, whole).
  config.eval.window = 0  # Points per eval window (0: data.window).
  config.eval.metric = 'nats_per_line'
  config.eval.splits = ('valid', 'test')

  s = config.sample
  s.length = 700  # Points drawn by --mode=sample and after training.
  s.temperature = 1.0  # τ of hyper/mdn.py adjust (1: the model's own distribution).
  s.bias = 0.0  # Graves' sampling bias b (eq. 61-62; 0: unbiased).
  s.prime_length = 0  # Points of a validation line read before sampling (0: unconditional).
  config.plots.weight_change = 'hyper' in cell.name  # Figure 7 picture and animation after training.


def _row(
  cell: str,
  features: int,
  *,
  data: str,
  hyper_features: int,
  num_steps: int = -1,
  num_epochs: float = -1.0,
  checkpoint_every_steps: int = 1000,
  window: int = 300,
  min_length: int = 300,
  sample_length: int = 700,
  paper_test: str = '',
):
  """A row of section 4.3's recipe (batch 32, Adam 0.001, clipping at 1.0 (ours), evaluation every 1,000
  steps) for one cell, size, data set and run length.

  paper_test: Table 5's validation log-loss; such a row is one of the paper's (IAM-OnDB, Graves' split,
  no separate test set) and stops early on validation nats per line.
  """

  def apply(config: ml_collections.ConfigDict) -> None:
    if paper_test:
      config.paper.test = f'{paper_test} nats'  # Table 5 (validation log-loss on IAM-OnDB).
    handwriting(
      config,
      cell=_cell(cell, features, hyper_features=hyper_features),
      data=data,
      batch_size=32,
      window=window,
      min_length=min_length,
      learning_rate=0.001,
      grad_clip_norm=1.0,  # ours
      eval_every_steps=1000,
    )
    config.train.num_steps = num_steps
    config.train.num_epochs = num_epochs
    config.checkpoint.every_steps = checkpoint_every_steps
    config.sample.length = sample_length
    if paper_test:
      config.eval.patience = 10  # Early stopping on validation nats per line.
      config.eval.splits = ('valid',)  # Graves' split has no separate test set.

  return apply


def _tiny(config: ml_collections.ConfigDict) -> None:
  handwriting(
    config,
    cell=_cell('hyperlstm', 16, hyper_features=8),
    data='synthetic',
    batch_size=4,
    window=20,
    min_length=30,
    learning_rate=0.01,
    grad_clip_norm=1.0,
    eval_every_steps=10,
  )
  config.model.num_mixtures = 3
  config.train.num_steps = 30
  config.checkpoint.every_steps = 10
  config.log.every_steps = 5
  config.sample.length = 40


CELLS = ('lstm', 'ln_lstm', 'hyperlstm', 'ln_hyperlstm')
# Table 5: variant -> (cell, units, validation nats). Hyper units 128, N_z 4 (ours, as A.3.3); the run
# length (at most 100 epochs, early stopping) is ours.
PAPER_ROWS = {
  'lstm900': ('lstm', 900, '-1055'),
  'ln_lstm1000': ('ln_lstm', 1000, '-1106'),
  'hyperlstm900': ('hyperlstm', 900, '-1162'),
  'ln_hyperlstm900': ('ln_hyperlstm', 900, '-1067'),
}

VARIANTS = {
  **{
    variant: _row(cell, units, data='iam_ondb', hyper_features=128, num_epochs=100.0, paper_test=test)
    for variant, (cell, units, test) in PAPER_ROWS.items()
  },
  # The four cells at 256 units (hyper 64) on UNIPEN lines for an equal step budget (README): 3,000 steps
  # are ~6 epochs of the 6,268 training lines of >= 300 points.
  **{
    f'cpu_{cell}256': _row(
      cell, 256, data='unipen_lines', hyper_features=64, num_steps=3000, checkpoint_every_steps=500
    )
    for cell in CELLS
  },
  'omniglot': _row(
    'ln_hyperlstm',
    256,
    data='omniglot',
    hyper_features=64,
    num_steps=3000,
    window=100,
    min_length=0,
    sample_length=80,
  ),
  'tiny': _tiny,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return common.select_variant('handwriting', VARIANTS, arg, default='hyperlstm900')
