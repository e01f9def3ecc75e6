"""MNIST and CIFAR-10 for the paper's image experiments (sec. 4.1, appendix A.3.1/A.3.2).

TFDS builders that need no TensorFlow (uint8 `Tensor` features, `array_record` files read through
`builder.as_data_source()`), the paper's train/valid/test splits, stateless per-step batches, and jittable
augmentation that runs on the accelerator inside the train step.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import pickle
import socket
import tarfile
import urllib.parse
import zlib
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from experiments.data.errors import DataError

# --------------------------------------------------------------------------------------------------
# Sources.

MNIST_URL = 'https://storage.googleapis.com/cvdf-datasets/mnist/'  # the mirror TFDS itself uses
MNIST_FILES = {  # role -> standard file name (gzipped IDX)
  'train_images': 'train-images-idx3-ubyte.gz',
  'train_labels': 'train-labels-idx1-ubyte.gz',
  'test_images': 't10k-images-idx3-ubyte.gz',
  'test_labels': 't10k-labels-idx1-ubyte.gz',
}
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dims
_IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dim

CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
CIFAR10_OFFICIAL_FILES = ('cifar-10-python.tar.gz', 'cifar-10-binary.tar.gz')  # preferred first
CIFAR10_JPEG_FILE = 'cifar10-jpeg.tar'  # lossy JPEG copy: train|test/<class>/NNNN.jpg
CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')

IMAGE_SHAPES = {'mnist': (28, 28, 1), 'cifar10': (32, 32, 3)}
NUM_CLASSES = {'mnist': 10, 'cifar10': 10}
# Validation examples held out of the official training set (paper: 55k/5k/10k and 45k/5k/10k).
NUM_VALID = {'mnist': 5000, 'cifar10': 5000}

# Per-channel statistics of the official CIFAR-10 training set, in [0, 1] units.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _online(url: str, timeout: float = 3.0) -> bool:
  """Whether the host of `url` accepts a TCP connection quickly (so offline machines fail fast)."""
  parsed = urllib.parse.urlparse(url)
  try:
    with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout):
      return True
  except OSError:
    return False


def _find(folder: str | os.PathLike | None, names: Sequence[str]) -> str | None:
  """First of `names` that exists in `folder` (None when no folder or none exists)."""
  if folder is None:
    return None
  for name in names:
    path = os.path.join(os.fspath(folder), name)
    if os.path.isfile(path):
      return path
  return None


# --------------------------------------------------------------------------------------------------
# File readers (plain numpy; every problem a user can fix becomes a one-line DataError).


def read_idx(path: str, expected_magic: int) -> np.ndarray:
  """Reads a (gzipped) IDX file of unsigned bytes into uint8 [dims...], checking magic and length."""
  try:
    if path.endswith('.gz'):
      with gzip.open(path, 'rb') as f:
        raw = f.read()
    else:
      with open(path, 'rb') as f:
        raw = f.read()
  except (EOFError, OSError, zlib.error) as e:
    raise DataError(f'{path} is truncated or not a valid gzip file ({e}); download it again.') from e
  if len(raw) < 4:
    raise DataError(f'{path} is truncated ({len(raw)} bytes); download it again.')
  magic = int.from_bytes(raw[:4], 'big')
  if magic != expected_magic:
    raise DataError(
      f'{path} has IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x}: '
      'not the right MNIST file; check the file names or download them again.'
    )
  ndim = magic & 0xFF
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise DataError(f'{path} is truncated inside its IDX header; download it again.')
  dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], 'big') for i in range(ndim))
  size = int(np.prod(dims))
  if len(raw) - header != size:
    raise DataError(
      f'{path} holds {len(raw) - header} data bytes, its header {dims} says {size}: '
      'the file is truncated or corrupt; download it again.'
    )
  return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def read_mnist_files(files: dict[str, str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """role->path of the four IDX files -> {'train'|'test': (uint8 [N,28,28,1], int64 [N])}."""
  out = {}
  for split in ('train', 'test'):
    images = read_idx(files[f'{split}_images'], _IDX_IMAGES_MAGIC)
    labels = read_idx(files[f'{split}_labels'], _IDX_LABELS_MAGIC)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
      raise DataError(
        f'MNIST {split}: {images.shape} images for {labels.shape[0]} labels in '
        f'{files[f"{split}_images"]}; the files do not belong together, download them again.'
      )
    if labels.size and labels.max() > 9:
      raise DataError(
        f'MNIST {split}: label {labels.max()} > 9 in {files[f"{split}_labels"]}; download it again.'
      )
    out[split] = (images[..., None], labels.astype(np.int64))
  return out


def _tar_error(path: str, e: Exception) -> DataError:
  return DataError(f'{path} is truncated or not a valid tar archive ({e}); download it again.')


def read_cifar10_official(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Official cifar-10-python.tar.gz (pickled batches) or cifar-10-binary.tar.gz -> split -> arrays."""
  parts: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {'train': [], 'test': []}
  try:
    with tarfile.open(path, 'r:*') as tar:
      for member in tar:
        base = os.path.basename(member.name)
        stem = base.removesuffix('.bin')
        if not member.isfile() or not (stem.startswith('data_batch_') or stem == 'test_batch'):
          continue
        raw = tar.extractfile(member).read()
        if base.endswith('.bin'):  # records of 1 label byte + 3072 pixel bytes
          if len(raw) % 3073:
            raise DataError(f'{path}: {member.name} is truncated ({len(raw)} bytes); download it again.')
          rec = np.frombuffer(raw, np.uint8).reshape(-1, 3073)
          labels, pixels = rec[:, 0].astype(np.int64), rec[:, 1:]
        else:
          try:
            batch = pickle.loads(raw, encoding='bytes')
          except Exception as e:  # pickle raises many kinds on garbage
            raise DataError(
              f'{path}: {member.name} is not a readable CIFAR-10 pickle ({e}); download it again.'
            ) from e
          pixels = np.asarray(batch[b'data'], np.uint8)
          labels = np.asarray(batch[b'labels'], np.int64)
        if pixels.ndim != 2 or pixels.shape[1] != 3072 or len(pixels) != len(labels):
          raise DataError(
            f'{path}: {member.name} has data {pixels.shape} for {len(labels)} labels; download it again.'
          )
        images = pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW rows -> HWC
        parts['test' if stem == 'test_batch' else 'train'].append((stem, images, labels))
  except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
    raise _tar_error(path, e) from e
  out = {}
  for split, batches in parts.items():
    if not batches:
      raise DataError(
        f'{path} holds no CIFAR-10 {split} batches (data_batch_N / test_batch); '
        'download cifar-10-python.tar.gz again.'
      )
    batches.sort(key=lambda b: b[0])
    out[split] = (np.concatenate([b[1] for b in batches]), np.concatenate([b[2] for b in batches]))
  return out


