"""Character corpora as int ids: TFDS builders for PTB characters and enwik8, plus the synthetic corpus.

`load_char_corpus(name)` returns a `CharCorpus` (int32 ids per split + vocabulary) for 'synthetic',
'ptb_char' or 'enwik8' (or a prepared `.npz` path written by `export_ids`). The TFDS builders
(`PtbChar`, `Enwik8`; file_format='array_record', read with `as_data_source()`, no TensorFlow needed)
read the official files from a manual folder when they are there, and download the official archive
otherwise; with neither, they fail at once with a one-line `DataError`. tensorflow-datasets is
imported lazily, so a machine with a prepared `.npz` needs no tfds.

Symbols: PTB's `ptb.char.*.txt` hold one sentence per line, characters separated by single spaces,
`_` between words; the symbols are the non-space characters plus one end-of-line symbol '\\n' per line
(5,017,482 / 393,042 / 442,423 symbols, 50 in the vocabulary). enwik8's symbols are its bytes (vocabulary
entry = the byte as a latin-1 character), split 90M / 5M / 5M.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
import sys
import tarfile
import zipfile
import zlib
from typing import Any
from urllib.parse import urlparse

import numpy as np

from experiments.data.errors import DataError

PTB_URL = 'http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz'
PTB_ARCHIVE = 'simple-examples.tgz'
PTB_MEMBER_DIR = 'simple-examples/data'  # inside the archive (listed as ./simple-examples/data/...)
PTB_FILES = {'train': 'ptb.char.train.txt', 'valid': 'ptb.char.valid.txt', 'test': 'ptb.char.test.txt'}
ENWIK8_URL = 'http://mattmahoney.net/dc/enwik8.zip'
ENWIK8_ARCHIVE = 'enwik8.zip'
ENWIK8_FILE = 'enwik8'
EOL = '\n'  # PTB's end-of-line symbol
CHUNK_IDS = 1 << 20  # ids per stored record
SPLITS = ('train', 'valid', 'test')
NAMES = ('synthetic', 'ptb_char', 'enwik8')


@dataclasses.dataclass(frozen=True)
class CharCorpus:
  """splits: {'train', 'valid', 'test'} -> int32 [n] ids into vocab; vocab: one str per symbol."""

  splits: dict[str, np.ndarray]
  vocab: list[str]

  def decode(self, ids) -> str:
    return ''.join(self.vocab[int(i)] for i in np.asarray(ids).ravel())

  def encode(self, text: str) -> np.ndarray:
    return _encode(text, self.vocab, where='text')


# ---------------------------------------------------------------------------------------------------
# Symbols <-> ids (vectorised over code points; no Python loop over characters).


def _codepoints(text: str) -> np.ndarray:
  return np.frombuffer(text.encode('utf-32-le'), np.uint32)


def _encode(symbols: str | bytes, vocab: list[str], where: str) -> np.ndarray:
  """int32 ids of `symbols` (one char or byte each) in `vocab`; DataError naming the first unknown one."""
  cps = np.frombuffer(symbols, np.uint8) if isinstance(symbols, bytes) else _codepoints(symbols)
  vocab_cps = _codepoints(''.join(vocab)).astype(np.int64)
  if len(vocab_cps) != len(vocab):
    raise ValueError('every vocabulary entry must be one character')
  size = int(max(cps.max(initial=0), vocab_cps.max(initial=0))) + 1
  table = np.full(size, -1, np.int32)  # code point -> id (-1: not in the vocabulary)
  table[vocab_cps] = np.arange(len(vocab), dtype=np.int32)
  ids = table[cps]
  bad = np.flatnonzero(ids < 0)
  if bad.size:
    k = int(bad[0])
    sym = chr(int(cps[k]))
    raise DataError(
      f'{where}: symbol {sym!r} at position {k:,} is not in the training vocabulary '
      f'({len(vocab)} symbols); the file is corrupt or not from this data set'
    )
  return ids


def _ptb_symbols(raw: bytes, where: str) -> str:
  """PTB char text -> one char per symbol: drop the separating spaces, one EOL per line."""
  text = raw.decode('utf-8').replace('\r\n', '\n').replace(' ', '')
  if not text.strip():
    raise DataError(f'{where} is empty; replace it with the file from {PTB_ARCHIVE} ({PTB_URL})')
  return text if text.endswith(EOL) else text + EOL


# ---------------------------------------------------------------------------------------------------
# Reading the official files from a folder or an archive.


def _is_online(url: str, timeout: float = 2.0) -> bool:
  host = urlparse(url).hostname
  try:
    with socket.create_connection((host, 80), timeout=timeout):
      return True
  except OSError:
    return False


def _corrupt(path: str, url: str, exc: BaseException) -> DataError:
  return DataError(
    f'{path} is truncated or corrupt ({type(exc).__name__}: {exc}); delete it and fetch it again from {url}'
  )


def _read_ptb_tgz(path: str) -> dict[str, bytes]:
  try:
    with tarfile.open(path, 'r:gz') as tar:
      members = {os.path.normpath(m.name): m for m in tar.getmembers()}
      out = {}
      for split, fname in PTB_FILES.items():
        m = members.get(os.path.join(PTB_MEMBER_DIR, fname))
        if m is None:
          raise DataError(
            f"{path} has no {PTB_MEMBER_DIR}/{fname}; it is not Mikolov's {PTB_ARCHIVE} ({PTB_URL})"
          )
        out[split] = tar.extractfile(m).read()
      return out
  except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
    raise _corrupt(path, PTB_URL, exc) from exc


def _read_ptb_files(folder: str | None, download) -> dict[str, bytes]:
  """Raw bytes of the three char files: from `folder` (.txt or .tgz), else a download, else DataError."""
  if folder and os.path.isdir(folder):
    paths = {s: os.path.join(folder, f) for s, f in PTB_FILES.items()}
    if all(os.path.isfile(p) for p in paths.values()):
      out = {}
      for s, p in paths.items():
        with open(p, 'rb') as f:
          out[s] = f.read()
      return out
    for archive in (os.path.join(folder, PTB_ARCHIVE), os.path.join(folder, 'simple-examples.tar.gz')):
      if os.path.isfile(archive):
        return _read_ptb_tgz(archive)
  if _is_online(PTB_URL):
    return _read_ptb_tgz(os.fspath(download(PTB_URL)))
  raise DataError(
    f'ptb_char: offline and no {", ".join(PTB_FILES.values())} (or {PTB_ARCHIVE}) in '
    f'manual dir {folder!r}; copy them there from {PTB_URL} (./simple-examples/data/) '
    f'or pass manual_dir='
  )


def _read_enwik8(folder: str | None, download) -> bytes:
  raw_path = os.path.join(folder, ENWIK8_FILE) if folder else None
  zip_path = os.path.join(folder, ENWIK8_ARCHIVE) if folder else None
  if raw_path and os.path.isfile(raw_path):
    with open(raw_path, 'rb') as f:
      return f.read()
  if not (zip_path and os.path.isfile(zip_path)):
    if not _is_online(ENWIK8_URL):
      raise DataError(
        f'enwik8: offline and no {ENWIK8_ARCHIVE} (or {ENWIK8_FILE}) in manual dir '
        f'{folder!r}; copy it there from {ENWIK8_URL} or pass manual_dir='
      )
    zip_path = os.fspath(download(ENWIK8_URL))
  try:
    with zipfile.ZipFile(zip_path) as z:
      if ENWIK8_FILE not in z.namelist():
        raise DataError(f'{zip_path} has no member {ENWIK8_FILE!r}; it is not {ENWIK8_URL}')
      return z.read(ENWIK8_FILE)
  except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
    raise _corrupt(zip_path, ENWIK8_URL, exc) from exc


def ptb_char_ids(folder: str | None, download=None) -> CharCorpus:
  """The PTB character corpus as ids; vocabulary = sorted symbols of the training split."""
  raw = _read_ptb_files(folder, download)
  text = {s: _ptb_symbols(raw[s], f'{PTB_FILES[s]} ({s})') for s in SPLITS}
  vocab = [chr(c) for c in np.unique(_codepoints(text['train']))]
  return CharCorpus({s: _encode(text[s], vocab, f'{PTB_FILES[s]} ({s})') for s in SPLITS}, vocab)


def enwik8_ids(
  folder: str | None, sizes: tuple[int, int, int], download=None, vocab_from_train: bool = False
) -> CharCorpus:
  """enwik8 bytes as ids, split by `sizes` (train, valid, test) which must add up to the file size.

  The vocabulary is every distinct byte of the file (the paper's 205) unless vocab_from_train.
  """
  data = _read_enwik8(folder, download)
  if not data:
    raise DataError(f'enwik8 in {folder!r} is empty; replace it with the file from {ENWIK8_URL}')
  if len(data) != sum(sizes):
    raise DataError(
      f'enwik8 has {len(data):,} bytes, expected {sum(sizes):,} (train/valid/test '
      f'{sizes}); the file is truncated or not enwik8: fetch it again from {ENWIK8_URL}'
    )
  bounds = np.cumsum((0,) + tuple(sizes))
  parts = {s: data[bounds[i] : bounds[i + 1]] for i, s in enumerate(SPLITS)}
  counts = np.bincount(np.frombuffer(parts['train'] if vocab_from_train else data, np.uint8), minlength=256)
  present = np.flatnonzero(counts)
  vocab = [chr(b) for b in present]  # byte b <-> latin-1 character chr(b)
  return CharCorpus({s: _encode(parts[s], vocab, f'enwik8 ({s})') for s in SPLITS}, vocab)


# ---------------------------------------------------------------------------------------------------
# TFDS builders, defined on first use so that importing this module does not import tfds.


def _records(ids: np.ndarray):
  for k, start in enumerate(range(0, len(ids), CHUNK_IDS)):
    yield k, {'chunk': k, 'ids': ids[start : start + CHUNK_IDS].astype(np.uint8)}


@functools.lru_cache(maxsize=1)
def _builders() -> dict[str, Any]:
  import tensorflow_datasets as tfds

  class _CharBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Each split: records {'chunk': k, 'ids': uint8 [<= CHUNK_IDS]}; vocab in info.metadata."""

    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'Initial release.'}
    HOMEPAGE = ''
    MANUAL_DOWNLOAD_INSTRUCTIONS = ''

    def _info(self):
      return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        homepage=self.HOMEPAGE,
        features=tfds.features.FeaturesDict(
          {
            'chunk': np.int64,  # record index: the split is the records' ids in chunk order
            'ids': tfds.features.Tensor(shape=(None,), dtype=np.uint8),
          }
        ),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,
      )

    def _manual_folder(self, dl_manager) -> str | None:
      try:
        return os.fspath(dl_manager.manual_dir)
      except (AssertionError, ValueError):  # missing or empty: still name it in the error message
        folder = getattr(dl_manager, '_manual_dir', None)
        return os.fspath(folder) if folder else None

    def _corpus(self, dl_manager) -> CharCorpus:
      raise NotImplementedError

    def _split_generators(self, dl_manager):
      corpus = self._corpus(dl_manager)
      if len(corpus.vocab) > 256:
        raise DataError(f'{self.name}: {len(corpus.vocab)} symbols do not fit the uint8 records')
      self.info.metadata['vocab'] = list(corpus.vocab)
      return {s: self._generate_examples(corpus.splits[s]) for s in SPLITS}

    def _generate_examples(self, ids):
      yield from _records(ids)

  class PtbChar(_CharBuilder):
    """Penn Treebank characters (Mikolov's ptb.char.*.txt): 50 symbols, 5.0M / 393k / 442k."""

    HOMEPAGE = 'http://www.fit.vutbr.cz/~imikolov/rnnlm/'
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Put {", ".join(PTB_FILES.values())} (from {PTB_URL}, '
      f'./simple-examples/data/) or {PTB_ARCHIVE} in the manual dir.'
    )

    def _corpus(self, dl_manager):
      return ptb_char_ids(self._manual_folder(dl_manager), dl_manager.download)

  @dataclasses.dataclass(eq=False)
  class Enwik8Config(tfds.core.BuilderConfig):
    """Split sizes in bytes (the paper's 90M / 5M / 5M); tests scale them down."""

    train_size: int = 90_000_000
    valid_size: int = 5_000_000
    test_size: int = 5_000_000
    vocab_from_train: bool = False  # False: all distinct bytes of the file (the paper's 205)

  class Enwik8(_CharBuilder):
    """enwik8 (Hutter Prize): the first 10^8 bytes of a Wikipedia dump, bytes as symbols."""

    HOMEPAGE = 'http://mattmahoney.net/dc/textdata.html'
    MANUAL_DOWNLOAD_INSTRUCTIONS = f'Put {ENWIK8_ARCHIVE} (from {ENWIK8_URL}) in the manual dir.'
    BUILDER_CONFIGS = [Enwik8Config(name='official')]

    def _corpus(self, dl_manager):
      c = self.builder_config
      return enwik8_ids(
        self._manual_folder(dl_manager),
        (c.train_size, c.valid_size, c.test_size),
        dl_manager.download,
        c.vocab_from_train,
      )

  return {
    'PtbChar': PtbChar,
    'Enwik8': Enwik8,
    'Enwik8Config': Enwik8Config,
    'ptb_char': PtbChar,
    'enwik8': Enwik8,
  }


