"""Tests for experiments/data/images.py: builders on tiny files the tests write, splits, batches, augment."""

import gzip
import io
import os
import pickle
import tarfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments.data import images as I
from experiments.data.errors import DataError

# ------------------------------------------------------------------------------------------------
# Tiny files.


def _write_idx(path, array, magic=None, truncate=0):
  array = np.asarray(array, np.uint8)
  magic = (0x0800 | array.ndim) if magic is None else magic
  header = magic.to_bytes(4, 'big') + b''.join(d.to_bytes(4, 'big') for d in array.shape)
  raw = header + array.tobytes()
  with gzip.open(path, 'wb') as f:
    f.write(raw[: len(raw) - truncate])


def _mnist_arrays(n, offset):
  """Image i is filled with (offset + i) % 256 so pixels identify the example; label = that % 10."""
  ids = (offset + np.arange(n)) % 256
  return np.broadcast_to(ids[:, None, None], (n, 28, 28)).astype(np.uint8), (ids % 10).astype(np.uint8)


def _write_mnist(folder, n_train=30, n_test=10):
  os.makedirs(folder, exist_ok=True)
  for split, n, offset in (('train', n_train, 0), ('t10k', n_test, 100)):
    images, labels = _mnist_arrays(n, offset)
    _write_idx(os.path.join(folder, f'{split}-images-idx3-ubyte.gz'), images)
    _write_idx(os.path.join(folder, f'{split}-labels-idx1-ubyte.gz'), labels)
  return folder


def _cifar_arrays(n, offset):
  """Image i: constant colour (offset + i) per channel (JPEG-safe); label = i % 10."""
  ids = offset + np.arange(n)
  images = np.empty((n, 32, 32, 3), np.uint8)
  images[...] = np.stack([ids * 7 % 256, ids * 13 % 256, ids * 29 % 256], -1)[:, None, None, :]
  return images, (ids % 10).astype(np.int64)


def _write_cifar_python(path, per_batch=4):
  with tarfile.open(path, 'w:gz') as tar:
    for k, name in enumerate(
      ['data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4', 'data_batch_5', 'test_batch']
    ):
      images, labels = _cifar_arrays(per_batch, 1000 + per_batch * k)
      blob = pickle.dumps(
        {b'data': images.transpose(0, 3, 1, 2).reshape(per_batch, -1), b'labels': labels.tolist()}
      )
      info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
      info.size = len(blob)
      tar.addfile(info, io.BytesIO(blob))


def _jpeg(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='JPEG', quality=95)
  return buffer.getvalue()


def _write_cifar_jpeg(path, n_train=20, n_test=10, corrupt=None):
  with tarfile.open(path, 'w') as tar:
    for split, n, offset in (('train', n_train, 0), ('test', n_test, 500)):
      images, labels = _cifar_arrays(n, offset)
      for i in range(n):
        name = f'{split}/{I.CIFAR10_CLASSES[labels[i]]}/{i:04d}.jpg'
        blob = b'\xff\xd8 not a jpeg' if name == corrupt else _jpeg(images[i])
        info = tarfile.TarInfo(name)
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))


# ------------------------------------------------------------------------------------------------
# MNIST builder.


