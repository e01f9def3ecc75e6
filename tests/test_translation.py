"""experiments/tasks/translation.py + configs/translation.py: batches stateless by step, the tiny copy task
learns (loss falls, BLEU > 0), summary mode without data, the paper rows' settings."""

import functools
import pathlib
import zipfile

import jax
import numpy as np
import optax
import pytest
from flax import linen as nn

from configs import translation as translation_config
from experiments import trainer
from experiments.data import translation as data_lib
from experiments.tasks import translation


def tiny_config(**overrides):
  config = translation_config.get_config('tiny')
  for key, value in overrides.items():
    node = config
    *path, last = key.split('.')
    for p in path:
      node = node[p]
    node[last] = value
  return config


@pytest.fixture(scope='module')
def tiny_task():
  return translation.make_task(tiny_config())


def additive_eval(task, params, split):
  step = jax.jit(functools.partial(task.eval_step, params, {}, {}))
  sums = {'nll': 0.0, 'count': 0.0}
  for batch in task.eval_batches(split):
    _, s = step(batch)
    sums = {k: sums[k] + float(s[k]) for k in sums}
  return task.eval_metrics(sums)


def test_max_batches_caps_the_validation_split_only():
  """eval.max_batches shortens the validation pass of training; test BLEU is always the whole split's."""
  task = translation.make_task(tiny_config(**{'eval.batch_size': 16, 'eval.max_batches': 2}))
  assert task.num_eval_batches('valid') == 2  # 64 valid pairs, 16 per batch, capped at 2
  assert task.num_eval_batches('test') == 4
  tested = sorted(i for idx in task._eval_plan('test') for i in idx)
  assert tested == list(range(64))  # every test pair, once
  assert sum(len(b['src']) for b in task.eval_batches('valid')) == 32


def test_batches_stateless_and_bucketed(tiny_task):
  again = translation.make_task(tiny_config())
  for step in (0, 7, tiny_task.steps_per_epoch + 3):
    a, b = tiny_task.train_batch(step), again.train_batch(step)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
  batch = tiny_task.train_batch(5)
  rows, width = batch['src'].shape
  assert width == 8 and rows == 256 // 8
  # Decoder input is BOS + target, the prediction target is target + EOS, masked after it.
  lens = batch['tgt_mask'].sum(1).astype(int)
  for r in range(rows):
    assert batch['tgt_in'][r, 0] == data_lib.BOS_ID
    assert batch['tgt_out'][r, lens[r] - 1] == data_lib.EOS_ID
    np.testing.assert_array_equal(batch['tgt_in'][r, 1 : lens[r]], batch['tgt_out'][r, : lens[r] - 1])
  # Process 1 of 2 gets the second half of the global rows.
  half = translation.make_task(tiny_config(), process_index=1, process_count=2).train_batch(5)
  assert half['src'].shape[0] == rows // 2
  # An epoch visits every kept pair once.
  seen = [tuple(r) for s in range(tiny_task.steps_per_epoch) for r in tiny_task.train_batch(s)['src']]
  assert len(seen) == tiny_task.steps_per_epoch * rows


def test_tiny_copy_task_learns(tiny_task):
  task = tiny_task
  params, _ = task.init_variables(jax.random.key(0))
  tx = optax.adam(task.config.train.learning_rate)
  opt = tx.init(params)

  @jax.jit
  def update(params, opt, batch, rng):
    (loss, _), grads = jax.value_and_grad(task.loss_fn, has_aux=True)(params, {}, {}, batch, rng, 0)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  before = additive_eval(task, params, 'valid')['loss']
  for step in range(300):
    params, opt, _ = update(params, opt, task.train_batch(step), jax.random.key(step))
  after = additive_eval(task, params, 'valid')
  metrics = task.evaluate(params, {}, 'valid', lambda s: additive_eval(task, params, s))
  assert after['loss'] < 0.5 * before
  assert metrics['loss'] == pytest.approx(after['loss'])
  assert metrics['bleu'] > 10.0  # untrained: 0.3 (copy of random words, measured)
  assert 0 < metrics['chrf'] <= 100
  src = task.corpus.splits['valid'][0][:4]
  print('copy task:', list(zip(src, task.translate(params, src))), metrics)


def test_analysis_and_artifacts(tiny_task, tmp_path):
  task = tiny_task
  params, _ = task.init_variables(jax.random.key(0))
  a = task.analyse(params, 'red cat moon')
  att = a['attention']
  assert att.shape == (len(a['target']), len(a['source']))
  np.testing.assert_allclose(att.sum(-1), 1.0, rtol=1e-5)
  assert a['target'][-1] == '</s>'
  assert set(a['weight_change']) == {'layer_0'} and not a['weight_change']['layer_0'].any()  # LSTM: fixed
  written = task.write_artifacts(params, {}, str(tmp_path))
  assert data_lib.Subwords.load(written['subwords']).proto == task.subwords.proto
  text = pathlib.Path(written['translations']).read_text(encoding='utf-8')
  assert text.count('SRC: ') == 3
  assert pathlib.Path(written['translation_figure']).read_bytes()[:4] == b'\x89PNG'


