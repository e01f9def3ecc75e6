"""hyper.seq2seq: masking and padding invariance, teacher forcing vs step-by-step decoding, greedy and beam
search (known best sequence, beam 1 == greedy, GNMT length normalisation, stopping at EOS)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyper import seq2seq
from hyper.cells import HyperLSTMCell, LSTMCell

PAD, BOS, EOS, A, B = 0, 1, 2, 3, 4
SRC_V, TGT_V, H = 11, 13, 8


def make_model(cell, layers=3):
  return seq2seq.Seq2Seq(
    cell,
    SRC_V,
    TGT_V,
    embed_size=5,
    encoder_layers=layers,
    decoder_layers=layers,
    residual_start=2,
    attention_units=7,
  )


class Compiled:
  """The model's entry points jitted once (one compile per input shape, not one per call)."""

  def __init__(self, model, variables):
    self.model, self.variables = model, variables

    def forward(v, src, lengths, tgt):
      memory = model.apply(v, src, lengths, method=seq2seq.Seq2Seq.encode).memory
      logits, attn = model.apply(v, src, lengths, tgt, return_attention=True)
      return memory, logits, attn

    self.forward = jax.jit(forward)
    self.encode = jax.jit(lambda v, s, n: model.apply(v, s, n, method=seq2seq.Seq2Seq.encode))
    self.step = jax.jit(lambda v, c, t, e: model.apply(v, c, t, e, method=seq2seq.Seq2Seq.decode_step))


@pytest.fixture(scope='module', params=['lstm', 'ln_hyperlstm'])
def compiled(request):
  # The LSTM model has residual layers (3 + 3); the HyperLSTM one, slower to compile, 2 + 2.
  if request.param == 'lstm':
    model = make_model(LSTMCell(H), layers=3)
  else:
    model = make_model(HyperLSTMCell(H, hyper_features=4, embedding_size=2, layer_norm=True), layers=2)
  src, tgt = jnp.ones((1, 3), jnp.int32), jnp.ones((1, 2), jnp.int32)
  variables = jax.jit(model.init)(jax.random.key(0), src, jnp.array([3]), tgt)
  return Compiled(model, variables)


