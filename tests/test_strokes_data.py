"""experiments/data/strokes.py: npz loader, IAM-OnDB XML builder on files the tests write, normalisation,
augmentation and the packed streams (every line read once, whole); the shared UNIPEN file when present."""

import itertools
import os
import tarfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.data import strokes
from experiments.data.errors import DataError


def _random_lines(rng, lengths):
  lines = []
  for n in lengths:
    pts = np.zeros((n, 3), np.int16)
    pts[1:, :2] = rng.integers(-20, 21, (n - 1, 2))
    pts[:, 2] = rng.random(n) < 0.05
    pts[-1, 2] = 1
    lines.append(pts)
  return lines


def _write_npz(path, splits):
  arrays = {}
  for s, lines in splits.items():
    arrays[f'{s}_points'] = np.concatenate(lines)
    arrays[f'{s}_offsets'] = np.concatenate([[0], np.cumsum([len(x) for x in lines])]).astype(np.int64)
  np.savez(path, **arrays)
  return str(path)


def test_npz_loader_reads_lines_and_rejects_bad_files(tmp_path):
  rng = np.random.default_rng(0)
  splits = {s: _random_lines(rng, [5, 9, 3]) for s in strokes.SPLITS}
  data = strokes.load_npz(_write_npz(tmp_path / 'ok.npz', splits))
  assert len(data['valid']) == 3
  np.testing.assert_array_equal(data['valid'].line(1), splits['valid'][1].astype(np.float32))
  with pytest.raises(DataError, match=r'not found.*manual_dir'):
    strokes.load_npz(str(tmp_path / 'absent.npz'))
  bad = dict(splits)
  del bad['test']
  with pytest.raises(DataError, match=r'has no test_points, test_offsets'):
    strokes.load_npz(_write_npz(tmp_path / 'keys.npz', bad))
  nan = {s: [x.astype(np.float32) for x in v] for s, v in splits.items()}
  nan['train'][2][1, 0] = np.nan
  with pytest.raises(DataError, match=r'\(train\): non-finite coordinate in line 2 \(point 1\)'):
    strokes.load_npz(_write_npz(tmp_path / 'nan.npz', nan))
  empty = dict(splits, valid=splits['valid'][:1] + [np.zeros((0, 3), np.int16)] + splits['valid'][1:])
  with pytest.raises(DataError, match=r'\(valid\): line 1 has no points'):
    strokes.load_npz(_write_npz(tmp_path / 'empty.npz', empty))


def test_length_filter_and_normalizer_round_trip():
  rng = np.random.default_rng(1)
  lines = strokes.Lines.from_list([x.astype(np.float32) for x in _random_lines(rng, [299, 300, 1, 450])])
  kept = strokes.filter_lengths(lines, min_length=300)
  assert list(kept.lengths) == [300, 450]
  assert list(strokes.filter_lengths(lines, min_length=0, max_length=400).lengths) == [299, 300]
  norm = strokes.Normalizer.fit(kept)
  np.testing.assert_allclose(norm.std, kept.points[:, :2].astype(np.float64).std(0), rtol=1e-12)
  z = norm.normalize(kept.points)
  np.testing.assert_allclose(z[:, :2].std(0), [1.0, 1.0], rtol=1e-5)
  np.testing.assert_array_equal(z[:, 2], kept.points[:, 2])
  again = strokes.Normalizer.from_dict(norm.to_dict())
  np.testing.assert_allclose(again.denormalize(z), kept.points, rtol=1e-6, atol=1e-4)


def test_scale_augment_one_factor_pair_per_line():
  points = jnp.ones((2, 6, 3))
  ids = jnp.array([[0, 0, 0, 1, 1, 1], [1, 1, 2, 2, 2, 2]])
  out = np.asarray(jax.jit(strokes.scale_augment, static_argnums=2)(points, ids, 7))
  assert np.all(np.abs(out[..., :2] - 1) <= 0.1 + 1e-6)
  np.testing.assert_array_equal(out[..., 2], 1.0)
  # The same line gets the same factors wherever its points are; different lines differ.
  np.testing.assert_array_equal(out[0, 3], out[1, 0])
  np.testing.assert_array_equal(out[0, 0], out[0, 2])
  assert not np.allclose(out[0, 0], out[0, 3])


def _collect(streams_obj, batches):
  """Per stream: the (inputs, targets, reset) of its valid positions in reading order."""
  rows = {}
  for b in batches:
    for r in range(b['inputs'].shape[0]):
      m = b['mask'][r] > 0
      rows.setdefault(r, []).append((b['inputs'][r][m], b['targets'][r][m], b['reset'][r][m]))
  return {r: tuple(np.concatenate(parts) for parts in zip(*v)) for r, v in rows.items()}


