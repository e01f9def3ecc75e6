"""Machine translation (paper section 4.4, Table 6): hyper.seq2seq.Seq2Seq (GNMT with any cell) on subword
ids, trained with (label-smoothed) cross entropy on token-bucketed batches; validation metric BLEU.

Data (experiments/data/translation.py): 'tatoeba', 'multi30k', 'newstest2014' (test only), 'copy' (a
generated copy task for tests), or 'tfds:wmt14_translate/fr-en' (the paper rows; needs the TFDS data set
prepared on a machine that can download it). Subwords: a SentencePiece model trained on both sides of the
training split (`data.vocab_size`), deterministic, cached under `data.subword_cache` and written into the
run folder (`subwords.model`) by `write_artifacts`; `data.subword_model` loads a given one instead
(evaluation and --mode=translate of a finished run: point it at <workdir>/subwords.model).

Batches: sentence pairs longer than `data.max_len` subwords (either side, EOS included) are dropped from
training; the rest fall into length buckets (`data.buckets`: both sides padded to the bucket length) and
each training batch holds `train.tokens_per_batch // bucket` pairs of one bucket, so every batch has about
the same number of token slots. Batch order is a pure function of (seed, step): resume is exact.
Evaluation: teacher-forced loss / perplexity (additive, `eval_step`) plus decoding of the split (beam
search with GNMT's length normalisation, `decode.*`) scored by sacrebleu: BLEU (with its signature) and chrF.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments import bleu as bleu_lib
from experiments.data import translation as data_lib
from experiments.data.errors import DataError
from experiments.models import make_cell

try:  # pylint: disable=g-import-not-at-top
  from experiments.tasks.base import TaskBase
except ImportError:  # TODO(translation): drop once the harness branch (TaskBase) is merged.

  class TaskBase:  # type: ignore[no-redef]
    main_metric = 'loss'
    metric_higher_is_better = False
    unit = 'examples'
    data_source = ''

    def sample(self, params, model_state, rng, workdir):
      return None


# ---------------------------------------------------------------------------------------------------
# Config -> model.


def build_model(config: ml_collections.ConfigDict, vocab_size: int):
  from hyper import seq2seq  # pylint: disable=g-import-not-at-top

  m = config.model
  return seq2seq.Seq2Seq(
    cell=make_cell(m.cell),
    src_vocab_size=vocab_size,
    tgt_vocab_size=vocab_size,
    embed_size=m.embed_size,
    encoder_layers=m.encoder_layers,
    decoder_layers=m.decoder_layers,
    residual_start=m.residual_start,
    attention=m.attention,
    attention_units=m.attention_units or None,
    dropout=m.dropout,
    share_embeddings=m.share_embeddings,
    dtype=jnp.dtype(m.dtype) if m.dtype else None,
  )


# ---------------------------------------------------------------------------------------------------
# Data.

COPY_WORDS = ('red', 'blue', 'green', 'cat', 'dog', 'sun', 'moon', 'tree', 'house', 'river', 'stone', 'bird')


def copy_corpus(
  sizes: dict[str, int], seed: int, min_words: int = 2, max_words: int = 6
) -> data_lib.ParallelCorpus:
  """A generated copy task: each sentence (random words from COPY_WORDS) is its own translation."""
  rng = np.random.default_rng(seed)
  splits = {}
  for split, n in sizes.items():
    sents = [' '.join(rng.choice(COPY_WORDS, rng.integers(min_words, max_words + 1))) for _ in range(n)]
    splits[split] = (sents, list(sents))
  return data_lib.ParallelCorpus('copy', 'en', 'en', splits)


def load_corpus(config: ml_collections.ConfigDict) -> data_lib.ParallelCorpus:
  d = config.data
  if d.name == 'copy':
    return copy_corpus(
      {'train': d.copy_train_size, 'valid': d.copy_eval_size, 'test': d.copy_eval_size}, d.split_seed
    )
  if d.name.startswith('tfds:'):
    return _tfds_corpus(d.name[len('tfds:') :], d)
  corpus = data_lib.load_corpus(
    d.name,
    d.data_dir or None,
    src_lang=d.src_lang,
    tgt_lang=d.tgt_lang,
    valid_size=d.valid_size,
    test_size=d.test_size,
    seed=d.split_seed,
  )
  if 'train' not in corpus.splits:
    raise DataError(
      f'{d.name} has no training split (test only); train on tatoeba or multi30k and '
      f'evaluate on it with --config.eval.extra_test={d.name}'
    )
  return corpus


def _tfds_corpus(name: str, d: ml_collections.ConfigDict) -> data_lib.ParallelCorpus:
  """WMT'14 through TFDS (`wmt14_translate/fr-en`: train / validation newstest2013 / test newstest2014)."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError('tensorflow-datasets is not installed; pip install tensorflow-datasets') from e
  data_lib.check_pair(d.src_lang, d.tgt_lang)
  splits = {}
  for ours, theirs in (('train', 'train'), ('valid', 'validation'), ('test', 'test')):
    try:
      source = tfds.data_source(name, split=theirs, data_dir=d.data_dir or None)
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(
        f'TFDS {name} split {theirs} is not prepared ({type(e).__name__}); run '
        f"`tfds build {name}` on a machine that can download WMT'14"
      ) from e
    rows = [source[i] for i in range(len(source))]
    dec = lambda v: v.decode('utf-8') if isinstance(v, bytes) else str(v)
    splits[ours] = ([dec(r[d.src_lang]) for r in rows], [dec(r[d.tgt_lang]) for r in rows])
  return data_lib.ParallelCorpus(name, d.src_lang, d.tgt_lang, splits)


