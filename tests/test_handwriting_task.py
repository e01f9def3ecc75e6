"""experiments/tasks/handwriting.py and configs/handwriting.py: the task on the trainer's Runner (tiny config,
synthetic lines): the loss falls, evaluation reads every line whole (= line by line), shapes without data."""

import os

import jax
import numpy as np
import pytest

from configs import handwriting as hw_configs
from experiments import trainer
from experiments.tasks import handwriting as hw_task


def test_paper_rows_and_variants():
  expected = {
    'lstm900': ('lstm', 900, '-1055 nats'),
    'ln_lstm1000': ('ln_lstm', 1000, '-1106 nats'),
    'hyperlstm900': ('hyperlstm', 900, '-1162 nats'),
    'ln_hyperlstm900': ('ln_hyperlstm', 900, '-1067 nats'),
  }
  for variant, (cell, units, test) in expected.items():
    c = hw_configs.get_config(variant)
    assert (c.model.cell.name, c.model.cell.features, c.paper.test) == (cell, units, test)
    assert (c.train.batch_size, c.data.min_length, c.model.num_mixtures, c.data.name) == (
      32,
      300,
      20,
      'iam_ondb',
    )
    assert c.data.split_lists == 'graves2013' and c.task == 'handwriting'
  for variant in ('cpu_lstm256', 'cpu_ln_lstm256', 'cpu_hyperlstm256', 'cpu_ln_hyperlstm256'):
    assert hw_configs.get_config(variant).data.name == 'unipen_lines'
  with pytest.raises(ValueError, match="unknown variant 'nope'"):
    hw_configs.get_config('nope')


def test_shapes_without_data():
  config = hw_configs.get_config('hyperlstm900')
  task = hw_task.make_task(config, load_data=False)
  params, state = jax.eval_shape(task.init_variables, jax.random.PRNGKey(0))
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  assert params['mdn']['output']['kernel'].shape == (900, 121)
  assert state['data_std'].shape == (2,)
  assert count > 4 * 900 * 903  # at least the main LSTM's weights


def test_tiny_trains_and_evaluates_every_line_whole(tmp_path):
  config = hw_configs.get_config('tiny')
  task = hw_task.make_task(config)
  runner = trainer.Runner(config, task)
  state = runner.init()
  losses = []
  for step in range(30):
    state, metrics = runner.train_step(state, trainer.global_batch(task.train_batch(step), runner.mesh))
    losses.append(float(metrics['loss']))
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3, losses
  result = runner.evaluate(state['params'], state['model_state'], 'valid')
  valid = task.splits['valid']
  assert result['lines'] == len(valid)
  # The same numbers from every line in its own row, whole, from a zero state (one pass, padding masked):
  # windows, packing and the carried state change nothing.
  n = valid.lengths.max()
  batch = np.zeros((len(valid), n, 3), np.float32)
  mask = np.zeros((len(valid), n - 1), np.float32)
  for i in range(len(valid)):
    batch[i, : valid.lengths[i]] = task.normalizer.normalize(valid.line(i))
    mask[i, : valid.lengths[i] - 1] = 1
  out, _ = jax.jit(task.model.apply)({'params': state['params']}, batch[:, :-1], mask=mask)
  total = float(task.model.nll(out, batch[:, 1:], mask).sum())
  np.testing.assert_allclose(result['nats_per_line'], total / len(valid), rtol=2e-5)
  np.testing.assert_allclose(result['nats_per_point'], total / mask.sum(), rtol=2e-5)
  std = np.asarray(state['model_state']['data_std'])
  np.testing.assert_allclose(std, task.splits['train'].points[:, :2].std(0), rtol=1e-5)
  # --mode=sample / end of training: the sample in data units and, for a hyper cell, Figure 7 and the GIF.
  written = task.write_artifacts(state['params'], state['model_state'], str(tmp_path))
  assert all(os.path.exists(path) for path in written.values())  # {file name: path}
  assert sorted(written) == [
    'figure7.gif',
    'figure7.png',
    'sample.png',
    'sample.svg',
  ]
