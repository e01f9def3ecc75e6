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


def _paper_row(name: str, features: int, test: str):
  def apply(config: ml_collections.ConfigDict) -> None:
    config.paper.test = f'{test} nats'  # Table 5 (validation log-loss on IAM-OnDB).
    handwriting(
      config,
      cell=_cell(name, features),
      data='iam_ondb',
      batch_size=32,
      window=300,
      min_length=300,
      learning_rate=0.001,
      grad_clip_norm=1.0,  # ours
      eval_every_steps=1000,
    )
    config.train.num_epochs = 100.0  # Upper bound (ours); early stopping on validation nats per line.
    config.eval.patience = 10
    config.eval.splits = ('valid',)  # Graves' split has no separate test set.

  return apply


def _cpu_row(name: str, features: int = 256):
  """The four cells at 256 units (hyper 64) on UNIPEN lines for an equal step budget (README)."""

  def apply(config: ml_collections.ConfigDict) -> None:
    handwriting(
      config,
      cell=_cell(name, features, hyper_features=64),
      data='unipen_lines',
      batch_size=32,
      window=300,
      min_length=300,
      learning_rate=0.001,
      grad_clip_norm=1.0,
      eval_every_steps=1000,
    )
    config.train.num_steps = 3000  # ~6 epochs of the 6,268 training lines of >= 300 points.
    config.checkpoint.every_steps = 500

  return apply


def _omniglot(config: ml_collections.ConfigDict) -> None:
  handwriting(
    config,
    cell=_cell('ln_hyperlstm', 256, hyper_features=64),
    data='omniglot',
    batch_size=32,
    window=100,
    min_length=0,
    learning_rate=0.001,
    grad_clip_norm=1.0,
    eval_every_steps=1000,
  )
  config.train.num_steps = 3000
  config.sample.length = 80


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


VARIANTS = {
  'lstm900': _paper_row('lstm', 900, '-1055'),
  'ln_lstm1000': _paper_row('ln_lstm', 1000, '-1106'),
  'hyperlstm900': _paper_row('hyperlstm', 900, '-1162'),
  'ln_hyperlstm900': _paper_row('ln_hyperlstm', 900, '-1067'),
  'cpu_lstm256': _cpu_row('lstm'),
  'cpu_ln_lstm256': _cpu_row('ln_lstm'),
  'cpu_hyperlstm256': _cpu_row('hyperlstm'),
  'cpu_ln_hyperlstm256': _cpu_row('ln_hyperlstm'),
  'omniglot': _omniglot,
  'tiny': _tiny,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return common.select_variant('handwriting', VARIANTS, arg, default='hyperlstm900')
