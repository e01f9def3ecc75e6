"""English-French parallel text for the translation family: Tatoeba, Multi30k, newstest2014, and the
SentencePiece subword model trained on a training split.

- Tatoeba (`fra-eng.zip` from manythings.org: `fra.txt`, lines `english<TAB>french[<TAB>attribution]`,
  142,787 pairs): split once with a fixed seed into train / valid / test by connected groups of pairs
  that share an English or a French sentence, so that no sentence of either side is in two splits.
- Multi30k task 1 (`multi30k/{train,val,test_2016_flickr}.{en,fr}.gz`): its official splits.
- newstest2014 (`newstest2014/newstest2014-fren-{src.en,ref.fr}.sgm`): the WMT'14 test set (test only).

Every problem a user can fix raises `DataError` with one line saying what is wrong and what to do; nothing
is written before the input has been read and checked.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import re
import zipfile
from collections.abc import Iterable, Sequence

import numpy as np

from experiments.data.errors import DataError

LANGUAGES = ('en', 'fr')
SPLITS = ('train', 'valid', 'test')
TATOEBA_ARCHIVE = 'fra-eng.zip'
TATOEBA_MEMBER = 'fra.txt'
MULTI30K_FILES = {'train': 'train', 'valid': 'val', 'test': 'test_2016_flickr'}
NEWSTEST_FILES = {'en': 'newstest2014-fren-src.en.sgm', 'fr': 'newstest2014-fren-ref.fr.sgm'}
NAMES = ('tatoeba', 'multi30k', 'newstest2014')
# Subword ids fixed across models: the decoder and the task rely on them.
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class ParallelCorpus:
  """splits: name -> (source sentences, target sentences), aligned lists of str."""

  name: str
  src_lang: str
  tgt_lang: str
  splits: dict[str, tuple[list[str], list[str]]]

  def sizes(self) -> dict[str, int]:
    return {k: len(v[0]) for k, v in self.splits.items()}


def check_pair(src_lang: str, tgt_lang: str) -> None:
  if src_lang not in LANGUAGES or tgt_lang not in LANGUAGES or src_lang == tgt_lang:
    raise DataError(
      f'unknown language pair {src_lang}-{tgt_lang}: these data sets hold en-fr or fr-en; '
      'set data.src_lang / data.tgt_lang to en and fr'
    )


# ---------------------------------------------------------------------------------------------------
# Tatoeba.


def parse_tatoeba(text: str, where: str) -> list[tuple[str, str]]:
  """(english, french) pairs from fra.txt's lines; a line without a tab or with an empty side is an error."""
  pairs = []
  for number, line in enumerate(text.splitlines(), 1):
    if not line.strip():
      continue
    fields = line.split('\t')
    if len(fields) < 2:
      raise DataError(
        f'{where}:{number}: no tab in the line (expected english<TAB>french); '
        'is this the manythings.org fra-eng file?'
      )
    en, fr = fields[0].strip(), fields[1].strip()
    if not en or not fr:
      side = 'English' if not en else 'French'
      raise DataError(f'{where}:{number}: empty {side} side; fix or delete that line')
    pairs.append((en, fr))
  if not pairs:
    raise DataError(f'{where}: no sentence pairs; the file is empty')
  return pairs


def read_tatoeba(path: str) -> list[tuple[str, str]]:
  """(english, french) pairs of `fra-eng.zip` (or of a bare fra.txt)."""
  if not os.path.exists(path):
    raise DataError(f"{path} not found: put manythings.org's {TATOEBA_ARCHIVE} there or set data.data_dir")
  if path.endswith('.txt'):
    with open(path, encoding='utf-8') as f:
      return parse_tatoeba(f.read(), path)
  try:
    with zipfile.ZipFile(path) as z:
      if TATOEBA_MEMBER not in z.namelist():
        raise DataError(
          f'{path} holds no {TATOEBA_MEMBER} (has {", ".join(z.namelist()) or "nothing"}); '
          f'download {TATOEBA_ARCHIVE} from manythings.org/anki again'
        )
      raw = z.read(TATOEBA_MEMBER)
  except (zipfile.BadZipFile, EOFError, OSError) as e:
    raise DataError(f'{path} is not a readable zip archive ({e}); download {TATOEBA_ARCHIVE} again') from e
  try:
    text = raw.decode('utf-8')
  except UnicodeDecodeError as e:
    raise DataError(f'{path}:{TATOEBA_MEMBER} is not UTF-8 text ({e}); download the archive again') from e
  return parse_tatoeba(text, f'{path}:{TATOEBA_MEMBER}')