def test_eval_streams_read_every_line_once_whole():
  rng = np.random.default_rng(2)
  lengths = [3, 400, 17, 5, 90, 1200, 33, 2, 61, 250]
  lines = strokes.Lines.from_list([x.astype(np.float32) for x in _random_lines(rng, lengths)])
  norm = strokes.Normalizer.fit(lines)
  z = norm.normalize(lines.points)
  ev = strokes.PackedStreams(lines, norm, batch_size=4, window=50, shuffle=False)
  batches = list(ev)
  assert len(batches) == ev.num_windows
  assert sum(b['mask'].sum() for b in batches) == sum(n - 1 for n in lengths)
  assert sum((b['reset'] & (b['mask'] > 0)).sum() for b in batches) == len(lengths)
  found = set()
  for inputs, targets, reset in _collect(ev, batches).values():
    starts = list(np.flatnonzero(reset)) + [len(reset)]
    for a, e in itertools.pairwise(starts):
      # Find the line by its content and check it is there whole: inputs = points[:-1], targets = [1:].
      n = e - a + 1
      cands = [i for i in range(len(lengths)) if lengths[i] == n and i not in found]
      match = [
        i for i in cands if np.array_equal(z[lines.offsets[i] : lines.offsets[i + 1] - 1], inputs[a:e])
      ]
      assert len(match) == 1
      i = match[0]
      np.testing.assert_array_equal(targets[a:e], z[lines.offsets[i] + 1 : lines.offsets[i + 1]])
      found.add(i)
  assert found == set(range(len(lengths)))
  # Two processes read disjoint halves of the same global batches.
  halves = [
    list(strokes.PackedStreams(lines, norm, 4, 50, shuffle=False, process_index=p, process_count=2))
    for p in (0, 1)
  ]
  for w, b in enumerate(batches):
    np.testing.assert_array_equal(
      np.concatenate([halves[0][w]['inputs'], halves[1][w]['inputs']]), b['inputs']
    )