def _decode_jpegs(blobs: list[tuple[str, bytes]]) -> list[np.ndarray]:
  """Decodes [(name, jpeg bytes)] to uint8 [32,32,3] arrays; raises DataError on a corrupt file."""
  from PIL import Image  # only needed for the JPEG copy

  out = []
  for name, blob in blobs:
    try:
      with Image.open(io.BytesIO(blob)) as im:
        array = np.asarray(im.convert('RGB'), np.uint8)
    except Exception as e:  # Pillow raises OSError/SyntaxError/ValueError on bad bytes
      raise DataError(f'{name} is not a readable JPEG ({e}); replace the archive.') from e
    if array.shape != (32, 32, 3):
      raise DataError(f'{name} is {array.shape[1]}x{array.shape[0]}, expected 32x32; replace the archive.')
    out.append(array)
  return out


def read_cifar10_jpeg(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """The JPEG copy (train|test/<class>/NNNN.jpg in a tar) -> split -> (uint8 [N,32,32,3], int64 [N]).

  Examples are ordered by (class, file name). Decoding is serial: ~0.2 ms of CPU per 32x32 JPEG (~10 s
  for all 60k), and on 2 shared cores a process pool measured no faster (and forking a process that
  already runs JAX's threads risks deadlocks).
  """
  blobs: dict[str, list[tuple[str, int, bytes]]] = {'train': [], 'test': []}
  class_index = {c: i for i, c in enumerate(CIFAR10_CLASSES)}
  try:
    with tarfile.open(path, 'r:*') as tar:
      for member in tar:
        parts = member.name.lstrip('./').split('/')
        if not member.isfile() or len(parts) != 3 or parts[0] not in blobs:
          continue
        if parts[1] not in class_index:
          raise DataError(
            f'{path}: unknown class folder {parts[1]!r} in {member.name}; expected one of '
            f'{", ".join(CIFAR10_CLASSES)}.'
          )
        blobs[parts[0]].append(
          (f'{path}:{member.name}', class_index[parts[1]], tar.extractfile(member).read())
        )
  except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
    raise _tar_error(path, e) from e
  out = {}
  for split, items in blobs.items():
    if not items:
      raise DataError(f'{path} holds no {split}/<class>/*.jpg images; replace the archive.')
    items.sort(key=lambda t: (t[1], t[0]))
    images = _decode_jpegs([(name, blob) for name, _, blob in items])
    out[split] = (np.stack(images), np.array([label for _, label, _ in items], np.int64))
  return out


# --------------------------------------------------------------------------------------------------
# TFDS builders.


def _image_features(shape: tuple[int, int, int]) -> tfds.features.FeaturesDict:
  # A uint8 Tensor (not tfds.features.Image) keeps encode/decode free of TensorFlow.
  return tfds.features.FeaturesDict(
    {
      'image': tfds.features.Tensor(shape=shape, dtype=np.uint8, encoding=tfds.features.Encoding.BYTES),
      'label': tfds.features.ClassLabel(num_classes=10),
    }
  )


class _ImageBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared plumbing: a manual folder and whether downloading may be tried, given at construction."""

  def __init__(self, *, manual_dir: str | os.PathLike | None = None, download: bool = True, **kwargs):
    self._manual_folder = None if manual_dir is None else os.fspath(manual_dir)
    self._allow_download = download
    super().__init__(**kwargs)

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
    for i in range(len(labels)):
      yield i, {'image': images[i], 'label': int(labels[i])}

  def _splits(self, arrays: dict[str, tuple[np.ndarray, np.ndarray]]):
    return {split: self._generate_examples(*arrays[split]) for split in ('train', 'test')}


class MnistIdx(_ImageBuilder):
  """MNIST from the four standard gzipped IDX files (any gzip wrapper: no checksum on the .gz)."""

  name = 'hyper_mnist'
  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Put {", ".join(MNIST_FILES.values())} in the manual folder.'

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description='MNIST digits, uint8 [28,28,1]; 60k train / 10k test.',
      features=_image_features(IMAGE_SHAPES['mnist']),
      supervised_keys=('image', 'label'),
      homepage='http://yann.lecun.com/exdb/mnist/',
    )

  def _split_generators(self, dl_manager):
    return self._splits(read_mnist_files(self._resolve_files(dl_manager)))

  def _resolve_files(self, dl_manager) -> dict[str, str]:
    folder = self._manual_folder
    found = {role: _find(folder, (name, name.removesuffix('.gz'))) for role, name in MNIST_FILES.items()}
    if all(found.values()):
      return found
    if self._allow_download and _online(MNIST_URL):
      urls = {role: MNIST_URL + name for role, name in MNIST_FILES.items()}
      return {role: os.fspath(p) for role, p in dl_manager.download(urls).items()}
    missing = [MNIST_FILES[r] for r, p in found.items() if p is None]
    raise DataError(
      f'MNIST: missing {", ".join(missing)} in manual_dir={folder!r} and cannot download '
      f'from {MNIST_URL}; put the four standard IDX .gz files in that folder.'
    )


class Cifar10Files(_ImageBuilder):
  """CIFAR-10 from the official archive ('official') or the lossy JPEG copy ('jpeg_copy')."""

  name = 'hyper_cifar10'
  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [
    tfds.core.BuilderConfig(name='official', description='cifar-10-python.tar.gz (or -binary).'),
    tfds.core.BuilderConfig(
      name='jpeg_copy',
      description=f'{CIFAR10_JPEG_FILE}: JPEG q~75 copy; '
      'accuracy measured on it is not comparable to the official files.',
    ),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f'Put {CIFAR10_OFFICIAL_FILES[0]} (or {CIFAR10_OFFICIAL_FILES[1]}) in '
    f'the manual folder; {CIFAR10_JPEG_FILE} is used only without them.'
  )

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description='CIFAR-10, uint8 [32,32,3]; 50k train / 10k test.',
      features=_image_features(IMAGE_SHAPES['cifar10']),
      supervised_keys=('image', 'label'),
      homepage='https://www.cs.toronto.edu/~kriz/cifar.html',
    )

  def _split_generators(self, dl_manager):
    if self.builder_config.name == 'jpeg_copy':
      path = _find(self._manual_folder, (CIFAR10_JPEG_FILE,))
      if path is None:
        raise DataError(f'CIFAR-10: no {CIFAR10_JPEG_FILE} in manual_dir={self._manual_folder!r}.')
      return self._splits(read_cifar10_jpeg(path))
    path = _find(self._manual_folder, CIFAR10_OFFICIAL_FILES)
    if path is None:
      if not (self._allow_download and _online(CIFAR10_URL)):
        raise DataError(
          f'CIFAR-10: no {" or ".join(CIFAR10_OFFICIAL_FILES)} in manual_dir='
          f'{self._manual_folder!r} and cannot download {CIFAR10_URL}.'
        )
      path = os.fspath(dl_manager.download(CIFAR10_URL))
    return self._splits(read_cifar10_official(path))


# --------------------------------------------------------------------------------------------------
# Splits.


@dataclasses.dataclass(frozen=True)
class ImageData:
  """The paper's splits; `source` says which files they came from ('official' or 'jpeg-copy')."""

  splits: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (uint8 [N,H,W,C], int32 [N])
  source: str
  num_classes: int = 10

  def __getitem__(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    return self.splits[split]


def _read_split(builder: tfds.core.DatasetBuilder, split: str) -> tuple[np.ndarray, np.ndarray]:
  """All of one prepared split as (uint8 [N,H,W,C], int32 [N]), read without TensorFlow."""
  source = builder.as_data_source(split=split)  # array_record reader
  shape = builder.info.features['image'].shape
  try:  # Fast path, ~5x quicker than per-record TFDS decoding: parse the tf.Example protos directly.
    return _parse_records(source.data_source.__getitems__(range(len(source))), shape)
  except Exception:  # pylint: disable=broad-except  (TFDS internals moved: use the public decoder)
    pass
  n = len(source)
  images = np.empty((n, *shape), np.uint8)
  labels = np.empty((n,), np.int32)
  for start in range(0, n, 4096):
    records = source.__getitems__(range(start, min(n, start + 4096)))
    for j, record in enumerate(records):
      images[start + j] = record['image']
      labels[start + j] = record['label']
  return images, labels


def _parse_records(records: Sequence[bytes], shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
  from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top

  features = [tf_example_pb2.Example.FromString(r).features.feature for r in records]
  blob = b''.join(f['image'].bytes_list.value[0] for f in features)
  images = np.frombuffer(blob, np.uint8).reshape(len(features), *shape)
  labels = np.array([f['label'].int64_list.value[0] for f in features], np.int32).reshape(len(features))
  return images, labels


def split_validation(images: np.ndarray, labels: np.ndarray, num_valid: int, seed: int):
  """Draws `num_valid` training examples at random (fixed seed) as the validation set.

  Both parts keep the source order. Returns ((train_images, train_labels), (valid_images, valid_labels)).
  """
  if not 0 <= num_valid < len(labels):
    raise DataError(f'cannot hold out {num_valid} validation examples from {len(labels)}; lower num_valid.')
  perm = np.random.default_rng(seed).permutation(len(labels))
  valid, train = np.sort(perm[:num_valid]), np.sort(perm[num_valid:])
  return (images[train], labels[train]), (images[valid], labels[valid])


def load_image_splits(
  name: str,
  manual_dir: str | os.PathLike | None = None,
  data_dir: str | os.PathLike | None = None,
  validation_seed: int = 0,
  *,
  num_valid: int | None = None,
  download: bool = True,
) -> ImageData:
  """Loads 'mnist' or 'cifar10' as train/valid/test (55k/5k/10k, 45k/5k/10k) uint8 arrays.

  Prepares the TFDS data set in `data_dir` (TFDS default when None) on first use, from files in
  `manual_dir` (default `$HYPER_DATA_DIR/<name>` when that exists) or, when online and `download`,
  from the official URLs. CIFAR-10 prefers the official archive (in `data_dir` already prepared, in
  `manual_dir`, or downloaded) and falls back to the lossy JPEG copy, with `source='jpeg-copy'`.
  """
  if name not in IMAGE_SHAPES:
    raise DataError(f'unknown image data set {name!r}; use one of {", ".join(IMAGE_SHAPES)}.')
  if manual_dir is None and os.environ.get('HYPER_DATA_DIR'):
    candidate = os.path.join(os.environ['HYPER_DATA_DIR'], name)
    manual_dir = candidate if os.path.isdir(candidate) else None
  if manual_dir is not None and not os.path.isdir(manual_dir):
    raise DataError(
      f'manual_dir {os.fspath(manual_dir)!r} does not exist; create it and put the '
      f'{name} files there, or pass the folder that holds them.'
    )
  data_dir = None if data_dir is None else os.fspath(data_dir)
  kwargs = dict(manual_dir=manual_dir, download=download, data_dir=data_dir, file_format='array_record')

  if name == 'mnist':
    builder, source = MnistIdx(**kwargs), 'official'
  else:
    builder, source = Cifar10Files(config='official', **kwargs), 'official'
    official_here = _find(manual_dir, CIFAR10_OFFICIAL_FILES) is not None
    if not builder.is_prepared() and not official_here and not (download and _online(CIFAR10_URL)):
      builder, source = Cifar10Files(config='jpeg_copy', **kwargs), 'jpeg-copy'
      if not builder.is_prepared() and _find(manual_dir, (CIFAR10_JPEG_FILE,)) is None:
        wanted = ', '.join((*CIFAR10_OFFICIAL_FILES, CIFAR10_JPEG_FILE))
        raise DataError(
          f'CIFAR-10: none of {wanted} in manual_dir={manual_dir!r} and cannot download '
          f'{CIFAR10_URL}; put cifar-10-python.tar.gz in that folder.'
        )
  if not builder.is_prepared():
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))

  train, test = _read_split(builder, 'train'), _read_split(builder, 'test')
  num_valid = NUM_VALID[name] if num_valid is None else num_valid
  train, valid = split_validation(*train, num_valid=num_valid, seed=validation_seed)
  return ImageData(
    splits={'train': train, 'valid': valid, 'test': test}, source=source, num_classes=NUM_CLASSES[name]
  )


# --------------------------------------------------------------------------------------------------
# Batches (host side, numpy).


class ImageBatches:
  """Shuffled training batches, a pure function of the step: epoch e uses permutation(seed, e).

  Each epoch drops the last partial batch; process `process_index` gets rows
  [process_index * local_batch_size, (process_index + 1) * local_batch_size) of every global batch.
  """

  def __init__(
    self,
    images: np.ndarray,
    labels: np.ndarray,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
  ):
    if global_batch_size % process_count:
      raise ValueError(f'global_batch_size {global_batch_size} is not divisible by {process_count} processes')
    if len(images) != len(labels):
      raise ValueError(f'{len(images)} images but {len(labels)} labels')
    if len(labels) < global_batch_size:
      raise DataError(
        f'{len(labels)} examples cannot fill one batch of {global_batch_size}; lower the batch size.'
      )
    self.images, self.labels = images, np.asarray(labels, np.int32)
    self.global_batch_size = global_batch_size
    self.local_batch_size = global_batch_size // process_count
    self.seed, self.process_index, self.process_count = seed, process_index, process_count
    self.steps_per_epoch = len(labels) // global_batch_size
    self._cached: tuple[int, np.ndarray] | None = None

  def permutation(self, epoch: int) -> np.ndarray:
    if self._cached is None or self._cached[0] != epoch:
      self._cached = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.labels)))
    return self._cached[1]

  def batch(self, step: int) -> dict[str, np.ndarray]:
    epoch, index = divmod(int(step), self.steps_per_epoch)
    start = index * self.global_batch_size + self.process_index * self.local_batch_size
    rows = self.permutation(epoch)[start : start + self.local_batch_size]
    return {'image': self.images[rows], 'label': self.labels[rows]}