def split_pairs(
  pairs: Sequence[tuple[str, str]], valid_size: int, test_size: int, seed: int
) -> dict[str, list[tuple[str, str]]]:
  """Train / valid / test by groups: pairs sharing a sentence (either side) form one group, groups are
  shuffled with `seed` and dealt to test, then valid (until each has at least its size), rest to train.
  No sentence of either side is in two splits; the result depends only on the pairs and the seed."""
  parent: dict[tuple[int, str], tuple[int, str]] = {}

  def find(x):
    root = x
    while parent.setdefault(root, root) != root:
      root = parent[root]
    while parent[x] != root:
      parent[x], x = root, parent[x]
    return root

  for en, fr in pairs:
    a, b = find((0, en)), find((1, fr))
    if a != b:
      parent[a] = b
  groups: dict[tuple[int, str], list[int]] = {}
  for i, (en, _) in enumerate(pairs):
    groups.setdefault(find((0, en)), []).append(i)
  # Order groups by their first pair's index (independent of hashing), then shuffle with the seed.
  ordered = sorted(groups.values(), key=lambda g: g[0])
  order = np.random.default_rng(seed).permutation(len(ordered))
  if valid_size + test_size >= len(pairs):
    raise DataError(
      f'valid_size + test_size = {valid_size + test_size} leaves no training pairs '
      f'out of {len(pairs)}; lower data.valid_size / data.test_size'
    )
  out: dict[str, list[int]] = {'train': [], 'valid': [], 'test': []}
  for g in order:
    target = (
      'test' if len(out['test']) < test_size else 'valid' if len(out['valid']) < valid_size else 'train'
    )
    out[target].extend(ordered[g])
  return {k: [pairs[i] for i in sorted(v)] for k, v in out.items()}


# ---------------------------------------------------------------------------------------------------
# Multi30k and newstest2014.


def _read_lines_gz(path: str) -> list[str]:
  if not os.path.exists(path):
    raise DataError(
      f'{path} not found: put the Multi30k task-1 files (train/val/test_2016_flickr '
      '.en.gz/.fr.gz) in that folder or set data.data_dir'
    )
  try:
    with gzip.open(path, 'rt', encoding='utf-8') as f:
      return [line.rstrip('\n') for line in f]
  except (OSError, EOFError, UnicodeDecodeError) as e:
    raise DataError(f'{path} is not a readable gzip text file ({e}); download it again') from e


def read_aligned(
  src_lines: list[str], tgt_lines: list[str], src_where: str, tgt_where: str
) -> tuple[list[str], list[str]]:
  """Checks two line-aligned files (same count, no empty side) and strips them."""
  if len(src_lines) != len(tgt_lines):
    raise DataError(
      f'{src_where} has {len(src_lines)} lines but {tgt_where} {len(tgt_lines)}; '
      'the files must be line-aligned (re-download both)'
    )
  src, tgt = [], []
  for number, (s, t) in enumerate(zip(src_lines, tgt_lines), 1):
    s, t = s.strip(), t.strip()
    if not s or not t:
      raise DataError(
        f'{src_where if not s else tgt_where}:{number}: empty sentence; fix or delete that line in both files'
      )
    src.append(s)
    tgt.append(t)
  if not src:
    raise DataError(f'{src_where}: no sentences; the file is empty')
  return src, tgt


def read_multi30k(folder: str, split: str, src_lang: str, tgt_lang: str) -> tuple[list[str], list[str]]:
  base = os.path.join(folder, MULTI30K_FILES[split])
  paths = (f'{base}.{src_lang}.gz', f'{base}.{tgt_lang}.gz')
  return read_aligned(_read_lines_gz(paths[0]), _read_lines_gz(paths[1]), *paths)


_SEG = re.compile(r'<seg[^>]*\bid="?([^">\s]+)"?[^>]*>(.*?)</seg>', re.IGNORECASE)


def read_sgm(path: str) -> list[str]:
  """The <seg id=...>text</seg> segments of an SGML test file, in file order, cleaned as sacrebleu does
  (whitespace runs, no-break spaces included, become one space; entities are kept as written)."""
  if not os.path.exists(path):
    raise DataError(f'{path} not found: put the newstest2014 fr-en .sgm files there or set data.data_dir')
  with open(path, encoding='utf-8') as f:
    segs = [re.sub(r'\s+', ' ', m.group(2).strip()) for line in f for m in _SEG.finditer(line)]
  if not segs:
    raise DataError(f'{path} holds no <seg id=...> lines; is it a WMT .sgm file?')
  return segs


def read_newstest2014(folder: str, src_lang: str, tgt_lang: str) -> tuple[list[str], list[str]]:
  paths = [os.path.join(folder, NEWSTEST_FILES[lang]) for lang in (src_lang, tgt_lang)]
  src, tgt = read_sgm(paths[0]), read_sgm(paths[1])
  if len(src) != len(tgt):
    raise DataError(f'{paths[0]} has {len(src)} segments but {paths[1]} {len(tgt)}; re-download both')
  return src, tgt


# ---------------------------------------------------------------------------------------------------
# Loading by name.