def test_a_finished_runs_own_subwords_are_read_back(tmp_path):
  """eval / sample / translate of a workdir split text with the subwords.model saved in it, not with a
  SentencePiece model retrained from the config (which could differ on another machine)."""
  task = translation.make_task(tiny_config())
  src, tgt = task.corpus.splits['train']
  other = data_lib.train_subwords(list(src) + list(tgt), task.vocab_size, model_type='bpe')
  assert other.proto != task.subwords.proto
  other.save(str(tmp_path / 'subwords.model'))
  task.load_artifacts(tmp_path)
  assert task.subwords.proto == other.proto
  assert task.ids['valid'][0] == other.encode(task.texts['valid'][0])
  assert task.batches.batch(0)['src'].max() < task.vocab_size
  small = data_lib.train_subwords(list(src) + list(tgt), task.vocab_size - 4, model_type='bpe')
  small.save(str(tmp_path / 'subwords.model'))
  with pytest.raises(data_lib.DataError, match='data.subword_model'):
    task.load_artifacts(tmp_path)


def test_summary_mode_needs_no_data_and_paper_rows():
  # load_data=False: the model and its parameter shapes without reading any file.
  config = translation_config.get_config('gnmt_ln_hyperlstm')
  task = translation.make_task(config, load_data=False)
  assert task.corpus is None and task.metric_higher_is_better and task.main_metric == 'bleu'
  shapes = nn.meta.unbox(jax.eval_shape(task.init_variables, jax.random.key(0))[0])
  enc, dec = shapes['encoder'], shapes['decoder']
  assert sorted(enc) == ['bwd_0', 'fwd_0'] + [f'layer_{i}' for i in range(1, 8)]
  assert sorted(k for k in dec if k.startswith('layer_')) == [f'layer_{i}' for i in range(8)]
  # Bottom decoder layer reads [embedding; context] = 1024 + 1024; the encoder's layer 1 reads 2 x 1024.
  assert dec['layer_0']['input_proj']['kernel'].shape[0] == 2048
  assert enc['layer_1']['input_proj']['kernel'].shape[0] == 2048
  assert dec['layer_3']['scale_h'].shape == (4, 32, 1024)  # N_z 32
  assert dec['layer_3']['hyper_recurrent_kernel'].shape == (128, 512)  # 128 hyper units
  assert shapes['src_embed']['embedding'].shape == (32000, 1024) and 'tgt_embed' not in shapes
  assert config.paper.test == '40.03 BLEU'
  assert translation_config.get_config('gnmt_lstm').paper.test == '38.95 BLEU'
  for name in translation_config.VARIANTS:
    c = translation_config.get_config(name)
    assert c.task == 'translation' and c.eval.metric == 'bleu'
  with pytest.raises(ValueError, match='unknown variant'):
    translation_config.get_config('gnmt_gru')
  cpu = {name: translation_config.get_config(f'cpu_{name}') for name in translation_config.CELLS}
  budget = {(c.model.cell.features, c.train.num_steps, c.train.tokens_per_batch) for c in cpu.values()}
  assert len(budget) == 1


def test_tatoeba_task_with_extra_test_set(tmp_path):
  pairs = ''.join(f'Sentence {i}.\tPhrase {i}.\n' for i in range(300))
  with zipfile.ZipFile(tmp_path / 'fra-eng.zip', 'w') as z:
    z.writestr('fra.txt', pairs)
  news = tmp_path / 'newstest2014'
  news.mkdir()
  for name, word in (('src.en', 'Sentence'), ('ref.fr', 'Phrase')):
    segs = f'<seg id="1">{word} 7.</seg>\n<seg id="2">{word} 1.</seg>\n'
    (news / f'newstest2014-fren-{name}.sgm').write_text(segs)
  config = tiny_config(
    **{
      'data.name': 'tatoeba',
      'data.data_dir': str(tmp_path),
      'data.valid_size': 20,
      'data.test_size': 20,
      'data.vocab_size': 40,
      'data.buckets': (8, 16),
      'eval.extra_test': 'newstest2014',
    }
  )
  task = translation.make_task(config)
  assert task.corpus.sizes() == {'train': 260, 'valid': 20, 'test': 20}
  assert task.eval_splits() == ('valid', 'test', 'newstest2014')
  # The trainer reports it beside config.eval.splits (('valid', 'test') by default), in train and eval.
  assert config.eval.splits == ('valid', 'test')
  assert trainer.Runner(config, task).eval_splits == ('valid', 'test', 'newstest2014')
  assert task.texts['newstest2014'] == (['Sentence 7.', 'Sentence 1.'], ['Phrase 7.', 'Phrase 1.'])
  assert task.num_eval_batches('newstest2014') == 1
  batch = next(task.eval_batches('newstest2014'))
  assert batch['src'].shape[0] == config.eval.batch_size and batch['tgt_mask'][2:].sum() == 0
  assert task.subwords.decode(task.subwords.encode(['Sentence 12.'])) == ['Sentence 12.']