def eval_batches(
  images: np.ndarray, labels: np.ndarray, batch_size: int, process_index: int = 0, process_count: int = 1
) -> Iterator[dict[str, np.ndarray]]:
  """The whole split in order, in global batches of `batch_size`; the last is zero-padded.

  Yields this process's rows {'image': uint8, 'label': int32, 'mask': bool} (mask False on padding).
  """
  if batch_size % process_count:
    raise ValueError(f'batch_size {batch_size} is not divisible by {process_count} processes')
  local = batch_size // process_count
  n = len(labels)
  for start in range(0, n, batch_size):
    lo = start + process_index * local
    rows = np.arange(lo, lo + local)
    mask = rows < n
    rows = np.where(mask, rows, 0)
    image = np.where(mask[:, None, None, None], images[rows], 0).astype(np.uint8)
    label = np.where(mask, labels[rows], 0).astype(np.int32)
    yield {'image': image, 'label': label, 'mask': mask}


# --------------------------------------------------------------------------------------------------
# Augmentation and normalisation (jittable; run inside the train/eval step on the accelerator).


@dataclasses.dataclass(frozen=True)
class AugmentSpec:
  pad: int  # zero pixels added on every side before the random crop back to the input size
  flip: bool  # random horizontal flip
  mean: tuple[float, ...]  # per channel, in [0, 1] units
  std: tuple[float, ...]


