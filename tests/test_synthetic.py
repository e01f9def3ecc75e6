"""The synthetic corpus: deterministic, balanced brackets, distinct regimes, fixed vocabulary."""

import numpy as np
import pytest

from experiments.data import synthetic

N = 60_000


@pytest.fixture(scope='module')
def corpus():
  return synthetic.generate_corpus_with_regimes(N, seed=5)


def test_deterministic_and_seed_dependent(corpus):
  text, regime = corpus
  again, regime_again = synthetic.generate_corpus_with_regimes(N, seed=5)
  assert text == again and np.array_equal(regime, regime_again)
  assert synthetic.generate_corpus(N, seed=6) != text
  assert synthetic.generate_corpus(N, seed=5) == text
  assert len(text) == N == len(regime)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_brackets_balanced_and_nested(seed):
  text = synthetic.generate_corpus(20_000 + 7 * seed, seed)
  closer = {'(': ')', '[': ']', '{': '}'}
  stack, max_depth, opened = [], 0, 0
  for c in text:
    if c in closer:
      stack.append(closer[c])
      opened += 1
      max_depth = max(max_depth, len(stack))
    elif c in ')]}':
      assert stack and stack.pop() == c, 'closing bracket does not match the innermost open one'
  assert not stack
  assert opened > 100 and max_depth >= 3  # nesting is actually exercised


def test_vocabulary(corpus):
  text, _ = corpus
  assert set(text) == set(synthetic.ALPHABET)
  assert len(synthetic.ALPHABET) == 63
  assert text.count('\n') > N / 120  # lines of 40..100 characters


def _hist(chars: str) -> np.ndarray:
  index = {c: i for i, c in enumerate(synthetic.ALPHABET)}
  h = np.bincount([index[c] for c in chars], minlength=len(index)).astype(float)
  return h / h.sum()


def test_regimes_present_with_different_statistics(corpus):
  text, regime = corpus
  chars = np.array(list(text))
  content = ~np.isin(chars, list('()[]{}\n '))
  hists = {}
  for k, name in enumerate(synthetic.REGIMES):
    sel = (regime == k) & content
    assert sel.sum() > N / 20, f'regime {name} barely present'
    hists[name] = _hist(''.join(chars[sel]))
  # Total-variation distance between the character distributions of every pair of regimes.
  for a in synthetic.REGIMES:
    for b in synthetic.REGIMES:
      if a < b:
        tv = 0.5 * np.abs(hists[a] - hists[b]).sum()
        assert tv > 0.3, (a, b, tv)
  # Regimes switch often: many segments, not a few long blocks.
  assert np.count_nonzero(np.diff(regime)) > N / 1000


def test_splits_sizes_and_independence():
  s = synthetic.splits(0)
  assert {k: len(v) for k, v in s.items()} == synthetic.SPLIT_SIZES
  assert s['valid'] != s['test'] and s['valid'] not in s['train']
  assert synthetic.splits(1)['valid'] != s['valid']
