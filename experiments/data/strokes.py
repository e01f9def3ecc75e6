"""Pen trajectories as stroke-3 offsets: the shared `strokes` npz files, the `iam_ondb` TFDS builder, and
the batching, normalisation and augmentation of the handwriting task (paper section 4.3, Graves 2013 sec. 4).

A split is a `Lines`: `points` [N, 3] = (Δx, Δy, pen lifted after this point) for all lines end to end
and `offsets` [n + 1] (line i is points[offsets[i]:offsets[i + 1]]), the layout of sketch-rnn's
stroke-3 data and of `../shared/data/strokes/*.npz` (keys `<split>_points`, `<split>_offsets`).
The model reads point t and predicts point t + 1, so a line of n points gives n - 1 predictions.

Length policy. Lines shorter than `min_length` points are dropped (300 for IAM-OnDB as the paper).
Every other line is kept whole, however long (UNIPEN has training lines of 43,166 points): the task
reads lines through `PackedStreams`, which lays the lines end to end on `batch_size` streams and cuts
the streams into windows of `window` points; the recurrent state is carried from one window to the
next and reset where a line starts (the `reset` flags), so a long line is trained by truncated
backpropagation over windows with its state carried, and is evaluated exactly, as if it were read in
one piece. There is no padding inside a stream, only after the last line of the shorter streams: the
lines are dealt to streams longest first, each to the shortest stream so far, which balances the
streams to within one line. Training reshuffles the lines every epoch (`seed`, epoch); evaluation
reads every line of a split once, whole, in a fixed order.

Normalisation: Δx and Δy are divided by their standard deviations over the training split
(`Normalizer`, stored with the run, so that samples are written back in the data's own units); the
mean is not subtracted, so a zero offset stays "no movement" and scaling stays a scaling.
Augmentation (`scale_augment`, jittable): Δx and Δy of each line multiplied by factors drawn
uniformly from [1 - 0.1, 1 + 0.1], one pair per line and epoch, the same in all of a line's windows.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import os
import tarfile
import zlib
from collections.abc import Iterator
from typing import Any
from xml.etree import ElementTree

import numpy as np

from experiments.data.errors import DataError

SPLITS = ('train', 'valid', 'test')
NPZ_NAMES = {'unipen_lines': 'unipen_lines.npz', 'omniglot': 'omniglot.npz'}
NAMES = tuple(NPZ_NAMES) + ('iam_ondb',)

IAM_ARCHIVE = 'lineStrokes-all.tar.gz'
IAM_FOLDER = 'lineStrokes'
IAM_URL = 'https://fki.tic.heia-fr.ch/databases/iam-on-line-handwriting-database'
IAM_LISTS = ('trainset.txt', 'testset_v.txt', 'testset_t.txt', 'testset_f.txt')
# Which task lists make which split. Graves (2013) section 4: "we used the training set, test set and the
# larger of the validation sets for training and the smaller validation set for early-stopping"; his
# counts (5,364 / 1,438 / 1,518 / 3,859 lines for training / the two validation sets / test) make the
# smaller one validation set 1, testset_v.txt (counts in the order of the task's own numbering).
IAM_SPLIT_LISTS = {
  'graves2013': {'train': ('trainset.txt', 'testset_t.txt', 'testset_f.txt'), 'valid': ('testset_v.txt',)},
  'standard': {'train': ('trainset.txt',), 'valid': ('testset_v.txt',), 'test': ('testset_f.txt',)},
}


@dataclasses.dataclass(frozen=True)
class Lines:
  """One split: points [N, 3] float32 (Δx, Δy, eos in {0, 1}) and offsets int64 [n + 1]."""

  points: np.ndarray
  offsets: np.ndarray

  def __len__(self) -> int:
    return len(self.offsets) - 1

  @property
  def lengths(self) -> np.ndarray:
    return np.diff(self.offsets)

  def line(self, i: int) -> np.ndarray:
    return self.points[self.offsets[i] : self.offsets[i + 1]]

  @staticmethod
  def from_list(lines: list[np.ndarray]) -> Lines:
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in lines])]).astype(np.int64)
    points = np.concatenate(lines).astype(np.float32) if lines else np.zeros((0, 3), np.float32)
    return Lines(points, offsets)


def check_lines(points: np.ndarray, offsets: np.ndarray, where: str) -> Lines:
  """`Lines` from raw arrays, or a one-line DataError naming what is wrong in `where`."""
  points, offsets = np.asarray(points), np.asarray(offsets)
  if points.ndim != 2 or points.shape[1] != 3:
    raise DataError(
      f'{where}: points have shape {points.shape}, expected [N, 3] (dx, dy, pen lift); '
      f'this is not a stroke-3 file'
    )
  if offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != len(points):
    raise DataError(
      f'{where}: offsets must run from 0 to the number of points ({len(points):,}); '
      f'the file is truncated or not a stroke-3 file'
    )
  lengths = np.diff(offsets)
  if np.any(lengths <= 0):
    k = int(np.flatnonzero(lengths <= 0)[0])
    raise DataError(f'{where}: line {k} has no points; remove it or rebuild the file')
  values = points.astype(np.float32)
  if not np.all(np.isfinite(values)):
    row = int(np.flatnonzero(~np.isfinite(values).all(1))[0])
    line = int(np.searchsorted(offsets, row, side='right') - 1)
    raise DataError(
      f'{where}: non-finite coordinate in line {line} (point {row - offsets[line]}); '
      f'the file is corrupt, rebuild it'
    )
  if not np.all((values[:, 2] == 0) | (values[:, 2] == 1)):
    raise DataError(f'{where}: the pen column holds values other than 0 and 1; not a stroke-3 file')
  return Lines(values, offsets.astype(np.int64))


def load_npz(path: str, splits: tuple[str, ...] = SPLITS) -> dict[str, Lines]:
  """{split: Lines} from a stroke-3 npz (`<split>_points`, `<split>_offsets`); DataError on bad files."""
  if not os.path.isfile(path):
    raise DataError(
      f'stroke file {path} not found; copy it there (see ../shared/data/README.md) '
      f'or set config.data.manual_dir to the folder that holds it'
    )
  try:
    with np.load(path, allow_pickle=False) as z:
      missing = [f'{s}_{k}' for s in splits for k in ('points', 'offsets') if f'{s}_{k}' not in z.files]
      if missing:
        raise DataError(
          f'{path} has no {", ".join(missing)} (it holds {", ".join(z.files)}); '
          f'expected the stroke-3 layout <split>_points / <split>_offsets'
        )
      return {s: check_lines(z[f'{s}_points'], z[f'{s}_offsets'], f'{path} ({s})') for s in splits}
  except (OSError, ValueError, zlib.error, EOFError) as exc:
    if isinstance(exc, DataError):
      raise
    raise DataError(f'{path} is not a readable npz ({type(exc).__name__}: {exc}); fetch it again') from exc


def filter_lengths(lines: Lines, min_length: int = 0, max_length: int = 0) -> Lines:
  """The lines with min_length <= points (<= max_length when > 0), in their order."""
  n = lines.lengths
  keep = n >= max(min_length, 2)  # a line of one point has nothing to predict
  if max_length > 0:
    keep &= n <= max_length
  return Lines.from_list([lines.line(i) for i in np.flatnonzero(keep)])


# ---------------------------------------------------------------------------------------------------
# Normalisation and augmentation.


@dataclasses.dataclass(frozen=True)
class Normalizer:
  """Δx, Δy divided by std (their standard deviations over the training split); pen bit unchanged."""

  std: tuple[float, float]

  @staticmethod
  def fit(lines: Lines) -> Normalizer:
    std = lines.points[:, :2].astype(np.float64).std(axis=0)
    if not np.all(std > 0):
      raise DataError('the training split has no movement (zero standard deviation of the offsets)')
    return Normalizer((float(std[0]), float(std[1])))

  def _scale(self, xp):
    return xp.asarray([self.std[0], self.std[1], 1.0], np.float32)

  def normalize(self, points, xp=np):
    return points / self._scale(xp)

  def denormalize(self, points, xp=np):
    return points * self._scale(xp)

  def to_dict(self) -> dict[str, list[float]]:
    return {'std': list(self.std)}

  @staticmethod
  def from_dict(d: dict[str, Any]) -> Normalizer:
    return Normalizer(tuple(float(v) for v in d['std']))


def scale_augment(points, line_ids, seed: int, max_change: float = 0.1):
  """Jittable: (Δx, Δy) of each point times factors U[1 - max_change, 1 + max_change], one pair per id.

  points [..., 3] float, line_ids int [...] (the same id in every window of a line, a new one every
  epoch): the factors come from `jax.random.fold_in(PRNGKey(seed), id)`, so they depend on the line and
  epoch only, not on where the line's windows fall.
  """
  import jax
  import jax.numpy as jnp

  base = jax.random.PRNGKey(seed)
  keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(line_ids.reshape(-1).astype(jnp.uint32))
  factors = jax.vmap(lambda k: jax.random.uniform(k, (2,), jnp.float32, 1 - max_change, 1 + max_change))(keys)
  factors = factors.reshape(line_ids.shape + (2,))
  return jnp.concatenate([points[..., :2] * factors, points[..., 2:]], axis=-1)


# ---------------------------------------------------------------------------------------------------
# Streams of lines cut into windows.


def deal_lines(lengths: np.ndarray, num_streams: int) -> list[list[int]]:
  """Line indices per stream: longest first, each to the stream with the fewest points so far (LPT)."""
  order = np.argsort(-np.asarray(lengths), kind='stable')
  heap = [(0, b) for b in range(num_streams)]
  streams: list[list[int]] = [[] for _ in range(num_streams)]
  for i in order:
    total, b = heapq.heappop(heap)
    streams[b].append(int(i))
    heapq.heappush(heap, (total + int(lengths[i]), b))
  return streams


class PackedStreams:
  """Lines laid end to end on `batch_size` streams, read `window` predictions at a time.

  Batch arrays (this process's rows of the global batch): 'inputs' [b, window, 3] float32 (normalised
  point t), 'targets' [b, window, 3] (point t + 1), 'mask' [b, window] float32 (0 after a stream's last
  line), 'reset' [b, window] bool (True at the first point of a line: the state is zeroed before it),
  'line' [b, window] int32 (line index + epoch * number of lines: the augmentation's id).

  `shuffle=True` (training): the line order is drawn anew for every epoch from (seed, epoch), and an epoch
  is `steps_per_epoch` = ceil(predictions / (batch_size * window)) windows (a stream longer than that
  loses its tail in that epoch). `shuffle=False` (evaluation): one pass, every line whole, in
  `num_windows` windows.
  """

  def __init__(
    self,
    lines: Lines,
    normalizer: Normalizer,
    batch_size: int,
    window: int,
    *,
    shuffle: bool,
    seed: int = 0,
    process_index: int = 0,
    process_count: int = 1,
  ):
    if batch_size % process_count:
      raise ValueError(f'batch size {batch_size} does not split over {process_count} processes')
    if len(lines) == 0:
      raise DataError('no lines left to read (all shorter than min_length?); lower data.min_length')
    self.lines, self.batch_size, self.window = lines, batch_size, window
    self.shuffle, self.seed = shuffle, seed
    local = batch_size // process_count
    self.rows = slice(process_index * local, (process_index + 1) * local)
    self.points = normalizer.normalize(lines.points).astype(np.float32)
    self.predictions = lines.lengths - 1  # per line
    total = int(self.predictions.sum())
    if shuffle:
      self.num_windows = max(1, -(-total // (batch_size * window)))
    else:
      streams = deal_lines(self.predictions, batch_size)
      longest = max(int(self.predictions[s].sum()) for s in streams)
      self.num_windows = max(1, -(-longest // window))
    self._cached: tuple[int, tuple[np.ndarray, ...]] | None = None

  @property
  def steps_per_epoch(self) -> int:
    return self.num_windows

  def padding_fraction(self, epoch: int = 0) -> float:
    """Share of the batch positions that hold no prediction (the compute wasted on padding)."""
    src = self._layout(epoch)[0]
    return float((src < 0).mean())

  def _layout(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(src, reset, line) [local rows, num_windows * window]: index of the input point (-1: padding)."""
    if self._cached is not None and self._cached[0] == epoch:
      return self._cached[1]
    n = len(self.lines)
    if self.shuffle:
      rng = np.random.default_rng([self.seed, epoch])
      perm = rng.permutation(n)
      dealt = [[int(perm[i]) for i in s] for s in deal_lines(self.predictions[perm], self.batch_size)]
      dealt = [list(rng.permutation(s)) for s in dealt]  # longest-first dealing, random order within
    else:
      dealt = deal_lines(self.predictions, self.batch_size)
    size = self.num_windows * self.window
    rows = dealt[self.rows]
    src = np.full((len(rows), size), -1, np.int64)
    reset = np.zeros((len(rows), size), bool)
    line = np.zeros((len(rows), size), np.int32)
    starts, preds = self.lines.offsets[:-1], self.predictions
    for r, ids in enumerate(rows):
      if not ids:
        continue
      ids = np.asarray(ids, np.int64)
      seg = preds[ids]
      first = np.concatenate([[0], np.cumsum(seg)[:-1]])
      # src of the k-th prediction of a stream: its line's start + position within the line.
      within = np.arange(int(seg.sum())) - np.repeat(first, seg)
      idx = np.repeat(starts[ids], seg) + within
      k = min(len(idx), size)
      src[r, :k] = idx[:k]
      line[r, :k] = np.repeat(ids, seg)[:k] + epoch * n
      reset[r, first[first < size]] = True
    result = (src, reset, line)
    self._cached = (epoch, result)
    return result

  def _batch(self, epoch: int, w: int) -> dict[str, np.ndarray]:
    src, reset, line = self._layout(epoch)
    cols = slice(w * self.window, (w + 1) * self.window)
    s = src[:, cols]
    valid = s >= 0
    safe = np.where(valid, s, 0)
    inputs = np.where(valid[..., None], self.points[safe], 0.0).astype(np.float32)
    targets = np.where(valid[..., None], self.points[safe + valid], 0.0).astype(np.float32)
    return {
      'inputs': inputs,
      'targets': targets,
      'mask': valid.astype(np.float32),
      'reset': reset[:, cols].copy(),
      'line': line[:, cols].copy(),
    }

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """Training batch at `step` (stateless by step: epoch = step // steps_per_epoch)."""
    return self._batch(step // self.num_windows, step % self.num_windows)

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    """Every window of epoch 0 in order (evaluation: every line once, whole)."""
    for w in range(self.num_windows):
      yield self._batch(0, w)


# ---------------------------------------------------------------------------------------------------
# IAM-OnDB lineStrokes XML.


def parse_line_strokes(data: bytes, where: str) -> list[np.ndarray]:
  """The strokes of one lineStrokes XML file: a list of int64 [k, 2] absolute (x, y) arrays."""
  try:
    root = ElementTree.fromstring(data)
  except ElementTree.ParseError as exc:
    raise DataError(f'{where}: malformed XML ({exc}); replace the file from {IAM_ARCHIVE}') from exc
  stroke_set = root if root.tag == 'StrokeSet' else root.find('StrokeSet')
  if stroke_set is None:
    raise DataError(f'{where}: no <StrokeSet>; not an IAM-OnDB lineStrokes file')
  strokes = []
  for stroke in stroke_set.iter('Stroke'):
    xy = []
    for p in stroke.iter('Point'):
      try:
        x, y = float(p.attrib['x']), float(p.attrib['y'])
      except (KeyError, ValueError) as exc:
        raise DataError(
          f'{where}: a <Point> without numeric x and y ({p.attrib}); the file is corrupt'
        ) from exc
      if not (np.isfinite(x) and np.isfinite(y)) or x != round(x) or y != round(y):
        raise DataError(f'{where}: point ({x}, {y}) is not a finite integer coordinate; the file is corrupt')
      xy.append((int(x), int(y)))
    if xy:
      strokes.append(np.asarray(xy, np.int64))
  if not strokes:
    raise DataError(f'{where}: the line has no points; remove it from the manual dir or replace it')
  return strokes


def strokes_to_offsets(strokes: list[np.ndarray]) -> np.ndarray:
  """Absolute strokes -> stroke-3 int32 [n, 3]: (0, 0) first, then differences; pen bit at stroke ends."""
  xy = np.concatenate(strokes)
  pen = np.zeros(len(xy), np.int64)
  pen[np.cumsum([len(s) for s in strokes]) - 1] = 1
  d = np.diff(xy, axis=0, prepend=xy[:1])
  return np.concatenate([d, pen[:, None]], axis=1).astype(np.int32)


def offsets_to_strokes(points: np.ndarray, origin=(0, 0)) -> list[np.ndarray]:
  """Stroke-3 [n, 3] -> absolute strokes (the inverse of `strokes_to_offsets` given the first point)."""
  xy = np.cumsum(np.asarray(points)[:, :2], axis=0) + np.asarray(origin)
  ends = np.flatnonzero(np.asarray(points)[:, 2] > 0.5) + 1
  return [s for s in np.split(xy, ends) if len(s)]


def _line_form(name: str) -> str:
  """'a01-000u-01.xml' -> 'a01-000u' (the form id used in the task lists)."""
  return os.path.basename(name)[: -len('.xml')].rsplit('-', 1)[0]


def _iam_xml_files(folder: str) -> Iterator[tuple[str, bytes]]:
  """(name, bytes) of every lineStrokes XML file, from the archive or the extracted folder."""
  archive = os.path.join(folder, IAM_ARCHIVE)
  extracted = os.path.join(folder, IAM_FOLDER)
  if os.path.isfile(archive):
    try:
      with tarfile.open(archive, 'r:gz') as tar:
        for m in tar:
          if m.isfile() and m.name.endswith('.xml'):
            yield m.name, tar.extractfile(m).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
      raise DataError(
        f'{archive} is truncated or corrupt ({type(exc).__name__}: {exc}); fetch it again from {IAM_URL}'
      ) from exc
  elif os.path.isdir(extracted):
    for dirpath, _, files in sorted(os.walk(extracted)):
      for f in sorted(files):
        if f.endswith('.xml'):
          with open(os.path.join(dirpath, f), 'rb') as fh:
            yield os.path.join(dirpath, f), fh.read()
  else:
    raise DataError(
      f'iam_ondb: no {IAM_ARCHIVE} (or extracted {IAM_FOLDER}/) in manual dir {folder!r}; '
      f'register at {IAM_URL}, download it and put it there'
    )


def read_iam_ondb(
  folder: str | None, split_lists: str = 'graves2013', min_length: int = 300
) -> tuple[dict[str, list[tuple[str, np.ndarray]]], dict[str, int]]:
  """({split: [(line id, stroke-3 int32 [n, 3])...]}, counts) from the official files in `folder`.

  counts: '<split>_lines' kept and '<split>_short' dropped (under min_length points) per split.
  """
  if split_lists not in IAM_SPLIT_LISTS:
    raise DataError(
      f'unknown IAM-OnDB split assignment {split_lists!r}; use one of {", ".join(IAM_SPLIT_LISTS)}'
    )
  if not folder or not os.path.isdir(folder):
    raise DataError(
      f'iam_ondb: manual dir {folder!r} does not exist; put {IAM_ARCHIVE} and '
      f'{", ".join(IAM_LISTS)} from {IAM_URL} in a folder and pass it as manual_dir'
    )
  assignment = IAM_SPLIT_LISTS[split_lists]
  form_split = {}
  for split, names in assignment.items():
    for name in names:
      path = os.path.join(folder, name)
      if not os.path.isfile(path):
        raise DataError(f'iam_ondb: split list {name} missing from {folder}; copy it there from {IAM_URL}')
      with open(path) as f:
        for form in f.read().split():
          form_split[form] = split
  out: dict[str, list] = {s: [] for s in assignment}
  counts = {f'{s}_{k}': 0 for s in assignment for k in ('lines', 'short')}
  for name, data in _iam_xml_files(folder):
    split = form_split.get(_line_form(name))
    if split is None:
      continue
    points = strokes_to_offsets(parse_line_strokes(data, name))
    if len(points) < min_length:
      counts[f'{split}_short'] += 1
      continue
    counts[f'{split}_lines'] += 1
    out[split].append((os.path.basename(name)[: -len('.xml')], points))
  for split, items in out.items():
    if not items:
      raise DataError(
        f'iam_ondb: no line of at least {min_length} points for split {split!r} '
        f'({", ".join(assignment[split])}); check the archive and the split lists'
      )
    items.sort(key=lambda item: item[0])
  return out, counts


@functools.lru_cache(maxsize=1)
def _builders() -> dict[str, Any]:
  import tensorflow_datasets as tfds

  @dataclasses.dataclass(eq=False)
  class IamOnDbConfig(tfds.core.BuilderConfig):
    """Which task lists make which split (IAM_SPLIT_LISTS) and the paper's 300-point filter."""

    split_lists: str = 'graves2013'
    min_length: int = 300

  class IamOnDb(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """IAM On-Line Handwriting Database text lines as stroke-3 offsets (Liwicki & Bunke 2005)."""

    name = 'iam_ondb'
    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'Initial release.'}  # noqa: RUF012 (tfds convention)
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Register at {IAM_URL}; put {IAM_ARCHIVE} (or its extracted '
      f'{IAM_FOLDER}/ folder) and the task lists {", ".join(IAM_LISTS)} '
      f'in the manual dir.'
    )
    BUILDER_CONFIGS = [
      IamOnDbConfig(name='graves2013'),  # noqa: RUF012 (tfds convention)
      IamOnDbConfig(name='standard', split_lists='standard'),
    ]

    def _info(self):
      return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        homepage=IAM_URL,
        features=tfds.features.FeaturesDict(
          {
            'id': tfds.features.Text(),  # line id, e.g. a01-000u-01
            'points': tfds.features.Tensor(shape=(None, 3), dtype=np.int32),  # stroke-3
          }
        ),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,
      )

    def _split_generators(self, dl_manager):
      try:
        folder = os.fspath(dl_manager.manual_dir)
      except (AssertionError, ValueError):
        folder = getattr(dl_manager, '_manual_dir', None)
        folder = os.fspath(folder) if folder else None
      c = self.builder_config
      splits, counts = read_iam_ondb(folder, c.split_lists, c.min_length)
      self.info.metadata['counts'] = counts
      return {s: self._generate_examples(items) for s, items in splits.items()}

    def _generate_examples(self, items):
      for line_id, points in items:
        yield line_id, {'id': line_id, 'points': points}

  return {'IamOnDb': IamOnDb, 'IamOnDbConfig': IamOnDbConfig}


def prepare_iam_ondb(
  manual_dir: str | None, data_dir: str | None = None, split_lists: str = 'graves2013', min_length: int = 300
):
  """Prepares (once) and returns the `iam_ondb` TFDS builder (array_record files)."""
  import tensorflow_datasets as tfds

  builders = _builders()
  if split_lists not in IAM_SPLIT_LISTS:
    raise DataError(
      f'unknown IAM-OnDB split assignment {split_lists!r}; use one of {", ".join(IAM_SPLIT_LISTS)}'
    )
  if min_length == 300:  # the registered configs: the paper's filter
    config = split_lists
  else:
    config = builders['IamOnDbConfig'](
      name=f'{split_lists}_min{min_length}', split_lists=split_lists, min_length=min_length
    )
  builder = builders['IamOnDb'](data_dir=data_dir, file_format='array_record', config=config)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder


def read_iam_builder(builder) -> dict[str, Lines]:
  source = builder.as_data_source()
  out = {}
  for split in source:
    records = [source[split][i] for i in range(len(source[split]))]
    records.sort(key=lambda r: r['id'])
    out[split] = Lines.from_list([np.asarray(r['points']) for r in records])
  return out


def _default_strokes_dir() -> str | None:
  root = os.environ.get('HYPER_DATA_DIR')
  return os.path.join(root, 'strokes') if root else None


def load_strokes(
  name: str,
  manual_dir: str | None = None,
  data_dir: str | None = None,
  split_lists: str = 'graves2013',
  min_length: int = 300,
) -> dict[str, Lines]:
  """{split: Lines} in data units, before any length filter for the npz sets.

  name: 'unipen_lines' / 'omniglot' (npz in manual_dir, default $HYPER_DATA_DIR/strokes), 'iam_ondb'
  (TFDS, official files in manual_dir; its builder applies `min_length` and `split_lists`), or a path
  to a stroke-3 `.npz`.
  """
  if name.endswith('.npz'):
    return load_npz(name)
  if name in NPZ_NAMES:
    folder = manual_dir or _default_strokes_dir()
    if not folder:
      raise DataError(
        f'{name}: no folder for {NPZ_NAMES[name]}; set $HYPER_DATA_DIR (../shared/data) '
        f'or config.data.manual_dir'
      )
    return load_npz(os.path.join(folder, NPZ_NAMES[name]))
  if name == 'iam_ondb':
    return read_iam_builder(prepare_iam_ondb(manual_dir, data_dir, split_lists, min_length))
  raise DataError(f'unknown stroke data set {name!r}; use one of {", ".join(NAMES)} or a .npz path')


def synthetic_lines(num_lines: int, seed: int, mean_length: int = 120) -> Lines:
  """Small learnable 'handwriting' for tests (no files): loops drifting right, pen lifted between words.

  Each word is a run of cursive-like loops, (Δx, Δy) = (a + r cos φ, r sin φ) sampled every 0.6 rad
  with writer-specific a and r and a little noise; a pen-up jump separates words.
  """
  rng = np.random.default_rng(seed)
  lines = []
  for _ in range(num_lines):
    n = int(rng.integers(mean_length // 2, mean_length * 3 // 2))
    slant, radius = rng.uniform(1.0, 2.0), rng.uniform(2.0, 4.0)
    phase = np.arange(n) * 0.6 + rng.uniform(0, 2 * np.pi)
    pts = np.zeros((n, 3), np.float32)
    pts[1:, 0] = slant + radius * np.cos(phase[1:]) + rng.normal(0, 0.2, n - 1)
    pts[1:, 1] = radius * np.sin(phase[1:]) + rng.normal(0, 0.2, n - 1)
    ends = np.arange(int(rng.integers(12, 20)), n - 1, int(rng.integers(15, 25)))
    pts[ends, 2] = 1.0
    pts[ends[ends + 1 < n] + 1, 0] += 8.0  # the jump to the next word
    pts[-1, 2] = 1.0
    lines.append(np.round(pts, 1))
  return Lines.from_list(lines)