def subwords_for(config: ml_collections.ConfigDict, corpus: data_lib.ParallelCorpus) -> data_lib.Subwords:
  """The run's SentencePiece model: data.subword_model if given, else trained on the training split
  (both sides) and cached by a hash of the text and the settings."""
  d = config.data
  if d.subword_model:
    sub = data_lib.Subwords.load(d.subword_model)
  else:
    src, tgt = corpus.splits['train']
    texts = list(src) + list(tgt)
    key = hashlib.sha256('\n'.join(texts + [str(d.vocab_size), d.subword_type]).encode('utf-8'))
    cache = os.path.expanduser(d.subword_cache) if d.subword_cache else ''
    path = os.path.join(cache, f'{corpus.name.replace("/", "_")}-{d.vocab_size}-{key.hexdigest()[:16]}.model')
    if cache and os.path.exists(path):
      sub = data_lib.Subwords.load(path)
    else:
      sub = data_lib.train_subwords(texts, d.vocab_size, model_type=d.subword_type)
      if cache:
        os.makedirs(cache, exist_ok=True)
        sub.save(path)
  if sub.vocab_size != d.vocab_size:
    raise DataError(
      f'the SentencePiece model has {sub.vocab_size} pieces but data.vocab_size is '
      f'{d.vocab_size}; set --config.data.vocab_size={sub.vocab_size}'
    )
  return sub


def bucket_of(length: int, buckets: Sequence[int]) -> int:
  for b in buckets:
    if length <= b:
      return b
  return -1


def pad_rows(rows: Sequence[Sequence[int]], width: int) -> np.ndarray:
  out = np.zeros((len(rows), width), np.int32)
  for i, r in enumerate(rows):
    out[i, : len(r)] = r
  return out


def make_batch(
  src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]], width: int
) -> dict[str, np.ndarray]:
  """Source ids, source lengths, decoder inputs (BOS y) and targets (y EOS), padded to `width`."""
  src_len = np.array([len(s) for s in src], np.int32)
  tgt_out = [list(t) + [data_lib.EOS_ID] for t in tgt]
  tgt_in = [[data_lib.BOS_ID] + list(t) for t in tgt]
  out = pad_rows(tgt_out, width)
  return {
    'src': pad_rows(src, width),
    'src_len': np.maximum(src_len, 1),
    'tgt_in': pad_rows(tgt_in, width),
    'tgt_out': out,
    'tgt_mask': (out != data_lib.PAD_ID).astype(np.float32),
  }


