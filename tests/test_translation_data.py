"""experiments/data/translation.py and experiments/bleu.py: splits, readers, errors, SentencePiece, BLEU."""

import gzip
import os
import subprocess
import sys
import unicodedata
import zipfile

import pytest
import sacrebleu

from experiments import bleu
from experiments.data import translation as tr
from experiments.data.errors import DataError

DATA = os.environ.get('HYPER_DATA_DIR')
TRANSLATION = os.path.join(DATA, 'translation') if DATA else None
needs_data = pytest.mark.skipif(
  not TRANSLATION or not os.path.isdir(TRANSLATION), reason='$HYPER_DATA_DIR/translation not available'
)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_zip(path, text, member='fra.txt'):
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr(member, text)
  return str(path)


def toy_pairs(n=400):
  # Shared sentences link pairs into groups: 'I see.' has two translations, 'Je vois.' two sources.
  pairs = [(f'Sentence {i}.', f'Phrase {i}.') for i in range(n)]
  pairs += [
    ('I see.', 'Je vois.'),
    ('I see.', 'Je comprends.'),
    ('I understand.', 'Je comprends.'),
    ('Got it.', 'Je vois.'),
  ]
  return pairs


def test_splits_disjoint_reproducible_and_sized():
  pairs = toy_pairs()
  a = tr.split_pairs(pairs, valid_size=40, test_size=50, seed=3)
  b = tr.split_pairs(pairs, valid_size=40, test_size=50, seed=3)
  c = tr.split_pairs(pairs, valid_size=40, test_size=50, seed=4)
  assert a == b and a != c
  assert sorted(a['train'] + a['valid'] + a['test']) == sorted(pairs)
  assert len(a['test']) >= 50 and len(a['valid']) >= 40 and len(a['test']) + len(a['valid']) <= 90 + 6
  for side in (0, 1):
    sets = {k: {p[side] for p in v} for k, v in a.items()}
    assert not sets['train'] & sets['valid'] and not sets['train'] & sets['test']
    assert not sets['valid'] & sets['test']
  # The four linked pairs always land together.
  linked = {p for p in pairs if p[0] in ('I see.', 'I understand.', 'Got it.')}
  for seed in range(6):
    parts = tr.split_pairs(pairs, 40, 50, seed)
    assert sum(linked <= set(v) for v in parts.values()) == 1


def test_tatoeba_reader_and_errors(tmp_path):
  good = write_zip(tmp_path / 'fra-eng.zip', 'Go.\tVa !\tCC-BY 2.0 (France)\nHi.\tSalut !\n')
  assert tr.read_tatoeba(good) == [('Go.', 'Va !'), ('Hi.', 'Salut !')]
  cases = {
    'missing': (str(tmp_path / 'none.zip'), 'not found'),
    'not a zip': (str(tmp_path / 'bad.zip'), 'not a readable zip'),
    'no member': (write_zip(tmp_path / 'other.zip', 'x', member='deu.txt'), 'holds no fra.txt'),
    'no tab': (write_zip(tmp_path / 'notab.zip', 'Go.\tVa !\nHello Bonjour\n'), ':2: no tab'),
    'empty side': (write_zip(tmp_path / 'empty.zip', 'Go.\tVa !\nHi.\t \n'), ':2: empty French side'),
    'empty file': (write_zip(tmp_path / 'nothing.zip', '\n'), 'no sentence pairs'),
  }
  (tmp_path / 'bad.zip').write_bytes(b'PK\x03\x04 truncated')
  for name, (path, message) in cases.items():
    with pytest.raises(DataError, match=message) as e:
      tr.read_tatoeba(path)
    assert '\n' not in str(e.value), name
  with pytest.raises(DataError, match='unknown language pair en-de'):
    tr.load_corpus('tatoeba', str(tmp_path), src_lang='en', tgt_lang='de')
  with pytest.raises(DataError, match='unknown translation data set'):
    tr.load_corpus('europarl', str(tmp_path))
  # Nothing written by a failed load.
  before = sorted(os.listdir(tmp_path))
  with pytest.raises(DataError):
    tr.load_corpus('tatoeba', str(tmp_path / 'nowhere'))
  assert sorted(os.listdir(tmp_path)) == before


def test_multi30k_and_sgm_readers(tmp_path):
  sub = tmp_path / 'multi30k'
  sub.mkdir()
  for split in ('train', 'val', 'test_2016_flickr'):
    for lang, text in (('en', 'A dog.\nTwo cats.\n'), ('fr', 'Un chien.\nDeux chats.\n')):
      with gzip.open(sub / f'{split}.{lang}.gz', 'wt', encoding='utf-8') as f:
        f.write(text)
  corpus = tr.load_corpus('multi30k', str(tmp_path), src_lang='fr', tgt_lang='en')
  assert corpus.splits['valid'] == (['Un chien.', 'Deux chats.'], ['A dog.', 'Two cats.'])
  with gzip.open(sub / 'val.fr.gz', 'wt', encoding='utf-8') as f:
    f.write('Un chien.\n')
  with pytest.raises(DataError, match='line-aligned'):
    tr.load_corpus('multi30k', str(tmp_path))
  news = tmp_path / 'newstest2014'
  news.mkdir()
  (news / 'newstest2014-fren-src.en.sgm').write_text(
    '<srcset>\n<doc docid="a">\n<seg id="1">Fish\xa0&amp;  chips</seg>\n<seg id="2"> Two </seg>\n</doc>\n'
  )
  (news / 'newstest2014-fren-ref.fr.sgm').write_text(
    '<refset>\n<seg id=1>Poisson</seg>\n<seg id=2>Deux</seg>\n'
  )
  assert tr.load_corpus('newstest2014', str(tmp_path)).splits['test'] == (
    ['Fish &amp; chips', 'Two'],
    ['Poisson', 'Deux'],
  )
  (news / 'newstest2014-fren-ref.fr.sgm').write_text('<refset>\n</refset>\n')
  with pytest.raises(DataError, match='no <seg id'):
    tr.load_corpus('newstest2014', str(tmp_path))


