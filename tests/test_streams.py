"""Truncated-BPTT streams: continuity across steps, exact evaluation coverage, process sharding."""

import numpy as np
import pytest

from experiments.data.streams import TrainStreams, eval_batches, num_eval_batches


def _ids(n):
  return np.arange(n, dtype=np.int32)  # id == position, so positions can be read off the batch


def test_train_streams_are_contiguous_across_steps():
  ids = _ids(1000)
  s = TrainStreams(ids, global_batch_size=4, seq_len=7)
  assert s.steps_per_epoch == (999 // 4) // 7
  n = 999 // 4
  prev = None
  for step in range(s.steps_per_epoch):
    b = s.batch(step)
    assert b['inputs'].shape == (4, 7) and b['inputs'].dtype == np.int32
    np.testing.assert_array_equal(b['targets'], b['inputs'] + 1)
    np.testing.assert_array_equal(b['inputs'][:, 0], np.arange(4) * n + step * 7)
    if prev is not None:  # row b continues where row b of the previous step ended
      np.testing.assert_array_equal(b['inputs'][:, 0], prev['inputs'][:, -1] + 1)
    prev = b
  # Stateless by step and wrapping around epochs.
  np.testing.assert_array_equal(s.batch(3)['inputs'], s.batch(3 + 5 * s.steps_per_epoch)['inputs'])
  assert s.starts_epoch(0) and s.starts_epoch(s.steps_per_epoch) and not s.starts_epoch(1)
  # Rows never overlap: every id read in an epoch is read once.
  seen = np.concatenate([s.batch(k)['inputs'].ravel() for k in range(s.steps_per_epoch)])
  assert len(np.unique(seen)) == len(seen) == 4 * 7 * s.steps_per_epoch


def test_process_sharding_union_is_global_batch():
  ids = np.random.default_rng(0).integers(0, 50, 5000).astype(np.int32)
  full = TrainStreams(ids, 8, 16)
  for step in (0, 5, 1000):
    parts = [TrainStreams(ids, 8, 16, process_index=p, process_count=4).batch(step) for p in range(4)]
    for key in ('inputs', 'targets'):
      assert all(p[key].shape == (2, 16) for p in parts)
      np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), full.batch(step)[key])
  with pytest.raises(ValueError):
    TrainStreams(ids, 6, 16, process_count=4)
  with pytest.raises(ValueError, match='too few'):
    TrainStreams(ids[:20], 8, 16)


@pytest.mark.parametrize('n,batch_size,seq_len', [(1000, 1, 64), (1001, 3, 10), (57, 8, 5), (10, 16, 4)])
@pytest.mark.parametrize('bos', [False, True])
def test_eval_batches_cover_every_symbol_once(n, batch_size, seq_len, bos):
  ids = _ids(n) + 1  # ids 1..n; bos id is 0
  batches = list(eval_batches(ids, batch_size, seq_len, bos_id=0 if bos else None))
  assert len(batches) == num_eval_batches(n, batch_size, seq_len, bos=bos)
  mask = np.concatenate([b['mask'] for b in batches], axis=1)
  inputs = np.concatenate([b['inputs'] for b in batches], axis=1)
  targets = np.concatenate([b['targets'] for b in batches], axis=1)
  assert all(b['inputs'].shape == (batch_size, seq_len) for b in batches)
  assert mask.sum() == (n if bos else n - 1)
  predicted = targets[mask > 0]
  expected = np.arange(1, n + 1) if bos else np.arange(2, n + 1)
  np.testing.assert_array_equal(np.sort(predicted), expected)  # each symbol exactly once
  # Contiguous streams carried across yields: within a row, every valid target follows its input.
  valid = mask > 0
  np.testing.assert_array_equal(targets[valid], inputs[valid] + 1)
  for row_inputs, row_mask in zip(inputs, valid):
    np.testing.assert_array_equal(np.diff(row_inputs[row_mask]), 1)
    assert np.all(np.diff(row_mask.astype(int)) <= 0)  # only the ragged end is masked


def test_eval_batches_process_sharding():
  ids = _ids(500)
  full = list(eval_batches(ids, 4, 9))
  parts = [list(eval_batches(ids, 4, 9, process_index=p, process_count=2)) for p in range(2)]
  for k, b in enumerate(full):
    for key in b:
      np.testing.assert_array_equal(np.concatenate([parts[0][k][key], parts[1][k][key]]), b[key])
