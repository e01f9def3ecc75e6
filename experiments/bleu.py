"""Translation scores through sacrebleu: corpus BLEU with its signature and chrF, and newstest2014 read
offline from a seeded sacrebleu cache (data README: both .sgm files under
$SACREBLEU/wmt14/full/raw/test-full/ plus a non-empty placeholder wmt14_full.test-full.tgz)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence

from experiments.data.errors import DataError

NEWSTEST2014 = ('newstest2014-fren-src.en.sgm', 'newstest2014-fren-ref.fr.sgm')


def corpus_scores(
  hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str = '13a', trg_lang: str = ''
) -> dict[str, float | str]:
  """sacrebleu's corpus BLEU (default 13a tokenisation, exponential smoothing, as its command line) and
  chrF (character 6-grams, beta 2) of detokenised hypotheses against one reference each, with the
  signatures that say how they were computed."""
  import sacrebleu  # pylint: disable=g-import-not-at-top

  if len(hypotheses) != len(references):
    raise ValueError(f'{len(hypotheses)} hypotheses for {len(references)} references')
  bleu = sacrebleu.metrics.BLEU(tokenize=tokenize, trg_lang=trg_lang)
  chrf = sacrebleu.metrics.CHRF()
  b = bleu.corpus_score(list(hypotheses), [list(references)])
  c = chrf.corpus_score(list(hypotheses), [list(references)])
  return {
    'bleu': float(b.score),
    'bleu_signature': str(bleu.get_signature()),
    'chrf': float(c.score),
    'chrf_signature': str(chrf.get_signature()),
    'bleu_details': str(b),
  }


def seed_sacrebleu_cache(newstest_dir: str, cache_dir: str) -> str:
  """Copies the newstest2014 fr-en .sgm files where sacrebleu looks for 'wmt14/full' and writes the
  placeholder archive, so that sacrebleu reads the test set without a download. Returns cache_dir."""
  raw = os.path.join(cache_dir, 'wmt14', 'full', 'raw')
  os.makedirs(os.path.join(raw, 'test-full'), exist_ok=True)
  for name in NEWSTEST2014:
    src = os.path.join(newstest_dir, name)
    if not os.path.exists(src):
      raise DataError(f'{src} not found: put the newstest2014 fr-en .sgm files in {newstest_dir}')
    dst = os.path.join(raw, 'test-full', name)
    if not os.path.exists(dst):
      shutil.copyfile(src, dst)
  placeholder = os.path.join(raw, 'wmt14_full.test-full.tgz')
  if not os.path.exists(placeholder) or os.path.getsize(placeholder) == 0:
    with open(placeholder, 'w') as f:
      f.write('placeholder: the files are already in test-full/\n')
  return cache_dir


def sacrebleu_test_set(
  cache_dir: str, test_set: str = 'wmt14/full', langpair: str = 'en-fr'
) -> tuple[list[str], list[str]]:
  """(sources, references) of a sacrebleu test set read from `cache_dir` (seeded beforehand).

  sacrebleu fixes its cache folder from $SACREBLEU when first imported: set it before (this function
  does when sacrebleu is not imported yet) or it fails with a one-line error.
  """
  if 'sacrebleu' not in sys.modules:
    os.environ['SACREBLEU'] = cache_dir
  import sacrebleu  # pylint: disable=g-import-not-at-top
  from sacrebleu import utils  # pylint: disable=g-import-not-at-top

  if os.path.abspath(utils.SACREBLEU_DIR) != os.path.abspath(cache_dir):
    raise DataError(
      f'sacrebleu already reads its cache from {utils.SACREBLEU_DIR}; '
      f'set $SACREBLEU={cache_dir} before starting'
    )
  del sacrebleu
  with open(utils.get_source_file(test_set, langpair), encoding='utf-8') as f:
    sources = [line.rstrip('\n') for line in f]
  with open(utils.get_reference_files(test_set, langpair)[0], encoding='utf-8') as f:
    references = [line.rstrip('\n') for line in f]
  return sources, references