class BucketedBatches:
  """Training batches of one length bucket each, a pure function of (seed, step).

  Each epoch shuffles the pairs within their buckets and the order of the (full) batches with
  rng(seed, epoch); a batch of bucket L holds rows_for(L) = tokens_per_batch // L pairs (rounded down to a
  multiple of `row_multiple`, at least `row_multiple`). Process p of P gets rows [p n/P, (p+1) n/P).
  """

  def __init__(
    self, src, tgt, buckets, tokens_per_batch, seed, row_multiple=8, process_index=0, process_count=1
  ):
    self.src, self.tgt, self.buckets, self.seed = src, tgt, tuple(buckets), seed
    self.process_index, self.process_count = process_index, process_count
    multiple = row_multiple * process_count
    self.rows = {b: max(multiple, (tokens_per_batch // b) // multiple * multiple) for b in self.buckets}
    self.members: dict[int, np.ndarray] = {}
    lengths = [max(len(s), len(t) + 1) for s, t in zip(src, tgt)]
    which = np.array([bucket_of(n, self.buckets) for n in lengths])
    for b in self.buckets:
      self.members[b] = np.nonzero(which == b)[0]
    self.batches_per_bucket = {b: len(m) // self.rows[b] for b, m in self.members.items()}
    self.steps_per_epoch = sum(self.batches_per_bucket.values())
    if self.steps_per_epoch == 0:
      raise DataError(
        f'no full training batch: {len(src)} pairs for buckets {self.buckets} and '
        f'{tokens_per_batch} tokens per batch; lower train.tokens_per_batch'
      )
    self._epoch, self._plan = None, None

  def _epoch_plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
    if self._epoch != epoch:
      rng = np.random.default_rng([self.seed, epoch])
      plan = []
      for b in self.buckets:
        idx = rng.permutation(self.members[b])
        n = self.rows[b]
        plan += [(b, idx[i * n : (i + 1) * n]) for i in range(self.batches_per_bucket[b])]
      order = rng.permutation(len(plan))
      self._epoch, self._plan = epoch, [plan[i] for i in order]
    return self._plan

  def batch(self, step: int) -> dict[str, np.ndarray]:
    bucket, idx = self._epoch_plan(step // self.steps_per_epoch)[step % self.steps_per_epoch]
    per = len(idx) // self.process_count
    idx = idx[self.process_index * per : (self.process_index + 1) * per]
    return make_batch([self.src[i] for i in idx], [self.tgt[i] for i in idx], bucket)


# ---------------------------------------------------------------------------------------------------
# The task.


class TranslationTask(TaskBase):
  """The translation family: GNMT rows of Table 6 and their CPU-size versions."""

  main_metric = 'bleu'
  metric_higher_is_better = True
  unit = 'tokens'

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    process_index: int = 0,
    process_count: int = 1,
    *,
    load_data: bool = True,
    corpus: data_lib.ParallelCorpus | None = None,
    subwords: data_lib.Subwords | None = None,
  ):
    self.config = config
    self.process_index, self.process_count = process_index, process_count
    self.vocab_size = config.data.vocab_size
    self.model = build_model(config, self.vocab_size)
    self.buckets = tuple(config.data.buckets)
    self.data_source = config.data.name
    tokens = config.train.tokens_per_batch
    self.units_per_step = tokens * 2  # padded source + target token slots of one batch
    self.steps_per_epoch = 1
    self.corpus = self.subwords = None
    self._decoders: dict[Any, Any] = {}
    if not load_data:
      return
    self.corpus = corpus if corpus is not None else load_corpus(config)
    self.subwords = subwords if subwords is not None else subwords_for(config, self.corpus)
    # Sentences per split: the corpus's own, plus eval.extra_test ('newstest2014', 'multi30k') as a split
    # of that name holding that set's test sentences (same language pair, same subwords).
    self.texts = dict(self.corpus.splits)
    self.extra_test_splits = tuple(n for n in config.eval.extra_test.split(',') if n)
    for name in self.extra_test_splits:
      extra = data_lib.load_corpus(
        name, config.data.data_dir or None, src_lang=self.corpus.src_lang, tgt_lang=self.corpus.tgt_lang
      )
      self.texts[name] = extra.splits['test']
    self._encode()
    self.data_source = f'{self.corpus.name} {self.corpus.src_lang}->{self.corpus.tgt_lang} ' + ' / '.join(
      f'{k} {v}' for k, v in self.corpus.sizes().items()
    )

  def _encode(self) -> None:
    """Subword ids of every split and the training batches, with self.subwords."""
    self.ids = {
      split: tuple(self.subwords.encode(side) for side in pair) for split, pair in self.texts.items()
    }
    src, tgt = self.ids['train']
    c = self.config
    self.batches = BucketedBatches(
      src,
      tgt,
      self.buckets,
      c.train.tokens_per_batch,
      c.seed,
      c.train.row_multiple,
      self.process_index,
      self.process_count,
    )
    self.steps_per_epoch = self.batches.steps_per_epoch

  def load_artifacts(self, workdir) -> None:
    """Reads a finished run's own subwords.model (eval / sample / translate of `workdir`), so its text is
    split as in training even where a retrained SentencePiece model would differ. data.subword_model,
    when set, wins."""
    path = os.path.join(str(workdir), 'subwords.model')
    if self.corpus is None or self.config.data.subword_model or not os.path.exists(path):
      return
    saved = data_lib.Subwords.load(path)
    if saved.vocab_size != self.vocab_size:
      raise DataError(
        f'{path} has {saved.vocab_size} pieces but the run config says data.vocab_size '
        f"{self.vocab_size}; pass --config.data.subword_model=<the run's SentencePiece model>"
      )
    if saved.proto != self.subwords.proto:
      self.subwords = saved
      self._encode()

  # ---- training ----------------------------------------------------------------------------------

  def init_variables(self, rng: jax.Array):
    ones = jnp.ones((1, self.buckets[0]), jnp.int32)
    variables = self.model.init({'params': rng}, ones, jnp.array([self.buckets[0]]), ones)
    return variables['params'], {}

  def init_carry(self, batch_size: int):
    del batch_size
    return {}

  def train_batch(self, step: int):
    return self.batches.batch(step)

  def loss_fn(self, params, model_state, carry, batch, rng, step):
    del step
    logits = self.model.apply(
      {'params': params},
      batch['src'],
      batch['src_len'],
      batch['tgt_in'],
      deterministic=False,
      rngs={'dropout': rng},
    )
    mask = batch['tgt_mask']
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch['tgt_out'])
    smoothing = self.config.train.label_smoothing
    if smoothing > 0:
      targets = optax.smooth_labels(jax.nn.one_hot(batch['tgt_out'], logits.shape[-1]), smoothing)
      per_token = optax.softmax_cross_entropy(logits, targets)
    else:
      per_token = nll
    count = jnp.maximum(mask.sum(), 1.0)
    loss = (per_token * mask).sum() / count
    mean_nll = (nll * mask).sum() / count
    return loss, (model_state, carry, {'loss': loss, 'nll': mean_nll, 'ppl': jnp.exp(mean_nll)})

  # ---- evaluation: teacher-forced loss (additive) + BLEU by decoding -------------------------------

  def eval_splits(self):
    if self.corpus is None:
      return ('valid', 'test')
    return tuple(s for s in self.texts if s != 'train')

  def eval_batch_size(self) -> int:
    return self.config.eval.batch_size

  def _eval_plan(self, split: str) -> list[np.ndarray]:
    """Sentence indices of `split` in eval batches, sorted by length (less padding).

    `eval.max_batches` caps the validation split only (the pass repeated during training, which picks
    the best checkpoint); test splits (test and eval.extra_test) are always read whole, so their BLEU is
    the whole set's."""
    src, tgt = self.ids[split]
    order = np.argsort([max(len(s), len(t) + 1) for s, t in zip(src, tgt)], kind='stable')
    n = self.eval_batch_size()
    plan = [order[i : i + n] for i in range(0, len(order), n)]
    cap = self.config.eval.max_batches
    return plan if cap is None or cap < 0 or split != 'valid' else plan[:cap]

  def num_eval_batches(self, split: str) -> int:
    return len(self._eval_plan(split))

  def _width(self, length: int) -> int:
    b = bucket_of(length, self.buckets)
    return b if b > 0 else int(math.ceil(length / self.buckets[-1]) * self.buckets[-1])

  def _padded_batch(self, split: str, idx: np.ndarray) -> dict[str, np.ndarray]:
    src, tgt = self.ids[split]
    rows_src, rows_tgt = [src[i] for i in idx], [tgt[i] for i in idx]
    width = self._width(max(max(len(s), len(t) + 1) for s, t in zip(rows_src, rows_tgt)))
    n = self.eval_batch_size()
    batch = make_batch(rows_src + [[]] * (n - len(idx)), rows_tgt + [[]] * (n - len(idx)), width)
    batch['tgt_mask'][len(idx) :] = 0.0  # filler rows
    return batch

  def eval_batches(self, split: str) -> Iterator[dict[str, np.ndarray]]:
    per = self.eval_batch_size() // self.process_count
    for idx in self._eval_plan(split):
      batch = self._padded_batch(split, idx)
      yield {k: v[self.process_index * per : (self.process_index + 1) * per] for k, v in batch.items()}

  def eval_step(self, params, model_state, carry, batch):
    logits = self.model.apply({'params': params}, batch['src'], batch['src_len'], batch['tgt_in'])
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch['tgt_out'])
    mask = batch['tgt_mask']
    return carry, {'nll': (nll * mask).sum(), 'count': mask.sum()}

  def eval_metrics(self, sums):
    loss = float(sums['nll']) / max(float(sums['count']), 1.0)
    return {'loss': loss, 'ppl': math.exp(min(loss, 50.0))}

  def evaluate(self, params, model_state, split: str, default_eval) -> dict[str, float]:
    """Teacher-forced loss and perplexity, then BLEU and chrF of the decoded split (sacrebleu)."""
    metrics = dict(default_eval(split))
    hyps, refs = self.translate_split(params, split)
    scores = bleu_lib.corpus_scores(hyps, refs, tokenize=self.config.eval.bleu_tokenize)
    metrics.update(bleu=scores['bleu'], chrf=scores['chrf'])
    self.last_signatures = {'bleu': scores['bleu_signature'], 'chrf': scores['chrf_signature']}
    if self.process_index == 0:
      print(
        f'{split}: BLEU {scores["bleu"]:.2f} ({scores["bleu_signature"]}), chrF {scores["chrf"]:.2f} '
        f'({scores["chrf_signature"]}) on {len(hyps)} sentences',
        file=sys.stderr,
      )
    return metrics

  # ---- decoding ----------------------------------------------------------------------------------

  def _decoder(self, width: int):
    """A jitted decode of a [eval batch, width] source batch -> tokens [batch, max_len] (best beam)."""
    if width not in self._decoders:
      from hyper import seq2seq  # pylint: disable=g-import-not-at-top

      dc = self.config.decode
      max_len = int(width * dc.max_len_ratio) + dc.max_len_offset
      kw = dict(max_len=max_len, bos_id=data_lib.BOS_ID, eos_id=data_lib.EOS_ID, pad_id=data_lib.PAD_ID)
      if dc.beam_size <= 1:
        fn = lambda p, s, n: seq2seq.greedy_decode(self.model, {'params': p}, s, n, **kw)
      else:

        def fn(p, s, n):
          tokens, _ = seq2seq.beam_search_decode(
            self.model, {'params': p}, s, n, beam_size=dc.beam_size, alpha=dc.alpha, beta=dc.beta, **kw
          )
          return tokens[:, 0]

      self._decoders[width] = jax.jit(fn)
    return self._decoders[width]

  def translate_ids(self, params, src_ids: Sequence[Sequence[int]]) -> list[list[int]]:
    """Decoded subword ids for source id rows, in order (batches of eval.batch_size, sorted by length)."""
    order = np.argsort([len(s) for s in src_ids], kind='stable')
    n = self.eval_batch_size()
    out: list[list[int]] = [[] for _ in src_ids]
    for i in range(0, len(order), n):
      idx = order[i : i + n]
      rows = [list(src_ids[j])[: self.buckets[-1] * 4] or [data_lib.UNK_ID] for j in idx]
      width = self._width(max(len(r) for r in rows))
      rows += [[data_lib.UNK_ID]] * (n - len(rows))
      src = pad_rows(rows, width)
      lens = np.array([len(r) for r in rows], np.int32)
      tokens = np.asarray(self._decoder(width)(params, src, lens))
      for k, j in enumerate(idx):
        out[j] = tokens[k].tolist()
    return out

  def translate(self, params, sentences: Sequence[str]) -> list[str]:
    """Translations of raw sentences (SentencePiece in, SentencePiece out)."""
    return self.subwords.decode(self.translate_ids(params, self.subwords.encode(sentences)))

  def translate_split(self, params, split: str) -> tuple[list[str], list[str]]:
    """(hypotheses, references) of the split in its eval plan (valid: capped by eval.max_batches)."""
    idx = np.concatenate(self._eval_plan(split)) if self._eval_plan(split) else np.zeros(0, int)
    idx = np.sort(idx)
    src_ids = [self.ids[split][0][i] for i in idx]
    refs = [self.texts[split][1][i] for i in idx]
    return self.subwords.decode(self.translate_ids(params, src_ids)), refs

  # ---- the picture: attention matrix and the decoder's per-step weight change ----------------------

  def analyse(self, params, sentence: str) -> dict[str, Any]:
    """Translates `sentence` (greedy) and re-reads the translation teacher-forced: subword pieces of both
    sides, the attention matrix [target, source] and each decoder layer's per-gate weight change
    [target, 4] (zero for fixed-weight cells; see `hyper.cells.HyperLSTMCell`)."""
    src_ids = self.subwords.encode([sentence])[0] or [data_lib.UNK_ID]
    out = self.translate_ids(params, [src_ids])[0]
    if data_lib.EOS_ID in out:
      out = out[: out.index(data_lib.EOS_ID)]
    tgt_out = list(out) + [data_lib.EOS_ID]
    src = jnp.asarray([src_ids], jnp.int32)
    tgt_in = jnp.asarray([[data_lib.BOS_ID] + list(out)], jnp.int32)
    _, attention, diag = self.model.apply(
      {'params': params},
      src,
      jnp.array([len(src_ids)]),
      tgt_in,
      return_attention=True,
      return_diagnostics=True,
    )
    pieces = lambda ids: [self.subwords.sp.id_to_piece(int(i)) for i in ids]
    return {
      'source': pieces(src_ids),
      'target': pieces(tgt_out),
      'attention': np.asarray(attention[0]),
      'weight_change': {
        k: np.asarray(v['weight_change'][0]) for k, v in diag.items() if 'weight_change' in v
      },
    }

  def translation_figure(self, params, sentence: str, path: str) -> str:
    """The attention matrix of `sentence`'s translation beside the decoder's weight change per step and
    gate (as the paper's Figure 4 does for characters), as a PNG."""
    import matplotlib  # pylint: disable=g-import-not-at-top

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    a = self.analyse(params, sentence)
    layers = sorted(a['weight_change'])
    fig, axes = plt.subplots(
      1,
      1 + len(layers),
      figsize=(4 + 0.35 * len(a['source']) + 1.6 * len(layers), 1.5 + 0.3 * len(a['target'])),
      gridspec_kw={'width_ratios': [max(len(a['source']), 1)] + [2] * len(layers)},
    )
    axes = np.atleast_1d(axes)
    axes[0].imshow(a['attention'], cmap='Greys', vmin=0, vmax=1, aspect='auto')
    axes[0].set_xticks(range(len(a['source'])), a['source'], rotation=90)
    axes[0].set_yticks(range(len(a['target'])), a['target'])
    axes[0].set_title('attention')
    for ax, layer in zip(axes[1:], layers):
      wc = a['weight_change'][layer]
      ax.imshow(wc / max(float(wc.max()), 1e-12), cmap='Reds', vmin=0, vmax=1, aspect='auto')
      ax.set_xticks(range(4), ['i', 'g', 'f', 'o'])
      ax.set_yticks([])
      ax.set_title(f'decoder {layer}\nweight change', fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)) or '.', exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches='tight')
    plt.close(fig)
    return path

  def sample(self, params, model_state, rng, workdir) -> str | None:
    """Translations of the first sample.num_translations test sentences (--mode=sample, TensorBoard)."""
    del model_state, rng, workdir
    n = self.config.sample.num_translations
    if self.corpus is None or n <= 0:
      return None
    split = 'test' if 'test' in self.texts else 'valid'
    src, ref = self.texts[split][0][:n], self.texts[split][1][:n]
    hyp = self.translate(params, src)
    return '\n\n'.join(f'SRC: {s}\nREF: {r}\nHYP: {h}' for s, r, h in zip(src, ref, hyp))

  # ---- artifacts ----------------------------------------------------------------------------------

  def write_artifacts(self, params, model_state, workdir) -> dict[str, Any]:
    """subwords.model (the run's SentencePiece model), translations.txt and translation_figure.png."""
    del model_state
    written = {}
    if self.subwords is None:
      return written
    path = os.path.join(str(workdir), 'subwords.model')
    self.subwords.save(path)
    written['subwords'] = path
    text = self.sample(params, {}, None, workdir)
    if text:
      split = 'test' if 'test' in self.texts else 'valid'
      tpath = os.path.join(str(workdir), 'translations.txt')
      with open(tpath, 'w', encoding='utf-8') as f:
        f.write(text + '\n')
      written['translations'] = tpath
      written['translation_figure'] = self.translation_figure(
        params, self.texts[split][0][0], os.path.join(str(workdir), 'translation_figure.png')
      )
    return written


def make_task(
  config: ml_collections.ConfigDict, process_index: int = 0, process_count: int = 1, *, load_data: bool = True
) -> TranslationTask:
  """The translation Task (experiments/tasks/base.py protocol)."""
  return TranslationTask(config, process_index, process_count, load_data=load_data)