def __getattr__(name: str):  # PtbChar, Enwik8, Enwik8Config, built (and tfds imported) on first access
  if name in ('PtbChar', 'Enwik8', 'Enwik8Config'):
    return _builders()[name]
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def _default_manual_dir(name: str) -> str | None:
  root = os.environ.get('HYPER_DATA_DIR')
  return os.path.join(root, {'ptb_char': 'ptb', 'enwik8': 'enwik8'}[name]) if root else None


def prepare(name: str, manual_dir: str | None = None, data_dir: str | None = None, config=None):
  """Prepares (once) and returns the TFDS builder of 'ptb_char' or 'enwik8'."""
  import tensorflow_datasets as tfds

  cls = _builders()[name]
  manual_dir = manual_dir or _default_manual_dir(name)
  kwargs = {'config': config} if config is not None else {}
  builder = cls(data_dir=data_dir, file_format='array_record', **kwargs)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder


def read_builder(builder) -> CharCorpus:
  """The prepared splits of a builder as int32 ids, and its stored vocabulary."""
  source = builder.as_data_source()
  splits = {}
  for s in SPLITS:
    records = sorted((source[s][i] for i in range(len(source[s]))), key=lambda r: int(r['chunk']))
    splits[s] = np.concatenate([r['ids'] for r in records]).astype(np.int32)
  return CharCorpus(splits, list(builder.info.metadata['vocab']))