def test_train_streams_are_stateless_by_step_reshuffled_and_dense():
  rng = np.random.default_rng(3)
  lengths = rng.integers(300, 1500, 200)
  lines = strokes.Lines.from_list([x.astype(np.float32) for x in _random_lines(rng, lengths)])
  norm = strokes.Normalizer.fit(lines)
  tr = strokes.PackedStreams(lines, norm, batch_size=8, window=100, shuffle=True, seed=5)
  spe = tr.steps_per_epoch
  assert spe == -(-int((lengths - 1).sum()) // 800)
  b3 = tr.batch(3)
  again = strokes.PackedStreams(lines, norm, batch_size=8, window=100, shuffle=True, seed=5)
  for k in b3:
    np.testing.assert_array_equal(again.batch(3)[k], b3[k])
  assert not np.array_equal(tr.batch(3)['inputs'], tr.batch(spe + 3)['inputs'])  # epoch 1 reshuffled
  assert tr.batch(spe)['line'].min() >= len(lengths)  # new augmentation ids every epoch
  assert tr.padding_fraction(0) < 0.03  # lines packed end to end: almost no padding
  assert np.all(tr.batch(0)['reset'][:, 0])  # every stream starts with a line


def _xml(strokes_xy, extra=''):
  body = ''.join(
    '<Stroke colour="black" start_time="0" end_time="1">'
    + ''.join(f'<Point x="{x}" y="{y}" time="{i}"/>' for i, (x, y) in enumerate(s))
    + '</Stroke>'
    for s in strokes_xy
  )
  return (
    f'<?xml version="1.0" encoding="ISO-8859-1"?><WhiteboardCaptureSession>'
    f'<WhiteboardDescription><SensorLocation corner="top_left"/></WhiteboardDescription>'
    f'<StrokeSet>{body}</StrokeSet>{extra}</WhiteboardCaptureSession>'
  ).encode()


def _random_strokes(rng, n_points, n_strokes):
  cuts = np.sort(rng.choice(np.arange(1, n_points), n_strokes - 1, replace=False))
  xy = np.cumsum(rng.integers(-30, 31, (n_points, 2)), axis=0) + [6000, 900]
  return np.split(xy, cuts)


def test_xml_to_stroke3_reproduces_points_exactly():
  rng = np.random.default_rng(4)
  written = _random_strokes(rng, 120, 7)
  parsed = strokes.parse_line_strokes(_xml(written), 'x.xml')
  assert len(parsed) == 7
  points = strokes.strokes_to_offsets(parsed)
  assert points.shape == (120, 3) and points[:, 2].sum() == 7 and points[-1, 2] == 1
  assert np.array_equal(points[0], [0, 0, 0])
  back = strokes.offsets_to_strokes(points, origin=written[0][0])
  assert len(back) == 7
  for a, b in zip(back, written):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(DataError, match=r'^bad\.xml: malformed XML .*lineStrokes-all\.tar\.gz$'):
    strokes.parse_line_strokes(b'<StrokeSet><Stroke><Point x="1" y="2"', 'bad.xml')
  with pytest.raises(DataError, match=r'^e\.xml: the line has no points'):
    strokes.parse_line_strokes(_xml([]), 'e.xml')
  with pytest.raises(DataError, match=r'not a finite integer'):
    strokes.parse_line_strokes(_xml([[(1, 2), ('nan', 3)]]), 'n.xml')


def _write_iam(folder, rng, bad_line=None):
  """Forms a01-000u (train), a01-001w (testset_v), a02-000x (testset_t), a03-000z (testset_f)."""
  files = tmp = folder / 'files'
  layout = {'a01-000u': [320, 100, 350], 'a01-001w': [330, 310], 'a02-000x': [305], 'a03-000z': [400, 20]}
  for form, lengths in layout.items():
    writer, base = form.split('-')[0], form[:-1]
    d = tmp / 'lineStrokes' / writer / base
    d.mkdir(parents=True, exist_ok=True)
    for k, n in enumerate(lengths, 1):
      (d / f'{form}-{k:02d}.xml').write_bytes(_xml(_random_strokes(rng, n, 5)))
  if bad_line:
    (tmp / 'lineStrokes' / 'a01' / 'a01-000' / 'a01-000u-09.xml').write_bytes(bad_line)
  manual = folder / 'manual'
  manual.mkdir()
  with tarfile.open(manual / strokes.IAM_ARCHIVE, 'w:gz') as tar:
    tar.add(files / 'lineStrokes', 'lineStrokes')
  for name, forms in (
    ('trainset.txt', 'a01-000u\n'),
    ('testset_v.txt', 'a01-001w\n'),
    ('testset_t.txt', 'a02-000x\n'),
    ('testset_f.txt', 'a03-000z\n'),
  ):
    (manual / name).write_text(forms)
  return manual


def test_iam_builder_splits_filter_and_records(tmp_path):
  rng = np.random.default_rng(5)
  manual = _write_iam(tmp_path, rng)
  data = strokes.load_strokes('iam_ondb', manual_dir=str(manual), data_dir=str(tmp_path / 'tfds'))
  # graves2013: train = trainset + testset_t + testset_f; the 100- and 20-point lines are dropped.
  assert sorted(data) == ['train', 'valid']
  assert sorted(data['train'].lengths) == [305, 320, 350, 400]
  assert sorted(data['valid'].lengths) == [310, 330]
  assert set(np.unique(data['train'].points[:, 2])) == {0.0, 1.0}
  prepared = tmp_path / 'tfds' / 'iam_ondb'
  assert any(
    p.name.endswith('.array_record-00000-of-00001') or '.array_record' in p.name for p in prepared.rglob('*')
  )
  counts = strokes.read_iam_ondb(str(manual), 'standard', 300)[1]
  assert counts == {
    'train_lines': 2,
    'train_short': 1,
    'valid_lines': 2,
    'valid_short': 0,
    'test_lines': 1,
    'test_short': 1,
  }


def test_iam_bad_inputs_fail_with_one_line(tmp_path):
  rng = np.random.default_rng(6)
  manual = _write_iam(tmp_path / 'a', rng, bad_line=b'<StrokeSet><Stroke>')
  with pytest.raises(DataError, match=r'a01-000u-09\.xml: malformed XML') as e:
    strokes.read_iam_ondb(str(manual))
  assert '\n' not in str(e.value)
  empty = tmp_path / 'b'
  empty.mkdir()
  for name in strokes.IAM_LISTS:
    (empty / name).write_text('a01-000u\n')
  with pytest.raises(DataError, match=r'no lineStrokes-all\.tar\.gz .*register at'):
    strokes.read_iam_ondb(str(empty))
  os.remove(empty / 'testset_v.txt')
  with pytest.raises(DataError, match=r'split list testset_v\.txt missing'):
    strokes.read_iam_ondb(str(empty))


DATA = os.environ.get('HYPER_DATA_DIR')


@pytest.mark.skipif(
  not DATA or not os.path.isfile(os.path.join(DATA or '', 'strokes', 'unipen_lines.npz')),
  reason='HYPER_DATA_DIR with strokes/unipen_lines.npz not available',
)
def test_real_unipen_counts():
  data = strokes.load_strokes('unipen_lines')
  assert {s: len(v) for s, v in data.items()} == {'train': 8938, 'valid': 1553, 'test': 1067}
  assert int(data['train'].lengths.max()) == 43166
  kept = strokes.filter_lengths(data['train'], min_length=300)
  assert len(kept) == 6268
  omni = strokes.load_strokes('omniglot')
  assert {s: len(v) for s, v in omni.items()} == {'train': 30000, 'valid': 1000, 'test': 1000}