@needs_data
def test_real_files_sizes_and_subword_round_trip():
  corpus = tr.load_corpus('tatoeba', TRANSLATION, valid_size=3000, test_size=3000, seed=0)
  assert corpus.sizes() == {'train': 136786, 'valid': 3000, 'test': 3001}
  assert sum(corpus.sizes().values()) == 142787
  src, tgt = corpus.splits['train']
  assert not set(src) & set(corpus.splits['test'][0]) and not set(tgt) & set(corpus.splits['valid'][1])
  multi = tr.load_corpus('multi30k', TRANSLATION)
  assert multi.sizes() == {'train': 29000, 'valid': 1014, 'test': 1000}
  news = tr.load_corpus('newstest2014', TRANSLATION)
  assert news.sizes() == {'test': 3003}
  sub = tr.train_subwords(src[:8000] + tgt[:8000], 1000)
  assert sub.vocab_size == 1000
  again = tr.Subwords(sub.proto)
  for sentences in (corpus.splits['valid'][1][:500], multi.splits['test'][1][:200]):
    ids = again.encode(sentences)
    assert all(i not in (tr.PAD_ID, tr.BOS_ID, tr.EOS_ID) for row in ids for i in row)
    # Lossless up to SentencePiece's NFKC normalisation (e.g. French narrow no-break spaces).
    decoded = again.decode([row + [tr.EOS_ID, 17, 5] for row in ids])  # cut at EOS
    expected = [' '.join(unicodedata.normalize('NFKC', s).split()) for s in sentences]
    mismatches = [
      (d, e) for d, e in zip(decoded, expected) if d != e and tr.UNK_ID not in again.encode([e])[0]
    ]
    assert not mismatches, mismatches[:3]


def test_subword_training_is_deterministic_and_errors(tmp_path):
  subjects, verbs = ['the cat', 'a dog', 'le chat', 'un chien'] * 50, ['sleeps', 'runs', 'dort', 'court'] * 50
  texts = [f'{a} {b} number {i}.' for i, (a, b) in enumerate(zip(subjects, verbs))]
  one, two = tr.train_subwords(texts, 50), tr.train_subwords(texts, 50)
  assert one.proto == two.proto and one.vocab_size == 50
  one.save(str(tmp_path / 'subwords.model'))
  loaded = tr.Subwords.load(str(tmp_path / 'subwords.model'))
  assert loaded.encode(['le chat dort']) == one.encode(['le chat dort'])
  with pytest.raises(DataError, match='lower data.vocab_size'):
    tr.train_subwords(texts[:3], 5000)
  with pytest.raises(DataError, match='not found'):
    tr.Subwords.load(str(tmp_path / 'none.model'))


def test_bleu_wrapper_matches_sacrebleu():
  refs = ['Le chat est assis sur le tapis.', 'Il pleut depuis ce matin.', 'Nous irons à Paris demain.']
  hyps = ['Le chat est sur le tapis.', 'Il pleut depuis le matin.', 'Demain nous irons à Paris.']
  same = bleu.corpus_scores(refs, refs, trg_lang='fr')
  assert same['bleu'] == pytest.approx(100.0) and same['chrf'] == pytest.approx(100.0)
  got = bleu.corpus_scores(hyps, refs)
  ref_bleu = sacrebleu.corpus_bleu(hyps, [refs])
  ref_chrf = sacrebleu.corpus_chrf(hyps, [refs])
  assert got['bleu'] == pytest.approx(ref_bleu.score, abs=1e-9)
  assert got['chrf'] == pytest.approx(ref_chrf.score, abs=1e-9)
  assert 0 < got['bleu'] < 100
  assert got['bleu_signature'] == (
    'nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:' + sacrebleu.__version__
  )
  assert got['chrf_signature'].startswith('nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no')
  intl = bleu.corpus_scores(hyps, refs, tokenize='intl')
  assert 'tok:intl' in intl['bleu_signature']
  assert intl['bleu'] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize='intl').score)


@needs_data
def test_newstest2014_offline_through_sacrebleu(tmp_path):
  cache = bleu.seed_sacrebleu_cache(os.path.join(TRANSLATION, 'newstest2014'), str(tmp_path / 'sacrebleu'))
  # sacrebleu fixes its cache folder at import: a fresh interpreter with $SACREBLEU set.
  code = (
    f'import sys, json; from experiments import bleu; print(json.dumps(bleu.sacrebleu_test_set({cache!r})))'
  )
  out = subprocess.run(
    [sys.executable, '-c', code],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
    env=dict(os.environ, SACREBLEU=cache),
  )
  import json  # pylint: disable=g-import-not-at-top

  sources, references = json.loads(out.stdout)
  ours = tr.load_corpus('newstest2014', TRANSLATION).splits['test']
  assert len(references) == 3003
  assert (sources, references) == (ours[0], ours[1])
