"""A character corpus the project generates itself, for the default experiment (no third-party text).

The text switches, at random points and without any marker, between regimes whose character statistics
differ sharply (pseudo-English words, a vowel-heavy babble, upper-case consonant clusters, counting
sequences of numbers, a repeated random motif). A fixed set of weights fits no regime well, so a model
that re-weights its recurrent matrices at every step (the HyperLSTM, sec. 3.2) has something to gain.
Nested brackets of three kinds, opened and closed across regime switches, must be closed in the right
order, so the model also needs memory; lines end with newlines.

The language (lexicon, Markov tables) is fixed; the seed only chooses the text, so corpora made with
different seeds are draws from the same distribution (train / valid / test come from `splits`).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import random

import numpy as np

# Every character the generator can emit; the synthetic corpus's vocabulary, in this order.
_UPPER = 'BCDFGHKLMNPRSTVZ'
ALPHABET: str = ''.join(sorted(set('\n ()[]{},-.0123456789abcdefghijklmnopqrstuvwxyz' + _UPPER)))

REGIMES: tuple[str, ...] = ('words', 'vowels', 'shout', 'counting', 'motif')
# Split sizes (characters) of `splits`: small enough for a few minutes of CPU training.
SPLIT_SIZES: dict[str, int] = {'train': 1_000_000, 'valid': 50_000, 'test': 50_000}

_GRAMMAR_SEED = 1609_09106  # fixes the language; never depends on the corpus seed
_MEAN_REGIME_CHARS = 250  # mean length of a regime segment (geometric)
_MAX_DEPTH = 4  # deepest bracket nesting
_P_OPEN = 0.04  # per token, chance to open a bracket (when depth < _MAX_DEPTH)
_P_CLOSE = 0.12  # per token and open bracket, chance to close the innermost one
_BRACKETS = {'(': ')', '[': ']', '{': '}'}
_LINE_CHARS = (40, 100)  # a newline replaces the separator once a line is longer than U(40, 100)


def _cumulative(weights) -> list[float]:
  acc = list(itertools.accumulate(float(w) for w in weights))
  return [a / acc[-1] for a in acc]


def _draw(rng: random.Random, cum: list[float]) -> int:
  # Only Random.random() is used: its sequence is reproducible across Python versions.
  return min(bisect.bisect_right(cum, rng.random()), len(cum) - 1)


class _Grammar:
  """The fixed language: lexicon with Zipf frequencies and the Markov tables of the char regimes."""

  def __init__(self):
    g = random.Random(_GRAMMAR_SEED)
    consonants, vowels = 'bcdfghjklmnprstvwy', 'aeiou'

    def syllable():
      s = consonants[int(g.random() * 18)] + vowels[int(g.random() * 5)]
      return s + consonants[int(g.random() * 18)] if g.random() < 0.3 else s

    words = set()
    while len(words) < 300:
      words.add(''.join(syllable() for _ in range(1 + int(g.random() * 3))))
    self.lexicon = sorted(words)
    g.shuffle(self.lexicon)
    self.lexicon_cum = _cumulative(1.0 / (r + 1) for r in range(len(self.lexicon)))

    # Vowel-heavy babble: order-1 chain over vowels, a few liquids/nasals and the word end ' '.
    self.vowel_symbols = 'aeioulmnr '
    self.vowel_cum = {}
    for prev in self.vowel_symbols:
      w = [(3.0 if s in 'aeiou' else 0.6) * (0.2 + g.random()) for s in self.vowel_symbols]
      w[-1] = 0.0 if prev == ' ' else 2.5  # words of ~5 letters, never empty
      self.vowel_cum[prev] = _cumulative(w)

    # Upper-case consonant clusters: sparse order-2 chain (three likely successors per context).
    self.shout_symbols = _UPPER + ' '
    self.shout_cum = {}
    for a in self.shout_symbols:
      for b in self.shout_symbols:
        w = [0.02] * len(_UPPER) + [0.0 if b == ' ' else 1.5]
        for k in g.sample(range(len(_UPPER)), 3):
          w[k] += 1.0 + 2.0 * g.random()
        self.shout_cum[a + b] = _cumulative(w)


@functools.lru_cache(maxsize=1)
def _grammar() -> _Grammar:
  return _Grammar()


class _Regime:
  """Emits tokens of one regime; `reset` is called whenever the text switches into it."""

  def __init__(self, name: str, grammar: _Grammar, rng: random.Random):
    self.name, self.g, self.rng = name, grammar, rng

  def reset(self):
    r = self.rng
    if self.name == 'counting':  # n, n+k, n+2k, ...: predictable once n and k are seen
      self.value = int(r.random() * 10 ** (1 + int(r.random() * 4)))
      self.step = (1, 1, 2, 3, 10)[int(r.random() * 5)]
    elif self.name == 'motif':  # a fresh random motif, then copies of it: needs a short memory
      n = 2 + int(r.random() * 5)
      self.motif = ''.join(chr(97 + int(r.random() * 26)) for _ in range(n))

  def token(self) -> str:
    r, g = self.rng, self.g
    if self.name == 'words':
      word = g.lexicon[_draw(r, g.lexicon_cum)]
      u = r.random()
      return word + ('.' if u < 0.08 else ',' if u < 0.14 else '')
    if self.name == 'vowels':
      out, prev = [], ' '
      while True:
        prev = g.vowel_symbols[_draw(r, g.vowel_cum[prev])]
        if prev == ' ':
          return ''.join(out)
        out.append(prev)
    if self.name == 'shout':
      out, ctx = [], '  '
      while True:
        c = g.shout_symbols[_draw(r, g.shout_cum[ctx])]
        if c == ' ':
          return ''.join(out)
        out.append(c)
        ctx = ctx[1] + c
    if self.name == 'counting':
      self.value += self.step
      return str(self.value)
    if self.name == 'motif':
      return '-'.join([self.motif] * (1 + int(r.random() * 3)))
    raise ValueError(self.name)


def generate_corpus_with_regimes(num_chars: int, seed: int) -> tuple[str, np.ndarray]:
  """Returns (text of exactly num_chars characters, int8 [num_chars] index into REGIMES per char).

  Brackets are balanced and correctly nested over the whole text (closers are appended at the end
  when needed); a bracket or separator carries the regime of the segment it was written in.
  """
  if num_chars < 2 * _MAX_DEPTH:
    raise ValueError(f'num_chars must be at least {2 * _MAX_DEPTH}, got {num_chars}')
  rng = random.Random(seed)
  regimes = [_Regime(name, _grammar(), rng) for name in REGIMES]
  pieces: list[str] = []
  labels: list[tuple[int, int]] = []  # (regime index, piece length)
  stack: list[str] = []
  total, line, line_max, seg_left, cur = 0, 0, 70, 0, 0
  budget = num_chars - _MAX_DEPTH  # leaves room to close every open bracket at the end

  def emit(s: str):
    nonlocal total, line, seg_left
    pieces.append(s)
    labels.append((cur, len(s)))
    total += len(s)
    line = 0 if s == '\n' else line + len(s)
    seg_left -= len(s)

  while total < budget:
    if seg_left <= 0:  # switch to a different regime, no marker in the text
      cur = (cur + 1 + int(rng.random() * (len(REGIMES) - 1))) % len(REGIMES)
      regimes[cur].reset()
      seg_left = 1 + int(-_MEAN_REGIME_CHARS * np.log1p(-rng.random()))
    if len(stack) < _MAX_DEPTH and rng.random() < _P_OPEN:
      opener = '([{'[int(rng.random() * 3)]
      stack.append(_BRACKETS[opener])
      emit(opener)
    emit(regimes[cur].token())
    while stack and rng.random() < _P_CLOSE * len(stack):
      emit(stack.pop())
    if line > line_max:
      emit('\n')
      line_max = int(_LINE_CHARS[0] + rng.random() * (_LINE_CHARS[1] - _LINE_CHARS[0]))
    else:
      emit(' ')

  text = ''.join(pieces)
  regime = np.repeat(np.array([c for c, _ in labels], np.int8), [n for _, n in labels])
  # Cut to fit, then close what is still open at the cut (pad with spaces to the exact length).
  cut = num_chars - _MAX_DEPTH
  text, regime = text[:cut], regime[:cut]
  open_stack = []
  closers = {v: k for k, v in _BRACKETS.items()}
  for c in text:
    if c in _BRACKETS:
      open_stack.append(_BRACKETS[c])
    elif c in closers:
      open_stack.pop()
  tail = ''.join(reversed(open_stack))
  tail = ' ' * (_MAX_DEPTH - len(tail)) + tail
  regime = np.concatenate([regime, np.full(_MAX_DEPTH, regime[-1], np.int8)])
  return text + tail, regime


def generate_corpus(num_chars: int, seed: int) -> str:
  """Regime-switching text with nested brackets and newlines; exactly num_chars long, deterministic."""
  return generate_corpus_with_regimes(num_chars, seed)[0]


@functools.lru_cache(maxsize=4)
def splits(seed: int = 0) -> dict[str, str]:
  """{'train', 'valid', 'test'} texts of SPLIT_SIZES characters, drawn independently for one seed."""
  if seed < 0:
    raise ValueError(f'seed must be >= 0, got {seed}')
  # Distinct corpus seeds for every (seed, split) pair.
  return {
    name: generate_corpus(size, seed * len(SPLIT_SIZES) + i)
    for i, (name, size) in enumerate(SPLIT_SIZES.items())
  }
