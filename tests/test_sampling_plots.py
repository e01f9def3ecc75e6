"""Sampling (deterministic per seed, diagnostics aligned with the text) and the Figure 4 / 5 plots."""

import os

import jax
import numpy as np
import pytest

from experiments import models, plots, sampling

VOCAB = list('\nabcdefg_')
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


LENGTH = 24  # one sampling length throughout: the generation scan compiles once per model


def _model(cell='ln_hyperlstm', seed=0):
  """A tiny CharLM with random parameters of the right shapes (shapes from eval_shape: no init compile).

  Random, not initial, values: the hypernetwork's output projections start at zero, which would make
  every weight change zero.
  """
  model = models.make_char_lm(
    {'cell': {'name': cell, 'features': 16, 'hyper_features': 8, 'embedding_size': 4}}, len(VOCAB)
  )
  shapes = jax.eval_shape(
    model.init, jax.random.PRNGKey(0), np.zeros((1, 1), np.int32), model.initialize_carry(1)
  )['params']
  rng = np.random.default_rng(seed)
  return model, jax.tree.map(lambda s: 0.4 * rng.standard_normal(s.shape).astype(s.dtype), shapes)


@pytest.fixture(scope='module')
def hyper_model():
  return _model()


@pytest.fixture(scope='module')
def lstm_model():
  return _model('lstm', seed=1)


def test_sampling_deterministic_per_seed(hyper_model):
  model, params = hyper_model
  a, diag_a = sampling.sample(model, params, VOCAB, LENGTH, temperature=1.0, prime='ab_', seed=3)
  b, diag_b = sampling.sample(model, params, VOCAB, LENGTH, temperature=1.0, prime='ab_', seed=3)
  c, _ = sampling.sample(model, params, VOCAB, LENGTH, temperature=1.0, prime='ab_', seed=4)
  assert a == b and a != c
  assert a.startswith('ab_') and len(a) == 3 + LENGTH and set(a) <= set(VOCAB)
  jax.tree.map(np.testing.assert_array_equal, diag_a, diag_b)
  # Greedy decoding ignores the seed.
  g1, _ = sampling.sample(model, params, VOCAB, LENGTH, temperature=0.0, prime='a', seed=1)
  g2, _ = sampling.sample(model, params, VOCAB, LENGTH, temperature=0.0, prime='a', seed=2)
  assert g1 == g2
  with pytest.raises(ValueError, match="'z' at position 1"):
    sampling.sample(model, params, VOCAB, 5, prime='az')


@pytest.mark.parametrize('prime', ['', 'cab_'])
def test_diagnostics_align_with_text(hyper_model, prime):
  """The scan's per-step diagnostics equal those of reading the finished text in one call."""
  model, params = hyper_model
  text, diag = sampling.sample(model, params, VOCAB, LENGTH, temperature=1.0, prime=prime, seed=0)
  layer = sampling.layer_diagnostics(diag)
  assert layer['weight_change'].shape == (len(text), 4)
  assert layer['tanh_c'].shape == (len(text), 16)
  assert np.all(np.abs(layer['tanh_c']) <= 1.0) and layer['weight_change'][1:].max() > 0
  ids = sampling.encode(text, VOCAB)
  if not prime:  # sampling starts by reading an end-of-line that is not part of the text
    ids = np.concatenate([[VOCAB.index('\n')], ids])
  _, reread = sampling.diagnose(model, params, ids)
  reread = jax.tree.map(lambda x: x[len(ids) - len(text) :], reread)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5), diag, reread)


def test_fixed_weight_cell_has_no_weight_change(lstm_model):
  model, params = lstm_model
  text, diag = sampling.sample(model, params, VOCAB, LENGTH, prime='a', seed=0)
  assert np.all(sampling.layer_diagnostics(diag)['weight_change'] == 0)
  assert sampling.sample_text(model, params, VOCAB, LENGTH, prime='aZ', seed=0) == text  # drops 'Z'


def _assert_png(path):
  with open(path, 'rb') as f:
    head = f.read(8)
  assert head == PNG_MAGIC


def test_figure4_files(tmp_path, hyper_model):
  text = 'the_cat\nsat_on_the_mat_' * 3
  wc = np.abs(np.random.default_rng(0).normal(size=(len(text), 4)))
  paths = plots.weight_change_figure(text, wc, str(tmp_path / 'fig4.png'), chars_per_line=20)
  assert sorted(p[-3:] for p in paths) == ['png', 'svg']
  _assert_png(tmp_path / 'fig4.png')
  svg = (tmp_path / 'fig4.svg').read_text()
  assert svg.lstrip().startswith('<?xml') and '<svg' in svg
  with pytest.raises(ValueError):
    plots.weight_change_figure(text, wc[:, :3], str(tmp_path / 'bad.png'))
  model, params = hyper_model
  ids = sampling.encode('abc_dec\nfab', VOCAB)
  written = plots.plot_weight_change(model, params, ids, VOCAB, str(tmp_path / 'wc.png'))
  assert (tmp_path / 'wc.png').stat().st_size > 1000 and len(written) == 2
  _assert_png(tmp_path / 'wc.png')


def test_figure5_file(tmp_path, hyper_model, lstm_model):
  models = {'LN HyperLSTM': hyper_model, 'LSTM': lstm_model}
  paths = plots.figure5(models, VOCAB, str(tmp_path / 'fig5.png'), length=LENGTH)
  assert paths == [str(tmp_path / 'fig5.png')]
  _assert_png(tmp_path / 'fig5.png')
  assert (tmp_path / 'fig5.png').stat().st_size > 5000


def test_figure_commands_on_a_trained_workdir(tmp_path, capsys):
  import trainer_testlib as T
  from experiments import trainer

  workdir = str(tmp_path / 'run')
  trainer.train_and_evaluate(
    T.get_config(overrides={**T.CHAR_OVERRIDES, 'train.num_steps': 4, 'eval.every_steps': 4}), workdir
  )
  capsys.readouterr()
  fig5 = plots.main(
    [
      '--figure=5',
      f'--run=LN HyperLSTM={workdir}',
      f'--run=again={workdir}',
      f'--out={tmp_path / "f5.png"}',
      '--length=30',
    ]
  )
  out = capsys.readouterr().out
  lines = [line for line in out.splitlines() if 'mean |tanh(c_t)|' in line]
  assert [line.split(':')[0] for line in lines] == ['LN HyperLSTM', 'again']
  assert lines[0].split(':', 1)[1] == lines[1].split(':', 1)[1]  # same model, same seed: same sample
  with open(fig5[0], 'rb') as f:
    assert f.read(8) == PNG_MAGIC
  fig4 = plots.main(
    ['--figure=4', f'--run=x={workdir}', f'--out={tmp_path / "f4.png"}', '--text=abc (de)\nab']
  )
  assert sorted(p.rsplit('.', 1)[1] for p in fig4) == ['png', 'svg']
  assert all(os.path.getsize(p) > 1000 for p in fig4)
  with pytest.raises(ValueError, match="outside the model's vocabulary"):
    plots.main(['--figure=4', f'--run=x={workdir}', f'--out={tmp_path / "g.png"}', '--text=Z!'])


def test_saturation_stats():
  stats = plots.saturation_stats(np.array([[0.0, 0.5], [0.99, -1.0]]))
  assert stats == {'mean_abs': pytest.approx(0.6225), 'saturated': 0.5}
