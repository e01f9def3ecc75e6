"""Machine translation (paper section 4.4, Table 6: WMT'14 En->Fr with GNMT, Wu et al. 2016).

`--config=configs/translation.py:<variant>`:
- `gnmt_lstm`, `gnmt_ln_hyperlstm`: the paper's two rows at GNMT's size (8 + 8 layers of 1024 units, 32k
  shared wordpieces, layer-norm HyperLSTM with 128 hyper units and N_z = 32), WMT'14 through TFDS
  (`wmt14_translate/fr-en`, test = newstest2014): for an accelerator with the data prepared.
- `cpu_lstm`, `cpu_ln_lstm`, `cpu_hyperlstm`, `cpu_ln_hyperlstm`: Tatoeba En->Fr on a 2-core CPU, all at one
  size (128 units, 2 + 2 layers), for the equal-step-budget comparison of the README.
- `multi30k_ln_hyperlstm`, `multi30k_lstm`: the CPU size on Multi30k (longer sentences).
- `tiny`: a generated copy task (tests).
"""

import ml_collections

from configs import common

CELLS = ('lstm', 'ln_lstm', 'hyperlstm', 'ln_hyperlstm')
# launch.py modes of this family ('translate': sentences from a file or stdin -> translations).
MODES = ('train', 'eval', 'sample', 'summary', 'translate')


def _cell(name: str, features: int, hyper_features: int, embedding_size: int) -> ml_collections.ConfigDict:
  """config.model.cell: a cell name (experiments/models.py) plus that cell's options."""
  cell = ml_collections.ConfigDict()
  cell.name = name  # 'lstm' | 'ln_lstm' | 'hyperlstm' | 'ln_hyperlstm' (hyper/cells.py).
  cell.features = features  # Units of every recurrent layer (GNMT: 1024).
  if name in ('hyperlstm', 'ln_hyperlstm'):
    cell.hyper_features = hyper_features  # Units of the HyperLSTM's small LSTM (Table 6: 128).
    cell.embedding_size = embedding_size  # N_z (Table 6: 32).
  return cell


def translation(
  config: ml_collections.ConfigDict,
  *,
  cell: str,
  features: int,
  hyper_features: int,
  embedding_size: int,
  embed_size: int,
  encoder_layers: int,
  decoder_layers: int,
  dropout: float,
  data: str,
  vocab_size: int,
  buckets: tuple[int, ...],
  tokens_per_batch: int,
  learning_rate: float,
  num_steps: int,
  eval_every_steps: int,
  beam_size: int,
  alpha: float,
  beta: float,
  label_smoothing: float,
) -> None:
  """Fills the translation task's fields; each variant passes its values explicitly."""
  config.task = 'translation'
  m = config.model
  m.cell = _cell(cell, features, hyper_features, embedding_size)
  m.embed_size = embed_size  # Subword embedding width (GNMT: 1024).
  m.encoder_layers = encoder_layers  # Encoder layers, the bidirectional bottom one included (GNMT: 8).
  m.decoder_layers = decoder_layers  # Decoder layers (GNMT: 8).
  m.residual_start = 2  # First layer (0-based) with a residual connection (GNMT: from the third layer).
  m.attention = 'additive'  # 'additive' (Bahdanau, as GNMT) or 'dot' (scaled dot product).
  m.attention_units = 0  # Hidden units of the additive attention net (0: the cell's features).
  m.dropout = dropout  # Dropout on every layer's input and on the softmax input (GNMT En->Fr: 0.2).
  m.share_embeddings = True  # One embedding for source and target (one joint subword vocabulary).
  m.dtype = ''  # Embedding/attention/softmax dtype ('' = float32; 'bfloat16' on accelerators).

  d = config.data
  d.name = data  # 'tatoeba' | 'multi30k' | 'copy' | 'tfds:wmt14_translate/fr-en'.
  d.data_dir = ''  # Folder with fra-eng.zip, multi30k/, newstest2014/ ('' = $HYPER_DATA_DIR/translation).
  d.src_lang = 'en'  # Source language (en or fr).
  d.tgt_lang = 'fr'  # Target language.
  d.valid_size = 3000  # Tatoeba: pairs (at least) drawn for validation, by groups sharing a sentence.
  d.test_size = 3000  # Tatoeba: pairs (at least) drawn for test.
  d.split_seed = 0  # Seed of the Tatoeba split (fixed: the README's splits) and of the copy task's data.
  d.vocab_size = vocab_size  # SentencePiece pieces, one vocabulary for both languages (GNMT: 32k).
  d.subword_type = 'unigram'  # SentencePiece model type ('unigram' or 'bpe').
  d.subword_model = ''  # Path of a SentencePiece model to use instead of training one (e.g. a run's).
  d.subword_cache = '~/.cache/hyper/subwords'  # Where trained SentencePiece models are cached ('' = off).
  d.buckets = buckets  # Length buckets in subwords (EOS included); longer training pairs are dropped.
  d.copy_train_size = 2000  # Copy task: training pairs.
  d.copy_eval_size = 64  # Copy task: valid and test pairs.

  t = config.train
  t.tokens_per_batch = tokens_per_batch  # Token slots per batch: pairs = tokens // bucket length.
  t.row_multiple = 8  # Batch rows are a multiple of this (times the process count), for sharding.
  t.batch_size = 8  # Rows of the (empty) carry; batches are sized by tokens_per_batch.
  t.num_steps = num_steps
  t.optimizer = 'adam'
  t.learning_rate = learning_rate
  t.grad_clip_norm = 5.0  # GNMT clips gradients at global norm 5.
  t.label_smoothing = label_smoothing  # 0: plain cross entropy.

  config.decode = ml_collections.ConfigDict()
  config.decode.beam_size = beam_size  # 1: greedy.
  config.decode.alpha = alpha  # GNMT length normalisation lp(Y) = ((5 + |Y|) / 6)^alpha.
  config.decode.beta = beta  # GNMT coverage penalty weight (0: off).
  config.decode.max_len_ratio = 1.5  # Decoded length limit: ratio * padded source length + offset.
  config.decode.max_len_offset = 5

  config.eval.every_steps = eval_every_steps
  config.eval.batch_size = 64  # Sentences per eval / decoding batch.
  config.eval.max_batches = -1  # Cap on valid batches (-1: all); test splits are always read whole.
  config.eval.metric = 'bleu'  # Higher is better.
  config.eval.extra_test = ''  # Extra test sets as eval splits, e.g. 'newstest2014,multi30k' (test only).
  config.eval.bleu_tokenize = '13a'  # sacrebleu tokenisation (13a: its default, WMT's mteval-v13a).
  config.checkpoint.every_steps = eval_every_steps
  config.sample.num_translations = 10  # Test sentences translated into translations.txt after training.