AUGMENT = {
  'mnist': AugmentSpec(pad=1, flip=False, mean=(0.0,), std=(1.0,)),  # A.3.1: 30x30 -> 28x28
  'cifar10': AugmentSpec(pad=2, flip=True, mean=CIFAR10_MEAN, std=CIFAR10_STD),  # A.3.2: 36 -> 32
}


def preprocess(images: jax.Array, kind: str) -> jax.Array:
  """uint8 [B,H,W,C] -> float32: /255 for MNIST; per-channel (x - mean) / std for CIFAR-10."""
  spec = AUGMENT[kind]
  x = jnp.asarray(images).astype(jnp.float32) / 255.0
  return (x - jnp.asarray(spec.mean, jnp.float32)) / jnp.asarray(spec.std, jnp.float32)


normalize = preprocess


def augment(rng: jax.Array, images: jax.Array, kind: str, pad: int | None = None) -> jax.Array:
  """Random zero-pad-and-crop (and flip for CIFAR-10) of uint8 [B,H,W,C], then `preprocess`.

  Pads with black (0) pixels before normalising; `pad` (static) overrides the paper's 1 (MNIST, 30x30)
  or 2 (CIFAR-10, 36x36) pixels per side, e.g. 4 for the common 40x40 ResNet recipe.
  """
  spec = AUGMENT[kind]
  images = jnp.asarray(images)
  batch, height, width, channels = images.shape
  crop_rng, flip_rng = jax.random.split(rng)
  p = spec.pad if pad is None else pad
  padded = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))  # [B, H+2p, W+2p, C]
  offsets = jax.random.randint(crop_rng, (batch, 2), 0, 2 * p + 1)
  crop = lambda image, o: jax.lax.dynamic_slice(image, (o[0], o[1], 0), (height, width, channels))
  images = jax.vmap(crop)(padded, offsets)
  if spec.flip:
    flips = jax.random.bernoulli(flip_rng, 0.5, (batch,))
    images = jnp.where(flips[:, None, None, None], images[:, :, ::-1, :], images)
  return preprocess(images, kind)
