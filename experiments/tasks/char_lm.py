"""Character-level language modelling (paper sections 4.2-4.3): hyper.char_lm.CharLM on BPTT streams.

Training reads `batch_size` contiguous streams of the training split, `seq_len` characters at a time,
carrying the recurrent state from one batch to the next (reset when the streams wrap around). Evaluation
reads the whole valid/test split as `eval.batch_size` contiguous streams, carrying state across batches.
Loss: softmax cross entropy in nats; bits per character bpc = nats / ln 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.data import streams
from experiments.tasks import base

LN2 = math.log(2.0)
# Symbols of the paper's corpora (A.3.3, A.3.4): the parameter shapes of `--mode=summary` without the data.
VOCAB_SIZES = {'ptb_char': 50, 'enwik8': 205}


def _data_dir(config: ml_collections.ConfigDict) -> str | None:
  if config.data.data_dir:
    return config.data.data_dir
  return None


def load_corpus(config: ml_collections.ConfigDict):
  """CharCorpus(splits={'train','valid','test'}: int32 ids, vocab) for config.data.name."""
  from experiments.data import text  # pylint: disable=g-import-not-at-top

  return text.load_char_corpus(
    config.data.name, manual_dir=config.data.manual_dir or None, data_dir=_data_dir(config)
  )


def build_model(config: ml_collections.ConfigDict, vocab_size: int):
  """hyper.char_lm.CharLM from config.model (experiments/models.py: cell options and CharLM's, no list)."""
  from experiments import models  # pylint: disable=g-import-not-at-top

  return models.make_char_lm(config.model, vocab_size)


def make_task(
  config: ml_collections.ConfigDict, process_index: int = 0, process_count: int = 1, *, load_data: bool = True
) -> CharLMTask:
  return CharLMTask(config, process_index, process_count, load_data=load_data)


def _vocab_size_without_data(config: ml_collections.ConfigDict) -> int | None:
  if config.data.name in VOCAB_SIZES:
    return VOCAB_SIZES[config.data.name]
  if config.data.name == 'synthetic':
    from experiments.data import synthetic  # pylint: disable=g-import-not-at-top

    return len(synthetic.ALPHABET)
  return None  # A prepared corpus file: its vocabulary is only known by reading it.


class CharLMTask(base.TaskBase):
  """The char_lm family: PTB, enwik8 and the synthetic corpus of the default experiment."""

  metric_higher_is_better = False
  unit = 'chars'

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    process_index: int = 0,
    process_count: int = 1,
    corpus: Any = None,
    *,
    load_data: bool = True,
  ):
    self.config = config
    self.process_index, self.process_count = process_index, process_count
    self.main_metric = config.eval.get('metric', 'bpc') or 'bpc'
    self.seq_len = config.data.seq_len
    self.data_source = config.data.name  # corpus name or prepared .npz path (run_info.json)
    vocab_size = None if load_data or corpus is not None else _vocab_size_without_data(config)
    if vocab_size is not None:  # Shapes only (--mode=summary): the data set is not read.
      self.corpus, self.vocab = None, None
      self.model = build_model(config, vocab_size)
      return
    self.corpus = corpus if corpus is not None else load_corpus(config)
    self.vocab = list(self.corpus.vocab)
    self.model = build_model(config, len(self.vocab))
    self.streams = streams.TrainStreams(
      self.corpus.splits['train'], config.train.batch_size, self.seq_len, process_index, process_count
    )
    self.steps_per_epoch = self.streams.steps_per_epoch
    self.units_per_step = config.train.batch_size * self.seq_len

  # ---- training ----------------------------------------------------------------------------------

  def init_variables(self, rng: jax.Array):
    tokens = jnp.zeros((1, self.seq_len), jnp.int32)
    variables = self.model.init({'params': rng}, tokens, self.model.initialize_carry(1))
    return variables['params'], {}

  def init_carry(self, batch_size: int):
    return self.model.initialize_carry(batch_size)

  def train_batch(self, step: int):
    return self.streams.batch(step)

  def loss_fn(self, params, model_state, carry, batch, rng, step):
    # The streams wrap around at the end of an epoch: the carried state then belongs to other text.
    fresh = self.init_carry(batch['inputs'].shape[0])
    wrapped = step % self.steps_per_epoch == 0
    carry = jax.tree.map(lambda c, z: jnp.where(wrapped, z.astype(c.dtype), c), carry, fresh)
    logits, new_carry = self.model.apply(
      {'params': params}, batch['inputs'], carry, deterministic=False, rngs={'dropout': rng}
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), batch['targets']
    ).mean()
    new_carry = jax.lax.stop_gradient(new_carry)
    return loss, (model_state, new_carry, {'loss': loss, 'bpc': loss / LN2})

  # ---- evaluation --------------------------------------------------------------------------------

  def eval_splits(self):
    return ('valid', 'test')

  def eval_batch_size(self) -> int:
    return self.config.eval.batch_size

  def _cap(self, n: int) -> int:
    cap = self.config.eval.max_batches
    return n if cap is None or cap < 0 else min(n, cap)

  def num_eval_batches(self, split: str) -> int:
    return self._cap(
      streams.num_eval_batches(len(self.corpus.splits[split]), self.eval_batch_size(), self.seq_len)
    )

  def eval_batches(self, split: str) -> Iterator[dict[str, np.ndarray]]:
    batches = streams.eval_batches(
      self.corpus.splits[split],
      self.eval_batch_size(),
      self.seq_len,
      process_index=self.process_index,
      process_count=self.process_count,
    )
    for i, batch in enumerate(batches):
      if i >= self.num_eval_batches(split):
        return
      yield batch

  def eval_step(self, params, model_state, carry, batch):
    logits, new_carry = self.model.apply({'params': params}, batch['inputs'], carry, deterministic=True)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), batch['targets'])
    mask = batch['mask'].astype(jnp.float32)
    return new_carry, {'nll': (nll * mask).sum(), 'count': mask.sum()}

  def eval_metrics(self, sums):
    loss = float(sums['nll']) / max(float(sums['count']), 1.0)
    return {'loss': loss, 'bpc': loss / LN2}

  # ---- artifacts: a generated sample and the Figure 4 weight-change plot -------------------------

  def sample(self, params, model_state, rng, workdir) -> str | None:
    """config.sample.length characters after config.sample.prime (experiments/sampling.py)."""
    del model_state, workdir
    from experiments import sampling  # pylint: disable=g-import-not-at-top

    c = self.config.sample
    # PRNGKey(seed) holds the seed in its last word: the trainer's key of config.seed gives that seed.
    seed = int(np.asarray(jax.random.key_data(rng)).ravel()[-1]) if rng is not None else self.config.seed
    return sampling.sample_text(
      self.model, params, self.vocab, length=c.length, temperature=c.temperature, prime=c.prime, seed=seed
    )

  def write_artifacts(self, params, model_state, workdir) -> dict[str, Any]:
    """sample.txt (config.sample.length > 0) and weight_change.png (config.plots.weight_change)."""
    written = {}
    if self.config.sample.length > 0:
      path = workdir / 'sample.txt'
      path.write_text(self.sample(params, model_state, jax.random.PRNGKey(self.config.seed), workdir))
      written['sample'] = path
    if self.config.get('plots', {}).get('weight_change', True):
      from experiments import plots  # pylint: disable=g-import-not-at-top

      ids = np.asarray(self.corpus.splits['valid'][: self.config.plots.length], np.int32)
      figure = workdir / 'weight_change.png'
      for path in plots.plot_weight_change(self.model, params, ids, self.vocab, figure):
        written['weight_change' + path[path.rfind('.') :]] = path  # weight_change.png, weight_change.svg
    return written