# The sizes and recipes of the rows (everything but the cell, the data and its buckets).
SIZES = {
  # GNMT (Wu et al. 2016) as section 4.4 uses it, for an accelerator.
  'gnmt': dict(
    features=1024,
    hyper_features=128,
    embedding_size=32,
    embed_size=1024,
    encoder_layers=8,
    decoder_layers=8,
    dropout=0.2,
    vocab_size=32000,
    tokens_per_batch=128 * 32,
    learning_rate=2e-4,  # GNMT's Adam phase.
    num_steps=300_000,
    eval_every_steps=5000,
    beam_size=8,
    alpha=0.2,
    beta=0.2,  # GNMT En->Fr.
    label_smoothing=0.0,
  ),
  # A 2-core CPU: every cell at the same size, budget and decoding; sized so that the README's 12 runs
  # (4 cells x 3 seeds, about 0.9 epochs of Tatoeba each) fit in about 2 hours of this machine.
  'cpu': dict(
    features=128,
    hyper_features=32,
    embedding_size=8,
    embed_size=128,
    encoder_layers=2,
    decoder_layers=2,
    dropout=0.0,  # 0.9 epochs of 136k pairs: under-fitting, not over-fitting, limits these runs.
    vocab_size=4000,
    tokens_per_batch=2048,
    learning_rate=2e-3,
    num_steps=1000,
    eval_every_steps=500,
    beam_size=4,
    alpha=0.6,
    beta=0.0,
    label_smoothing=0.1,
  ),
}
# Length buckets (subwords, EOS included) of each data set.
BUCKETS = {
  'tfds:wmt14_translate/fr-en': (16, 32, 48, 64, 96, 128),
  'tatoeba': (8, 16, 24, 32, 48),
  'multi30k': (16, 24, 32, 48, 64),
}


def _row(cell: str, size: str, data: str, paper_test_bleu: str = ''):
  """One cell at one of SIZES on one data set; paper_test_bleu: Table 6's newstest2014 BLEU of the row."""

  def apply(config: ml_collections.ConfigDict) -> None:
    if paper_test_bleu:
      config.paper.test = f'{paper_test_bleu} BLEU'  # Table 6, WMT'14 En->Fr newstest2014.
    translation(config, cell=cell, data=data, buckets=BUCKETS[data], **SIZES[size])
    # Valid BLEU during training on 1024 sentences (the shortest; newstest2013 for the paper rows); test
    # splits are read whole (experiments/tasks/translation.py _eval_plan).
    config.eval.max_batches = 16

  return apply


def _tiny(config: ml_collections.ConfigDict) -> None:
  translation(
    config,
    cell='lstm',
    features=32,
    hyper_features=8,
    embedding_size=4,
    embed_size=32,
    encoder_layers=1,
    decoder_layers=1,
    dropout=0.0,
    data='copy',
    vocab_size=32,
    buckets=(8,),
    tokens_per_batch=256,
    learning_rate=3e-3,
    num_steps=300,
    eval_every_steps=100,
    beam_size=2,
    alpha=0.6,
    beta=0.0,
    label_smoothing=0.0,
  )
  config.data.subword_cache = ''
  config.checkpoint.every_steps = 100
  config.log.every_steps = 50
  config.sample.num_translations = 3


VARIANTS = {
  'gnmt_lstm': _row('lstm', 'gnmt', 'tfds:wmt14_translate/fr-en', paper_test_bleu='38.95'),
  'gnmt_ln_hyperlstm': _row('ln_hyperlstm', 'gnmt', 'tfds:wmt14_translate/fr-en', paper_test_bleu='40.03'),
  **{f'cpu_{cell}': _row(cell, 'cpu', 'tatoeba') for cell in CELLS},
  'multi30k_lstm': _row('lstm', 'cpu', 'multi30k'),
  'multi30k_ln_hyperlstm': _row('ln_hyperlstm', 'cpu', 'multi30k'),
  'tiny': _tiny,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return common.select_variant('translation', VARIANTS, arg, 'cpu_ln_hyperlstm')