def test_padded_batch_equals_unpadded_sentences(compiled):
  f, v = compiled.forward, compiled.variables
  rng = np.random.default_rng(0)
  src_lens, tgt_lens = [5, 3], [4, 2]
  # Padding holds garbage ids: only the lengths may decide what is padding.
  src = jnp.asarray(rng.integers(3, SRC_V, (2, 5)), jnp.int32)
  tgt = jnp.asarray(rng.integers(3, TGT_V, (2, 4)), jnp.int32)
  memory, logits, attn = f(v, src, jnp.array(src_lens), tgt)
  # Padded source positions get exactly zero attention weight, real ones sum to 1.
  assert float(jnp.abs(attn[1, :, 3:]).max()) == 0.0
  np.testing.assert_allclose(attn.sum(-1), 1.0, rtol=1e-5)
  for b in range(2):
    s, t = src_lens[b], tgt_lens[b]
    m1, l1, a1 = f(v, src[b : b + 1, :s], jnp.array([s]), tgt[b : b + 1, :t])
    np.testing.assert_allclose(memory[b, :s], m1[0], rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(logits[b, :t], l1[0], rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(attn[b, :t, :s], a1[0], rtol=2e-5, atol=2e-5)
  # The bidirectional bottom layer really reads both ways: changing the last real token changes the
  # encoder output at position 0 (backward direction), and not at all of the other sentence.
  src2 = src.at[1, 2].set((src[1, 2] + 1 - 3) % (SRC_V - 3) + 3)
  memory2, _, _ = f(v, src2, jnp.array(src_lens), tgt)
  assert float(jnp.abs(memory2[1, 0] - memory[1, 0]).max()) > 1e-6
  np.testing.assert_array_equal(memory2[0], memory[0])


def test_teacher_forcing_equals_step_by_step(compiled):
  v = compiled.variables
  rng = np.random.default_rng(1)
  src = jnp.asarray(rng.integers(3, SRC_V, (2, 5)), jnp.int32)
  lengths = jnp.array([5, 2])
  tgt = jnp.asarray(rng.integers(3, TGT_V, (2, 4)), jnp.int32)
  _, logits, _ = compiled.forward(v, src, lengths, tgt)  # same shapes as the padded test: no compile
  enc = compiled.encode(v, src, lengths)
  carry = compiled.model.apply(v, 2, method=seq2seq.Seq2Seq.initial_decoder_carry)
  for t in range(4):
    carry, step_logits, _, _ = compiled.step(v, carry, tgt[:, t], enc)
    np.testing.assert_allclose(step_logits, logits[:, t], rtol=2e-5, atol=2e-5)


def test_model_beam_one_equals_greedy(compiled):
  model, variables = compiled.model, compiled.variables
  src = jnp.asarray(np.random.default_rng(2).integers(3, SRC_V, (3, 4)), jnp.int32)
  lengths = jnp.array([4, 2, 3])
  kw = dict(max_len=6, bos_id=BOS, eos_id=EOS)
  greedy = jax.jit(lambda v: seq2seq.greedy_decode(model, v, src, lengths, **kw))(variables)
  beam, _ = jax.jit(
    lambda v: seq2seq.beam_search_decode(model, v, src, lengths, beam_size=1, alpha=0.0, **kw)
  )(variables)
  np.testing.assert_array_equal(beam[:, 0], greedy)
  assert not np.any(np.isin(np.asarray(greedy), [BOS]))  # BOS is never generated


# ---- search on toy Markov models: log P(next | last token) from a table ------------------------------


def markov_step(table):
  logp = jnp.log(jnp.asarray(table, jnp.float32) + 1e-30)

  def step(carry, tokens):
    return carry, logp[tokens], None

  return step


def table(rows):
  """rows: {token: {next: prob}} over the toy vocabulary (PAD BOS EOS A B)."""
  t = np.zeros((5, 5))
  for tok, nxt in rows.items():
    for n, p in nxt.items():
      t[tok, n] = p
  t[PAD, PAD] = t[EOS, PAD] = 1.0
  return t


# Greedy takes A (0.6) and then A forever; the best sentence is B EOS (0.4 * 0.9 = 0.36).
TRAP = table({BOS: {A: 0.6, B: 0.4}, A: {A: 0.36, B: 0.34, EOS: 0.3}, B: {EOS: 0.9, A: 0.05, B: 0.05}})


def test_beam_finds_known_best_and_greedy_does_not():
  step, carry = markov_step(TRAP), jnp.zeros((2,))
  greedy = seq2seq.greedy_search(step, jnp.zeros((1,)), 1, max_len=6, bos_id=BOS, eos_id=EOS)
  np.testing.assert_array_equal(greedy[0], [A] * 6)
  for alpha in (0.0, 0.6):
    seqs, scores = seq2seq.beam_search(
      step, carry, 1, beam_size=2, max_len=6, bos_id=BOS, eos_id=EOS, alpha=alpha
    )
    np.testing.assert_array_equal(seqs[0, 0], [B, EOS, PAD, PAD, PAD, PAD])
    # GNMT's length normalisation: log P / ((5 + |Y|) / 6)^alpha, |Y| = 2 tokens with EOS.
    np.testing.assert_allclose(scores[0, 0], math.log(0.36) / ((5 + 2) / 6) ** alpha, rtol=1e-5)
    # Second: A B EOS (0.6 * 0.34 * 0.9 = 0.1836, above A EOS's 0.18).
    np.testing.assert_array_equal(seqs[0, 1], [A, B, EOS, PAD, PAD, PAD])
    np.testing.assert_allclose(scores[0, 1], math.log(0.1836) / ((5 + 3) / 6) ** alpha, rtol=1e-5)


def brute_force_best(t, max_len, alpha):
  """(tokens, score) of the best EOS-terminated sentence up to max_len tokens under GNMT's score."""
  best = (None, -np.inf)
  frontier = [((), 0.0)]
  for n in range(1, max_len + 1):
    nxt = []
    for seq, logp in frontier:
      last = seq[-1] if seq else BOS
      for tok in (EOS, A, B):
        if t[last, tok] == 0:
          continue
        lp = logp + math.log(t[last, tok])
        if tok == EOS:
          score = lp / ((5 + n) / 6) ** alpha
          if score > best[1]:
            best = (seq + (tok,), score)
        else:
          nxt.append((seq + (tok,), lp))
    frontier = nxt
  return best


def test_length_penalty_formula_and_its_effect():
  np.testing.assert_allclose(seq2seq.length_penalty(7, 0.6), (12 / 6) ** 0.6, rtol=1e-6)
  np.testing.assert_allclose(seq2seq.length_penalty(1, 0.0), 1.0)
  # EOS at once (0.5) against longer sentences A..A B EOS (0.5 * 0.9^k * 0.1 * 0.95): without
  # normalisation the short one wins, with a strong one (alpha = 4) a long one does.
  t = table({BOS: {EOS: 0.5, A: 0.5}, A: {A: 0.9, B: 0.1}, B: {EOS: 0.95, B: 0.05}})
  step, carry = markov_step(t), jnp.zeros((3,))
  winners = []
  for alpha in (0.0, 4.0):
    best, best_score = brute_force_best(t, 6, alpha)
    seqs, scores = seq2seq.beam_search(
      step, carry, 1, beam_size=3, max_len=6, bos_id=BOS, eos_id=EOS, alpha=alpha
    )
    np.testing.assert_allclose(scores[0, 0], best_score, rtol=1e-5)
    np.testing.assert_array_equal(seqs[0, 0, : len(best)], best)
    winners.append(best)
  assert winners[0] == (EOS,) and len(winners[1]) > 1


def test_beam_one_equals_greedy_on_random_tables():
  rng = np.random.default_rng(0)
  for seed in range(5):
    t = rng.dirichlet(np.ones(5) * 0.5, size=5)
    t[:, PAD] = 0
    t[:, BOS] = 0
    t /= t.sum(1, keepdims=True)
    step = markov_step(t)
    greedy = seq2seq.greedy_search(step, jnp.zeros((1,)), 1, max_len=8, bos_id=BOS, eos_id=EOS)
    beam, _ = seq2seq.beam_search(
      step, jnp.zeros((1,)), 1, beam_size=1, max_len=8, bos_id=BOS, eos_id=EOS, alpha=0.0
    )
    np.testing.assert_array_equal(beam[0, 0], greedy[0], err_msg=f'seed {seed}')


def test_decoding_stops_at_end_token():
  calls = []

  def counting(step):
    def f(carry, tokens):
      jax.debug.callback(lambda: calls.append(1))
      return step(carry, tokens)

    return f

  t = table({BOS: {A: 0.9, B: 0.1}, A: {EOS: 0.99, A: 0.005, B: 0.005}, B: {EOS: 0.99, A: 0.005, B: 0.005}})
  step = counting(markov_step(t))
  greedy = seq2seq.greedy_search(step, jnp.zeros((2,)), 2, max_len=20, bos_id=BOS, eos_id=EOS)
  jax.effects_barrier()
  np.testing.assert_array_equal(greedy, [[A, EOS] + [PAD] * 18] * 2)
  assert len(calls) == 2
  calls.clear()
  seqs, _ = seq2seq.beam_search(
    step, jnp.zeros((4,)), 2, beam_size=2, max_len=20, bos_id=BOS, eos_id=EOS, alpha=0.0
  )
  jax.effects_barrier()
  np.testing.assert_array_equal(seqs[:, 0], [[A, EOS] + [PAD] * 18] * 2)
  np.testing.assert_array_equal(seqs[:, 1], [[B, EOS] + [PAD] * 18] * 2)
  assert len(calls) == 2  # both finished slots full and no live hypothesis can win: stop


def test_coverage_penalty_formula():
  cov = jnp.array([[0.5, 2.0, 0.0, 0.3]])
  mask = jnp.array([[True, True, True, False]])
  expected = 0.2 * (math.log(0.5) + math.log(1.0) + math.log(1e-10))
  np.testing.assert_allclose(seq2seq.coverage_penalty(cov, mask, 0.2), [expected], rtol=1e-5)
  np.testing.assert_allclose(seq2seq.coverage_penalty(cov, mask, 0.0), [0.0])


def test_coverage_penalty_changes_the_winner():
  # Two source words; reading A attends word 0, B word 1, BOS both halves. P: BOS -> A .5 / B .3 / EOS .2,
  # A -> EOS .6 / B .4, B -> EOS .6 / A .4. Without coverage A EOS (0.3) wins; with beta = 2 the
  # sentences attending both words win: A B EOS scores log 0.12 = -2.12 against A EOS's
  # log 0.3 + 2 log 0.5 = -2.59.
  t = table({BOS: {A: 0.5, B: 0.3, EOS: 0.2}, A: {EOS: 0.6, B: 0.4}, B: {EOS: 0.6, A: 0.4}})
  logp = jnp.log(jnp.asarray(t, jnp.float32) + 1e-30)
  attention = jnp.zeros((5, 2)).at[BOS].set([0.5, 0.5]).at[A].set([1.0, 0.0]).at[B].set([0.0, 1.0])

  def step(carry, tokens):
    return carry, logp[tokens], attention[tokens]

  kw = dict(beam_size=3, max_len=5, bos_id=BOS, eos_id=EOS, alpha=0.0, src_mask=jnp.ones((1, 2), bool))
  seqs, scores = seq2seq.beam_search(step, jnp.zeros((3,)), 1, beta=0.0, **kw)
  np.testing.assert_array_equal(seqs[0, 0, :2], [A, EOS])
  np.testing.assert_allclose(scores[0, 0], math.log(0.3), rtol=1e-5)
  seqs, scores = seq2seq.beam_search(step, jnp.zeros((3,)), 1, beta=2.0, **kw)
  np.testing.assert_array_equal(seqs[0, 0, :3], [A, B, EOS])
  np.testing.assert_allclose(scores[0, 0], math.log(0.12), rtol=1e-5)
  np.testing.assert_array_equal(seqs[0, 1, :2], [A, EOS])  # second: A EOS with its coverage penalty
  np.testing.assert_allclose(scores[0, 1], math.log(0.3) + 2 * math.log(0.5), rtol=1e-5)
