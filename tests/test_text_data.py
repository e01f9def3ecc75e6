"""Character corpora: TFDS builders on small files the tests write, the real PTB files, prepared .npz."""

import io
import os
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest

from experiments.data import text
from experiments.data.errors import DataError

TRAIN = ['t h e _ c a t _ s a t', 'a _ d o g _ N _ y e a r s', 'c a t s _ < u n k >']
VALID = ['t h e _ d o g', 'N _ c a t s']
TEST = ['a _ c a t _ s a t _ o n _ d o g s']


def _ptb_line(line):  # Mikolov's format: a leading and a trailing space on every line
  return f' {line} \n'


def _write_ptb(folder, train=TRAIN, valid=VALID, test=TEST):
  folder.mkdir(parents=True, exist_ok=True)
  for split, lines in (('train', train), ('valid', valid), ('test', test)):
    (folder / f'ptb.char.{split}.txt').write_text(''.join(_ptb_line(l) for l in lines))
  return folder


def _expected(lines):
  return ''.join(l.replace(' ', '') + '\n' for l in lines)


def _no_network(monkeypatch):
  monkeypatch.setattr(text, '_is_online', lambda url, timeout=2.0: False)


def test_ptb_builder_counts_vocab_and_ids(tmp_path, monkeypatch):
  _no_network(monkeypatch)
  manual = _write_ptb(tmp_path / 'manual')
  corpus = text.load_char_corpus('ptb_char', manual_dir=str(manual), data_dir=str(tmp_path / 'tfds'))
  for split, lines in (('train', TRAIN), ('valid', VALID), ('test', TEST)):
    # One symbol per non-space character plus one end-of-line symbol per line.
    assert len(corpus.splits[split]) == sum(len(l.split()) + 1 for l in lines)
    assert corpus.splits[split].dtype == np.int32
    assert corpus.decode(corpus.splits[split]) == _expected(lines)
  assert corpus.vocab == sorted(set(_expected(TRAIN)))
  assert corpus.vocab[0] == '\n'
  # The prepared data set holds array_record files and the vocabulary, and reads back without manual files.
  prepared = tmp_path / 'tfds' / 'ptb_char' / '1.0.0'
  assert any(p.name.startswith('ptb_char-train.array_record') for p in prepared.iterdir())
  for p in manual.iterdir():
    p.unlink()
  again = text.load_char_corpus('ptb_char', manual_dir=str(manual), data_dir=str(tmp_path / 'tfds'))
  assert again.vocab == corpus.vocab
  np.testing.assert_array_equal(again.splits['test'], corpus.splits['test'])


def test_ptb_from_tgz_matches_txt(tmp_path, monkeypatch):
  _no_network(monkeypatch)
  _write_ptb(tmp_path / 'files')
  manual = tmp_path / 'manual'
  manual.mkdir()
  with tarfile.open(manual / 'simple-examples.tgz', 'w:gz') as tar:
    tar.add(tmp_path / 'files', './simple-examples/data')  # the member names of the official archive
  from_tgz = text.load_char_corpus('ptb_char', manual_dir=str(manual), data_dir=str(tmp_path / 'a'))
  from_txt = text.load_char_corpus(
    'ptb_char', manual_dir=str(tmp_path / 'files'), data_dir=str(tmp_path / 'b')
  )
  assert from_tgz.vocab == from_txt.vocab
  for s in text.SPLITS:
    np.testing.assert_array_equal(from_tgz.splits[s], from_txt.splits[s])


def test_ptb_unknown_symbol_names_symbol_and_position(tmp_path):
  # "q" never occurs in TRAIN; it follows "the_dog\n" (8 symbols) and "N_ca" (4): position 12.
  manual = _write_ptb(tmp_path / 'm', valid=['t h e _ d o g', 'N _ c a q s'])
  with pytest.raises(DataError, match=r"ptb\.char\.valid\.txt.*symbol 'q' at position 12 "):
    text.ptb_char_ids(str(manual))


def test_ptb_empty_file(tmp_path):
  manual = _write_ptb(tmp_path / 'm', test=[])
  with pytest.raises(DataError, match='ptb.char.test.txt .*empty'):
    text.ptb_char_ids(str(manual))


def test_ptb_truncated_archive(tmp_path, monkeypatch):
  _no_network(monkeypatch)
  rng = np.random.default_rng(0)
  big = [' '.join(rng.choice(list('abcdefgh_'), 80)) for _ in range(300)]  # incompressible enough
  _write_ptb(tmp_path / 'files', train=big, valid=big, test=big)
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode='w:gz') as tar:
    tar.add(tmp_path / 'files', './simple-examples/data')
  manual = tmp_path / 'manual'
  manual.mkdir()
  (manual / 'simple-examples.tgz').write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
  with pytest.raises(DataError, match='simple-examples.tgz is truncated or corrupt'):
    text.load_char_corpus('ptb_char', manual_dir=str(manual), data_dir=str(tmp_path / 'tfds'))


def test_missing_files_fail_fast_with_one_line(tmp_path, monkeypatch):
  _no_network(monkeypatch)
  monkeypatch.delenv('HYPER_DATA_DIR', raising=False)
  (tmp_path / 'empty').mkdir()
  with pytest.raises(DataError) as info:
    text.load_char_corpus('ptb_char', manual_dir=str(tmp_path / 'empty'), data_dir=str(tmp_path / 't'))
  msg = str(info.value)
  assert '\n' not in msg and 'ptb.char.train.txt' in msg and 'simple-examples.tgz' in msg
  assert 'manual dir' in msg
  with pytest.raises(DataError, match='enwik8.zip') as info:
    text.load_char_corpus('enwik8', manual_dir=str(tmp_path / 'empty'), data_dir=str(tmp_path / 't'))
  assert '\n' not in str(info.value)