def load_char_corpus(
  name: str, manual_dir: str | None = None, data_dir: str | None = None, seed: int = 0, config=None
) -> CharCorpus:
  """name: 'synthetic' (generated, `seed` picks the text), 'ptb_char', 'enwik8', or a `.npz` path.

  TFDS data sets are prepared into data_dir (tfds default when None) on first use; the official
  files are read from manual_dir (default $HYPER_DATA_DIR/{ptb,enwik8} when that is set, else
  <data_dir>/downloads/manual) or downloaded when the machine is online.
  """
  if name.endswith('.npz'):
    return load_ids(name)
  if name == 'synthetic':
    from experiments.data import synthetic

    vocab = list(synthetic.ALPHABET)
    return CharCorpus(
      {s: _encode(t, vocab, f'synthetic ({s})') for s, t in synthetic.splits(seed).items()}, vocab
    )
  if name not in NAMES:
    raise DataError(f'unknown corpus {name!r}; use one of {", ".join(NAMES)} or a prepared .npz path')
  return read_builder(prepare(name, manual_dir, data_dir, config))


def export_ids(corpus: CharCorpus, path: str) -> None:
  """Writes ids and vocabulary to one .npz (uint8 ids when they fit), readable by `load_ids`."""
  if any(len(v) != 1 for v in corpus.vocab):
    raise ValueError('export_ids stores one character per vocabulary entry')
  small = len(corpus.vocab) <= 256
  arrays = {
    f'ids_{s}': (v.astype(np.uint8) if small else v.astype(np.int32)) for s, v in corpus.splits.items()
  }
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  # Code points, not strings: numpy drops trailing NULs of str arrays (byte 0 is a valid symbol).
  np.savez_compressed(path, vocab=_codepoints(''.join(corpus.vocab)).astype(np.int64), **arrays)