def test_mnist_builder_splits_and_pairs(tmp_path):
  manual = _write_mnist(tmp_path / 'mnist')
  data = I.load_image_splits(
    'mnist', manual_dir=manual, data_dir=tmp_path / 'tfds', num_valid=5, download=False
  )
  assert data.source == 'official' and data.num_classes == 10
  sizes = {k: len(v[1]) for k, v in data.splits.items()}
  assert sizes == {'train': 25, 'valid': 5, 'test': 10}
  for _split, (images, labels) in data.splits.items():
    assert images.dtype == np.uint8 and images.shape[1:] == (28, 28, 1) and labels.dtype == np.int32
    ids = images[:, 0, 0, 0].astype(np.int64)
    np.testing.assert_array_equal(labels, ids % 10)  # each image kept its own label
    assert (images == images[:, :1, :1, :]).all()
  train_ids = set(data['train'][0][:, 0, 0, 0].tolist())
  valid_ids = set(data['valid'][0][:, 0, 0, 0].tolist())
  assert not train_ids & valid_ids and train_ids | valid_ids == set(range(30))
  assert set(data['test'][0][:, 0, 0, 0].tolist()) == set(range(100, 110))
  # The fast proto reader agrees with TFDS's own (TensorFlow-free) decoder.
  builder = I.MnistIdx(data_dir=tmp_path / 'tfds', file_format='array_record')
  records = builder.as_data_source(split='test')
  generic = [records[i] for i in range(len(records))]
  fast_images, fast_labels = I._read_split(builder, 'test')
  np.testing.assert_array_equal(fast_images, np.stack([r['image'] for r in generic]))
  np.testing.assert_array_equal(fast_labels, [r['label'] for r in generic])
  # Loading again (already prepared) with the same seed gives the same validation set.
  again = I.load_image_splits(
    'mnist', manual_dir=manual, data_dir=tmp_path / 'tfds', num_valid=5, download=False
  )
  np.testing.assert_array_equal(again['valid'][0], data['valid'][0])


def test_validation_split_deterministic_and_disjoint():
  images = np.arange(100, dtype=np.uint8)[:, None, None, None]
  labels = np.arange(100, dtype=np.int32)
  (tr, trl), (va, val) = I.split_validation(images, labels, num_valid=10, seed=0)
  (_, _), (va2, _) = I.split_validation(images, labels, num_valid=10, seed=0)
  (_, _), (va3, _) = I.split_validation(images, labels, num_valid=10, seed=1)
  np.testing.assert_array_equal(va, va2)
  assert not np.array_equal(va, va3)
  assert len(tr) == 90 and len(va) == 10 and not set(trl) & set(val)
  assert sorted([*trl, *val]) == list(range(100))


def test_mnist_missing_files_lists_them(tmp_path):
  folder = tmp_path / 'partial'
  _write_mnist(folder)
  os.remove(folder / 't10k-labels-idx1-ubyte.gz')
  with pytest.raises(DataError, match='t10k-labels-idx1-ubyte.gz') as e:
    I.load_image_splits('mnist', manual_dir=folder, data_dir=tmp_path / 'tfds', download=False)
  assert 'train-images' not in str(e.value) and '\n' not in str(e.value)
  with pytest.raises(DataError, match='does not exist'):
    I.load_image_splits('mnist', manual_dir=tmp_path / 'nowhere', data_dir=tmp_path / 'tfds')


def test_mnist_truncated_and_wrong_magic(tmp_path):
  images, labels = _mnist_arrays(5, 0)
  _write_idx(tmp_path / 'short.gz', images, truncate=100)
  with pytest.raises(DataError, match='truncated'):
    I.read_idx(str(tmp_path / 'short.gz'), 0x803)
  with open(tmp_path / 'cut.gz', 'wb') as f:  # gzip stream cut in the middle
    _write_idx(tmp_path / 'full.gz', images)
    f.write((tmp_path / 'full.gz').read_bytes()[:40])
  with pytest.raises(DataError, match='truncated'):
    I.read_idx(str(tmp_path / 'cut.gz'), 0x803)
  _write_idx(tmp_path / 'magic.gz', images, magic=0x00000801)
  with pytest.raises(DataError, match='magic'):
    I.read_idx(str(tmp_path / 'magic.gz'), 0x803)
  # Through the builder: labels and images swapped -> magic number error.
  folder = _write_mnist(tmp_path / 'swapped')
  _write_idx(folder / 'train-labels-idx1-ubyte.gz', labels, magic=0x803)
  with pytest.raises(DataError, match='magic'):
    I.load_image_splits('mnist', manual_dir=folder, data_dir=tmp_path / 'tfds', download=False)