def _fake_enwik8(n):
  rng = np.random.default_rng(1)
  words = ['<page>', '&amp;', '[[Zürich]]', 'naïve', 'Ω', 'the', ' ', '\n', '{{cite}}', '\x00']
  data = ''.join(rng.choice(words, n)).encode('utf-8')
  return data[:n]


def _enwik8_zip(path, data):
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('enwik8', data)


def test_enwik8_builder_scaled_splits(tmp_path, monkeypatch):
  _no_network(monkeypatch)
  data = _fake_enwik8(1000)
  manual = tmp_path / 'manual'
  manual.mkdir()
  _enwik8_zip(manual / 'enwik8.zip', data)
  config = text.Enwik8Config(name='tiny', train_size=900, valid_size=50, test_size=50)
  corpus = text.load_char_corpus(
    'enwik8', manual_dir=str(manual), data_dir=str(tmp_path / 't'), config=config
  )
  assert [len(corpus.splits[s]) for s in text.SPLITS] == [900, 50, 50]
  assert corpus.vocab == [chr(b) for b in sorted(set(data))]  # distinct bytes of the whole file
  joined = np.concatenate([corpus.splits[s] for s in text.SPLITS])
  assert corpus.decode(joined).encode('latin-1') == data  # ids are the bytes, in order
  assert (tmp_path / 't' / 'enwik8' / 'tiny' / '1.0.0').is_dir()


def test_enwik8_truncated_zip_and_wrong_size(tmp_path):
  data = _fake_enwik8(1000)
  _enwik8_zip(tmp_path / 'enwik8.zip', data)
  whole = (tmp_path / 'enwik8.zip').read_bytes()
  with pytest.raises(DataError, match='expected 2,000'):
    text.enwik8_ids(str(tmp_path), (1800, 100, 100))
  (tmp_path / 'enwik8.zip').write_bytes(whole[: len(whole) - 30])
  with pytest.raises(DataError, match='enwik8.zip is truncated or corrupt'):
    text.enwik8_ids(str(tmp_path), (900, 50, 50))


def test_export_and_load_ids_roundtrip(tmp_path):
  vocab = ['\x00', '\n', 'a', 'é']
  corpus = text.CharCorpus(
    {
      'train': np.array([0, 1, 2, 3, 3], np.int32),
      'valid': np.array([2, 1], np.int32),
      'test': np.array([0], np.int32),
    },
    vocab,
  )
  path = str(tmp_path / 'c.npz')
  text.export_ids(corpus, path)
  back = text.load_char_corpus(path)
  assert back.vocab == vocab
  for s in text.SPLITS:
    assert back.splits[s].dtype == np.int32
    np.testing.assert_array_equal(back.splits[s], corpus.splits[s])
  with pytest.raises(DataError, match='not found'):
    text.load_ids(str(tmp_path / 'missing.npz'))


def test_export_command_writes_a_corpus_the_trainer_reads(tmp_path, capsys):
  path = str(tmp_path / 'synthetic.npz')
  assert text.main(['--corpus=synthetic', f'--out={path}']) == 0
  assert 'vocab' in capsys.readouterr().out
  original, back = text.load_char_corpus('synthetic'), text.load_char_corpus(path)
  assert back.vocab == original.vocab
  for s in text.SPLITS:
    np.testing.assert_array_equal(back.splits[s], original.splits[s])
  assert text.main(['--corpus=nope', f'--out={tmp_path / "x.npz"}']) == 1
  assert "unknown corpus 'nope'" in capsys.readouterr().err


def test_module_import_does_not_import_tfds():
  code = (
    'import sys, experiments.data.text as t; '
    "assert 'tensorflow_datasets' not in sys.modules, 'tfds imported eagerly'"
  )
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run([sys.executable, '-c', code], check=True, cwd=root)


def test_synthetic_corpus_ids():
  from experiments.data import synthetic

  corpus = text.load_char_corpus('synthetic', seed=0)
  assert corpus.vocab == list(synthetic.ALPHABET)
  assert {s: len(v) for s, v in corpus.splits.items()} == synthetic.SPLIT_SIZES
  assert corpus.decode(corpus.splits['valid']) == synthetic.splits(0)['valid']
  with pytest.raises(DataError, match='unknown corpus'):
    text.load_char_corpus('ptb')


def _real_ptb():
  root = os.environ.get('HYPER_DATA_DIR')
  if not root or not os.path.isfile(os.path.join(root, 'ptb', 'ptb.char.train.txt')):
    pytest.skip('real PTB needs $HYPER_DATA_DIR/ptb/ptb.char.*.txt (HYPER_DATA_DIR unset or folder missing)')
  return os.path.join(root, 'ptb')


def test_real_ptb_symbol_counts(tmp_path):
  manual = _real_ptb()
  corpus = text.load_char_corpus('ptb_char', manual_dir=manual, data_dir=str(tmp_path))
  assert {s: len(v) for s, v in corpus.splits.items()} == {
    'train': 5_017_482,
    'valid': 393_042,
    'test': 442_423,
  }
  assert len(corpus.vocab) == 50
  assert corpus.decode(corpus.splits['valid'][:9]) == 'consumers'