def translation_dir(data_dir: str | None) -> str:
  """The folder with fra-eng.zip, multi30k/ and newstest2014/ (data_dir, else $HYPER_DATA_DIR/translation)."""
  if data_dir:
    return data_dir
  root = os.environ.get('HYPER_DATA_DIR')
  if not root:
    raise DataError(
      'no data folder: set data.data_dir to the folder holding fra-eng.zip, multi30k/ and '
      'newstest2014/, or set $HYPER_DATA_DIR'
    )
  return os.path.join(root, 'translation')


def load_corpus(
  name: str,
  data_dir: str | None = None,
  *,
  src_lang: str = 'en',
  tgt_lang: str = 'fr',
  valid_size: int = 3000,
  test_size: int = 3000,
  seed: int = 0,
) -> ParallelCorpus:
  """ParallelCorpus with 'train', 'valid', 'test' ('test' only for newstest2014)."""
  check_pair(src_lang, tgt_lang)
  folder = translation_dir(data_dir)
  if name == 'tatoeba':
    pairs = read_tatoeba(os.path.join(folder, TATOEBA_ARCHIVE))
    if src_lang == 'fr':
      pairs = [(fr, en) for en, fr in pairs]
    parts = split_pairs(pairs, valid_size, test_size, seed)
    splits = {k: ([p[0] for p in v], [p[1] for p in v]) for k, v in parts.items()}
  elif name == 'multi30k':
    sub = os.path.join(folder, 'multi30k')
    splits = {k: read_multi30k(sub, k, src_lang, tgt_lang) for k in SPLITS}
  elif name == 'newstest2014':
    splits = {'test': read_newstest2014(os.path.join(folder, 'newstest2014'), src_lang, tgt_lang)}
  else:
    raise DataError(f'unknown translation data set {name!r}; choose one of {", ".join(NAMES)}')
  return ParallelCorpus(name, src_lang, tgt_lang, splits)


# ---------------------------------------------------------------------------------------------------
# Subwords.


class Subwords:
  """A SentencePiece model: text <-> ids with PAD 0, BOS 1, EOS 2, UNK 3 (one vocabulary for both sides)."""

  def __init__(self, model_proto: bytes):
    import sentencepiece as spm  # pylint: disable=g-import-not-at-top

    self.proto = model_proto
    self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
    if (self.sp.pad_id(), self.sp.bos_id(), self.sp.eos_id(), self.sp.unk_id()) != (
      PAD_ID,
      BOS_ID,
      EOS_ID,
      UNK_ID,
    ):
      raise DataError(
        'the SentencePiece model has other special ids than pad 0, bos 1, eos 2, unk 3; '
        'train it with train_subwords'
      )

  @property
  def vocab_size(self) -> int:
    return self.sp.get_piece_size()

  def encode(self, texts: Sequence[str]) -> list[list[int]]:
    return self.sp.encode(list(texts))

  def decode(self, ids: Iterable[Sequence[int]]) -> list[str]:
    """Sentences from id rows; each row is cut at its first EOS and PAD/BOS are dropped."""
    out = []
    for row in ids:
      row = [int(i) for i in row]
      if EOS_ID in row:
        row = row[: row.index(EOS_ID)]
      out.append(self.sp.decode([i for i in row if i not in (PAD_ID, BOS_ID)]))
    return out

  def save(self, path: str) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
      f.write(self.proto)
    os.replace(tmp, path)

  @classmethod
  def load(cls, path: str) -> Subwords:
    if not os.path.exists(path):
      raise DataError(
        f'{path} not found: the SentencePiece model is written by training; '
        'point --workdir at the training run'
      )
    with open(path, 'rb') as f:
      return cls(f.read())


def train_subwords(
  texts: Iterable[str],
  vocab_size: int,
  *,
  model_type: str = 'unigram',
  character_coverage: float = 1.0,
  max_sentences: int = 1_000_000,
) -> Subwords:
  """A SentencePiece model trained on `texts` (both sides of the training split: one joint vocabulary, as
  GNMT's shared wordpieces), held in memory; `Subwords.save` writes it beside the run."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top

  texts = [t for t in texts if t]
  if not texts:
    raise DataError('no text to train the SentencePiece model on; the training split is empty')
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
      sentence_iterator=iter(texts),
      model_writer=model,
      vocab_size=vocab_size,
      model_type=model_type,
      character_coverage=character_coverage,
      pad_id=PAD_ID,
      bos_id=BOS_ID,
      eos_id=EOS_ID,
      unk_id=UNK_ID,
      input_sentence_size=max_sentences,
      shuffle_input_sentence=False,
      num_threads=1,
      minloglevel=2,
    )
  except RuntimeError as e:
    raise DataError(
      f'SentencePiece training failed: {str(e).splitlines()[-1] if str(e) else e}; '
      'lower data.vocab_size for a small corpus'
    ) from e
  return Subwords(model.getvalue())