# ------------------------------------------------------------------------------------------------
# CIFAR-10 builder.


def test_cifar_official_archive_preferred_over_jpeg(tmp_path):
  manual = tmp_path / 'cifar'
  manual.mkdir()
  _write_cifar_python(manual / 'cifar-10-python.tar.gz')
  _write_cifar_jpeg(manual / 'cifar10-jpeg.tar')
  data = I.load_image_splits(
    'cifar10', manual_dir=manual, data_dir=tmp_path / 'tfds', num_valid=4, download=False
  )
  assert data.source == 'official'
  assert {k: len(v[1]) for k, v in data.splits.items()} == {'train': 16, 'valid': 4, 'test': 4}
  want_train, want_train_labels = _cifar_arrays(20, 1000)
  got = np.concatenate([data['train'][0], data['valid'][0]])
  got_labels = np.concatenate([data['train'][1], data['valid'][1]])
  key = lambda x: x[:, 0, 0, :].astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])  # colour -> int
  order, ref = np.argsort(key(got)), np.argsort(key(want_train))
  np.testing.assert_array_equal(got[order], want_train[ref])  # exact pixels, HWC layout
  np.testing.assert_array_equal(got_labels[order], want_train_labels[ref])
  test_images, test_labels = _cifar_arrays(4, 1000 + 4 * 5)  # labels 0..3 distinct
  order = np.argsort(data['test'][1])
  np.testing.assert_array_equal(data['test'][0][order], test_images)
  np.testing.assert_array_equal(data['test'][1][order], test_labels)


def test_cifar_binary_archive(tmp_path):
  images, labels = _cifar_arrays(3, 7)
  records = np.concatenate(
    [labels.astype(np.uint8)[:, None], images.transpose(0, 3, 1, 2).reshape(3, -1)], 1
  ).tobytes()
  with tarfile.open(tmp_path / 'cifar-10-binary.tar.gz', 'w:gz') as tar:
    for name in ('data_batch_1.bin', 'test_batch.bin'):
      info = tarfile.TarInfo(f'cifar-10-batches-bin/{name}')
      info.size = len(records)
      tar.addfile(info, io.BytesIO(records))
  out = I.read_cifar10_official(str(tmp_path / 'cifar-10-binary.tar.gz'))
  np.testing.assert_array_equal(out['train'][0], images)
  np.testing.assert_array_equal(out['test'][1], labels)


def test_cifar_jpeg_copy(tmp_path):
  manual = tmp_path / 'cifar'
  manual.mkdir()
  _write_cifar_jpeg(manual / 'cifar10-jpeg.tar')
  data = I.load_image_splits(
    'cifar10', manual_dir=manual, data_dir=tmp_path / 'tfds', num_valid=4, download=False
  )
  assert data.source == 'jpeg-copy'
  assert {k: len(v[1]) for k, v in data.splits.items()} == {'train': 16, 'valid': 4, 'test': 10}
  images, labels = data['test']
  assert images.shape == (10, 32, 32, 3) and images.dtype == np.uint8
  want_images, want_labels = _cifar_arrays(10, 500)
  np.testing.assert_array_equal(np.sort(labels), np.sort(want_labels))
  # One test image per class; TFDS stores examples in its own (fixed) order, so compare by label.
  got, want = images[np.argsort(labels)], want_images[np.argsort(want_labels)]
  assert np.abs(got.astype(int) - want.astype(int)).max() <= 3  # JPEG q95 of flat colours