def load_ids(path: str) -> CharCorpus:
  """Reads an `export_ids` file (no tfds needed)."""
  if not os.path.isfile(path):
    raise DataError(f'prepared corpus {path} not found; write it with experiments.data.text.export_ids')
  with np.load(path, allow_pickle=False) as z:
    vocab = [chr(int(c)) for c in z['vocab']]
    splits = {k[len('ids_') :]: z[k].astype(np.int32) for k in z.files if k.startswith('ids_')}
  return CharCorpus(splits, vocab)


def main(argv: list[str] | None = None) -> int:
  """`python -m experiments.data.text --corpus=ptb_char --out=ptb_char.npz`: prepares the corpus (TFDS
  here) and writes the symbol ids for machines without tensorflow-datasets (`--config.data.name=<out>`)."""
  import argparse

  parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
  parser.add_argument('--corpus', default='ptb_char', help=f'one of {", ".join(NAMES)}')
  parser.add_argument('--out', required=True, help='path of the .npz to write')
  parser.add_argument('--manual_dir', default=None, help='folder with the official files (offline)')
  args = parser.parse_args(argv)
  try:
    corpus = load_char_corpus(args.corpus, manual_dir=args.manual_dir)
  except DataError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  export_ids(corpus, args.out)
  sizes = ', '.join(f'{s} {len(v):,}' for s, v in corpus.splits.items())
  print(f'wrote {args.out}: vocab {len(corpus.vocab)}, {sizes} symbols')
  return 0


if __name__ == '__main__':
  sys.exit(main())