def test_cifar_corrupt_jpeg_and_missing(tmp_path):
  manual = tmp_path / 'cifar'
  manual.mkdir()
  _write_cifar_jpeg(manual / 'cifar10-jpeg.tar', corrupt='train/cat/0003.jpg')
  with pytest.raises(DataError, match='train/cat/0003.jpg'):
    I.load_image_splits('cifar10', manual_dir=manual, data_dir=tmp_path / 'tfds', download=False)
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(DataError, match='cifar-10-python.tar.gz.*cifar10-jpeg.tar'):
    I.load_image_splits('cifar10', manual_dir=empty, data_dir=tmp_path / 'tfds', download=False)
  (empty / 'cifar-10-python.tar.gz').write_bytes(b'\x1f\x8b\x08 truncated')
  with pytest.raises(DataError, match='truncated'):
    I.load_image_splits('cifar10', manual_dir=empty, data_dir=tmp_path / 'tfds', download=False)


# ------------------------------------------------------------------------------------------------
# Batches.


def test_image_batches_stateless_epochs_and_sharding():
  n = 50
  images = np.arange(n, dtype=np.uint8)[:, None, None, None]
  labels = np.arange(n, dtype=np.int32)
  full = I.ImageBatches(images, labels, global_batch_size=8, seed=3)
  assert full.steps_per_epoch == 6
  epoch0 = np.concatenate([full.batch(s)['label'] for s in range(6)])
  assert len(set(epoch0.tolist())) == 48  # no repeats inside an epoch
  epoch1 = np.concatenate([full.batch(s)['label'] for s in range(6, 12)])
  assert not np.array_equal(epoch0, epoch1)
  fresh = I.ImageBatches(images, labels, global_batch_size=8, seed=3)  # resume at step 9
  np.testing.assert_array_equal(fresh.batch(9)['label'], full.batch(9)['label'])
  np.testing.assert_array_equal(fresh.batch(2)['image'][:, 0, 0, 0], full.batch(2)['label'])
  shards = [I.ImageBatches(images, labels, 8, 3, process_index=p, process_count=4) for p in range(4)]
  for step in (0, 7):
    parts = [s.batch(step) for s in shards]
    assert all(p['label'].shape == (2,) and p['image'].dtype == np.uint8 for p in parts)
    np.testing.assert_array_equal(np.concatenate([p['label'] for p in parts]), full.batch(step)['label'])
  assert not np.array_equal(
    I.ImageBatches(images, labels, 8, seed=4).batch(0)['label'], full.batch(0)['label']
  )


def test_eval_batches_cover_split_with_mask():
  images = np.arange(1, 24, dtype=np.uint8)[:, None, None, None]
  labels = np.arange(23, dtype=np.int32)
  batches = list(I.eval_batches(images, labels, batch_size=10))
  assert [b['image'].shape[0] for b in batches] == [10, 10, 10]
  mask = np.concatenate([b['mask'] for b in batches])
  assert mask.sum() == 23 and not mask[23:].any()
  np.testing.assert_array_equal(np.concatenate([b['label'] for b in batches])[mask], labels)
  assert (batches[-1]['image'][3:] == 0).all()
  # Two processes: each gets half of every global batch, together the same rows.
  halves = [list(I.eval_batches(images, labels, 10, process_index=p, process_count=2)) for p in range(2)]
  for k, b in enumerate(batches):
    np.testing.assert_array_equal(np.concatenate([halves[0][k]['label'], halves[1][k]['label']]), b['label'])
    np.testing.assert_array_equal(np.concatenate([halves[0][k]['mask'], halves[1][k]['mask']]), b['mask'])


# ------------------------------------------------------------------------------------------------
# Augmentation.


def _windows(image, pad, flip):
  """All crops (and mirrored crops) the augmentation may produce from one uint8 image."""
  h, w = image.shape[:2]
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
  out = [padded[i : i + h, j : j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
  return out + [x[:, ::-1] for x in out] if flip else out


def _match(output, image, pad, flip):
  return [k for k, window in enumerate(_windows(image, pad, flip)) if np.array_equal(window, output)]


def test_augment_mnist_is_real_shift():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (64, 28, 28, 1), dtype=np.uint8)
  out = jax.jit(I.augment, static_argnums=2)(jax.random.key(0), images, 'mnist')
  assert out.shape == (64, 28, 28, 1) and out.dtype == jnp.float32
  pixels = np.rint(np.asarray(out) * 255).astype(np.uint8)
  found = [_match(pixels[b], images[b], pad=1, flip=False) for b in range(64)]
  assert all(len(f) == 1 for f in found)  # each output is exactly one shifted window
  assert len({f[0] for f in found}) >= 5  # offsets differ across the batch
  assert any(f[0] != 4 for f in found)  # 4 = the centre (unshifted) window
  wide = np.rint(np.asarray(I.augment(jax.random.key(1), images[:8], 'mnist', pad=4)) * 255).astype(np.uint8)
  assert all(len(_match(wide[b], images[b], pad=4, flip=False)) == 1 for b in range(8))


def test_augment_cifar_shift_flip_and_normalisation():
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
  traces = []

  @jax.jit
  def step(key, x):
    traces.append(1)
    return I.augment(key, x, 'cifar10')

  out = step(jax.random.key(1), images)
  step(jax.random.key(2), images)
  assert len(traces) == 1  # no retrace for a new key
  assert out.shape == (64, 32, 32, 3) and out.dtype == jnp.float32
  pixels = np.rint((np.asarray(out) * np.array(I.CIFAR10_STD) + np.array(I.CIFAR10_MEAN)) * 255)
  pixels = pixels.astype(np.uint8)
  found = [_match(pixels[b], images[b], pad=2, flip=True) for b in range(64)]
  assert all(len(f) == 1 for f in found)
  flipped = sum(f[0] >= 25 for f in found)
  assert 10 < flipped < 54  # both flipped and unflipped examples occur
  # Eval preprocessing: per-channel standardisation, no shift.
  ev = np.asarray(I.preprocess(images, 'cifar10'))
  np.testing.assert_allclose(ev, (images / 255.0 - I.CIFAR10_MEAN) / I.CIFAR10_STD, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    np.asarray(I.preprocess(images[..., :1], 'mnist')), images[..., :1] / 255.0, rtol=1e-6
  )


# ------------------------------------------------------------------------------------------------
# Real data (../shared/data via HYPER_DATA_DIR).


def _real_dir(name):
  root = os.environ.get('HYPER_DATA_DIR')
  if not root or not os.path.isdir(os.path.join(root, name)):
    pytest.skip(f'real {name} data needs HYPER_DATA_DIR with a {name}/ folder')
  return os.path.join(root, name)


def test_real_mnist(tmp_path):
  folder = _real_dir('mnist')
  data = I.load_image_splits('mnist', manual_dir=folder, data_dir=tmp_path, download=False)
  assert {k: len(v[1]) for k, v in data.splits.items()} == {'train': 55000, 'valid': 5000, 'test': 10000}
  assert data.source == 'official'
  for images, labels in data.splits.values():
    assert images.shape[1:] == (28, 28, 1) and set(np.unique(labels)) == set(range(10))
  assert abs(data['train'][0].mean() / 255 - 0.1307) < 0.002  # the usual MNIST mean


@pytest.mark.slow
def test_real_cifar10(tmp_path):
  folder = _real_dir('cifar10')
  data = I.load_image_splits('cifar10', manual_dir=folder, data_dir=tmp_path, download=False)
  assert {k: len(v[1]) for k, v in data.splits.items()} == {'train': 45000, 'valid': 5000, 'test': 10000}
  official = any(os.path.exists(os.path.join(folder, f)) for f in I.CIFAR10_OFFICIAL_FILES)
  assert data.source == ('official' if official else 'jpeg-copy')
  train = np.concatenate([data['train'][0], data['valid'][0]])
  assert np.bincount(np.concatenate([data['train'][1], data['valid'][1]])).tolist() == [5000] * 10
  np.testing.assert_allclose(train.reshape(-1, 3).mean(0) / 255, I.CIFAR10_MEAN, atol=0.01)
