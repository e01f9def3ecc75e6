"""GNMT-style encoder-decoder with attention (Wu et al. 2016) whose recurrent layers are any
`hyper.cells` cell, and its decoders (greedy; beam search with GNMT's length normalisation and coverage
penalty).

The paper's Table 6 replaces GNMT's LSTM cells by layer-norm HyperLSTM cells; here the cell is a value: an
unbound cell module (e.g. `HyperLSTMCell(features=1024, hyper_features=128, embedding_size=32)`) that
every recurrent layer copies (`cell.copy(name=...)`), as `flax.linen.RNN(cell)` does.

Architecture (GNMT section 3, our reading where it leaves a choice):

- Encoder: embedding; layer 0 is bidirectional (a forward and a backward copy of the cell, their outputs
  concatenated, [B, S, 2H]); layers 1.. are unidirectional; from layer `residual_start` on (GNMT: from
  the third layer, index 2) each layer's input is added to its output (residual connection).
  The backward direction reads every sentence from its own last real token: padding never enters it.
- Attention: additive (Bahdanau, GNMT's AttentionFunction, a feed-forward net with one hidden layer),
  score_t = v · tanh(W_q q + W_k x_t), or scaled dot product score_t = (W_q q) · x_t / sqrt(H); padded
  source positions get score -1e9, hence exactly zero weight after the softmax.
- Decoder step i (GNMT fig. 1 and eq. for s_t): the query is the bottom decoder layer's output of the
  previous step y^1_{i-1} (zero at i = 1); the context a_i = sum_t p_t x_t is concatenated to the input
  of EVERY decoder layer (bottom: [embed(y_{i-1}); a_i], layer l: [y^l_i; a_i]), residual connections
  from layer `residual_start` on as in the encoder, and a softmax over the top layer's output.
  (The TF NMT "gnmt_v2" variant uses the bottom layer's *new* output as query; the paper's text says
  y^1_{i-1}, which also lets the bottom layer see a_i.)
- Dropout (rate `dropout`) on every layer's input, as GNMT's recipe.

Every function is pure: `Seq2Seq.apply(variables, src, src_lengths, tgt_in)` gives teacher-forced logits;
`encode` / `initial_decoder_carry` / `decode_step` (via `apply(..., method=...)`) give the same logits one
step at a time for `greedy_decode` and `beam_search_decode`, which run as `jax.lax.while_loop`s over
fixed-shape buffers.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

Array = jax.Array
PyTree = Any

NEG_INF = -1e9  # finite "minus infinity": exp underflows to exactly 0, and no inf - inf = nan


# ----------------------------------------------------------------------------------------------------------
# Running a cell over a sequence.


def _cell_copy(cell: nn.Module, name: str) -> nn.Module:
  """A fresh copy of the template cell named `name` (layers >= 0 read float vectors, never token ids)."""
  updates = {'vocab_size': None} if 'vocab_size' in {f.name for f in dataclasses.fields(cell)} else {}
  return cell.copy(name=name, **updates)


def _scan_body(cell, carry, xs, deterministic: bool):
  projected, valid = xs  # valid: [B] bool
  new_carry, out, _ = cell.step(carry, projected, deterministic, diagnostics=False)
  # Past an example's length: carry frozen, output zero.
  new_carry = jax.tree.map(lambda n, o: jnp.where(valid[:, None], n, o.astype(n.dtype)), new_carry, carry)
  out = jnp.where(valid[:, None], out, jnp.zeros_like(out))
  return new_carry, out


def run_cell(
  cell: nn.Module, inputs: Array, valid: Array, carry: PyTree, deterministic: bool
) -> tuple[PyTree, Array]:
  """One recurrent layer over a sequence: the input projections of all steps in one matmul
  (`cell.project_inputs`), then `jax.lax.scan` of `cell.step`. inputs [B, T, D], valid [B, T] bool
  (carry frozen and output zero where False). Returns (final carry, outputs [B, T, H])."""
  projected = cell.project_inputs(jnp.swapaxes(inputs, 0, 1))  # [T, B, ...]
  scan = nn.scan(
    functools.partial(_scan_body, deterministic=deterministic),
    variable_broadcast='params',
    split_rngs={'params': False, 'dropout': True},
    in_axes=0,
    out_axes=0,
  )
  carry, outputs = scan(cell, carry, (projected, jnp.swapaxes(valid, 0, 1)))
  return carry, jnp.swapaxes(outputs, 0, 1)


def reverse_padded(x: Array, lengths: Array) -> Array:
  """Reverses each row's first lengths[b] steps (axis 1), padding left in place (an involution)."""
  t = jnp.arange(x.shape[1])[None, :]
  index = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # [B, T]
  index = index.reshape(index.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, index, axis=1)


# ----------------------------------------------------------------------------------------------------------
# Attention.


class Attention(nn.Module):
  """Attention of a decoder query over the encoder outputs (memory), masked by source length.

  kind 'additive' (Bahdanau; GNMT): score_t = v · tanh(W_q q + W_k x_t + b);
  kind 'dot' (scaled dot product): score_t = (W_q q) · x_t / sqrt(H).
  `keys(memory)` precomputes W_k x_t once per sentence (outside the decoding loop).
  """

  kind: str = 'additive'
  units: int = 128
  dtype: Any = None

  def setup(self):
    if self.kind not in ('additive', 'dot'):
      raise ValueError(f"attention must be 'additive' or 'dot', got {self.kind!r}")
    if self.kind == 'additive':
      self.key_proj = nn.Dense(self.units, use_bias=True, dtype=self.dtype, name='key')
      self.query_proj = nn.Dense(self.units, use_bias=False, dtype=self.dtype, name='query')
      self.v = self.param('v', nn.initializers.lecun_normal(), (self.units, 1))
    else:
      self.query_proj = nn.Dense(self.units, use_bias=False, dtype=self.dtype, name='query')

  def keys(self, memory: Array) -> Array:
    """[B, S, H] -> what the scores read per source position ([B, S, units] or the memory itself)."""
    return self.key_proj(memory) if self.kind == 'additive' else memory

  def __call__(self, query: Array, keys: Array, memory: Array, mask: Array) -> tuple[Array, Array]:
    """query [B, Q], keys from `keys`, memory [B, S, H], mask [B, S] bool -> (context [B, H],
    weights [B, S]); weights are exactly 0 where mask is False."""
    q = self.query_proj(query)
    if self.kind == 'additive':
      scores = (jnp.tanh(keys + q[:, None, :]) @ self.v)[..., 0]
    else:
      if q.shape[-1] != memory.shape[-1]:
        raise ValueError(
          f'dot attention needs units == encoder features ({memory.shape[-1]}), got {q.shape[-1]}'
        )
      scores = jnp.einsum('bh,bsh->bs', q, keys) / jnp.sqrt(jnp.float32(q.shape[-1]))
    scores = jnp.where(mask, scores.astype(jnp.float32), NEG_INF)
    weights = jax.nn.softmax(scores, axis=-1)
    context = jnp.einsum('bs,bsh->bh', weights, memory.astype(jnp.float32))
    return context, weights


# ----------------------------------------------------------------------------------------------------------
# Encoder and decoder step.


class Encoder(nn.Module):
  """Bidirectional bottom layer, unidirectional layers above it, residual connections from
  `residual_start` on. Returns encoder outputs [B, S, H] (zero at padded positions)."""

  cell: nn.Module
  num_layers: int = 2
  residual_start: int = 2
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: Array, lengths: Array, deterministic: bool = True) -> Array:
    batch, steps = x.shape[0], x.shape[1]
    valid = jnp.arange(steps)[None, :] < lengths[:, None]  # [B, S]
    zero = lambda d: self.cell.initialize_carry(jax.random.key(0), (batch, d))
    drop = nn.Dropout(self.dropout)
    x = drop(x, deterministic=deterministic)
    _, fwd = run_cell(_cell_copy(self.cell, 'fwd_0'), x, valid, zero(x.shape[-1]), deterministic)
    _, bwd = run_cell(
      _cell_copy(self.cell, 'bwd_0'), reverse_padded(x, lengths), valid, zero(x.shape[-1]), deterministic
    )
    x = jnp.concatenate([fwd, reverse_padded(bwd, lengths)], axis=-1)  # [B, S, 2H]
    for layer in range(1, self.num_layers):
      inp = drop(x, deterministic=deterministic)
      _, y = run_cell(_cell_copy(self.cell, f'layer_{layer}'), inp, valid, zero(inp.shape[-1]), deterministic)
      x = y + x if layer >= self.residual_start else y
    return x


class DecoderCarry(NamedTuple):
  cells: tuple  # one carry per decoder layer
  query: Array  # [B, H] bottom layer's output at the previous step (attention query)


class DecoderStep(nn.Module):
  """One decoder time step over all layers (see the module docstring): (carry, embedded y_{i-1}) ->
  (carry, (top output [B, H], attention weights [B, S], per-layer diagnostics))."""

  cell: nn.Module
  num_layers: int = 2
  residual_start: int = 2
  dropout: float = 0.0
  attention: str = 'additive'
  attention_units: int = 128
  dtype: Any = None

  def setup(self):
    self.attend = Attention(self.attention, self.attention_units, self.dtype)
    self.layers = [_cell_copy(self.cell, f'layer_{layer}') for layer in range(self.num_layers)]
    self.drop = nn.Dropout(self.dropout)

  def keys(self, memory: Array) -> Array:
    return self.attend.keys(memory)

  def __call__(
    self,
    carry: DecoderCarry,
    x: Array,
    memory: Array,
    keys: Array,
    mask: Array,
    deterministic: bool = True,
    diagnostics: bool = False,
  ):
    context, weights = self.attend(carry.query, keys, memory, mask)
    new_cells, diag = [], {}
    below = None
    for layer, cell in enumerate(self.layers):
      inp = jnp.concatenate([x if layer == 0 else below, context.astype(x.dtype)], axis=-1)
      inp = self.drop(inp, deterministic=deterministic)
      c, y, d = cell.step(
        carry.cells[layer], cell.project_inputs(inp), deterministic, diagnostics=diagnostics
      )
      if layer >= self.residual_start:
        y = y + below
      new_cells.append(c)
      if diagnostics:
        diag[f'layer_{layer}'] = d
      if layer == 0:
        query = y
      below = y
    return DecoderCarry(tuple(new_cells), query.astype(jnp.float32)), (below, weights, diag)


# ----------------------------------------------------------------------------------------------------------
# The model.


class EncoderState(NamedTuple):
  memory: Array  # [B, S, H] encoder outputs
  keys: Array  # attention keys precomputed from memory
  mask: Array  # [B, S] bool: real source positions


class Seq2Seq(nn.Module):
  """GNMT encoder-decoder with attention over a recurrent cell given as a value.

  Attributes:
    cell: unbound cell module (`hyper.cells`), the template of every recurrent layer (all layers have
      `cell.features` units H; the bidirectional bottom encoder layer outputs 2H).
    src_vocab_size, tgt_vocab_size: subword vocabularies; `share_embeddings` ties source and target
      embeddings (one joint vocabulary, sizes must match).
    embed_size: embedding width (GNMT: 1024).
    encoder_layers, decoder_layers: GNMT 8 + 8 (the bidirectional layer counts as one encoder layer).
    residual_start: first layer index (0-based) with a residual connection (GNMT: 2, the third layer).
    attention: 'additive' (GNMT) or 'dot'; attention_units: hidden size of the attention net
      (None: H).
    dropout: rate on every layer's input (and the softmax input).
    dtype: computation dtype of embeddings, attention and softmax (the cells have their own).
  """

  cell: nn.Module
  src_vocab_size: int
  tgt_vocab_size: int
  embed_size: int = 1024
  encoder_layers: int = 8
  decoder_layers: int = 8
  residual_start: int = 2
  attention: str = 'additive'
  attention_units: int | None = None
  dropout: float = 0.0
  share_embeddings: bool = False
  dtype: Any = None

  def setup(self):
    if self.encoder_layers < 1 or self.decoder_layers < 1:
      raise ValueError('encoder_layers and decoder_layers must be >= 1')
    if self.residual_start < 2:
      raise ValueError(
        f'residual_start must be >= 2 (layer 0 outputs 2H, layer 1 H), got {self.residual_start}'
      )
    if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
      raise ValueError('share_embeddings needs src_vocab_size == tgt_vocab_size (one joint vocabulary)')
    embed = functools.partial(
      nn.Embed, features=self.embed_size, dtype=self.dtype, embedding_init=nn.initializers.normal(0.1)
    )
    self.src_embed = embed(self.src_vocab_size)
    self.tgt_embed = self.src_embed if self.share_embeddings else embed(self.tgt_vocab_size)
    self.encoder = Encoder(self.cell, self.encoder_layers, self.residual_start, self.dropout)
    self.decoder = DecoderStep(
      self.cell,
      self.decoder_layers,
      self.residual_start,
      self.dropout,
      self.attention,
      self.attention_units or self.cell.features,
      self.dtype,
    )
    self.out_drop = nn.Dropout(self.dropout)
    self.softmax = nn.Dense(self.tgt_vocab_size, dtype=self.dtype)

  def encode(self, src: Array, src_lengths: Array, deterministic: bool = True) -> EncoderState:
    """src [B, S] int ids (padded), src_lengths [B] -> EncoderState."""
    memory = self.encoder(self.src_embed(src), src_lengths, deterministic)
    mask = jnp.arange(src.shape[1])[None, :] < src_lengths[:, None]
    return EncoderState(memory, self.decoder.keys(memory), mask)

  def initial_decoder_carry(self, batch_size: int) -> DecoderCarry:
    h = self.cell.features
    cells = tuple(
      self.cell.initialize_carry(jax.random.key(0), (batch_size, h)) for _ in range(self.decoder_layers)
    )
    return DecoderCarry(cells, jnp.zeros((batch_size, h), jnp.float32))

  def decode_step(self, carry: DecoderCarry, tokens: Array, enc: EncoderState, diagnostics: bool = False):
    """One decoding step: previous tokens [B] -> (carry, logits [B, V] float32, attention [B, S],
    diagnostics)."""
    carry, (top, weights, diag) = self.decoder(
      carry, self.tgt_embed(tokens), enc.memory, enc.keys, enc.mask, True, diagnostics
    )
    return carry, self.softmax(top).astype(jnp.float32), weights, diag

  def __call__(
    self,
    src: Array,
    src_lengths: Array,
    tgt_in: Array,
    deterministic: bool = True,
    return_attention: bool = False,
    return_diagnostics: bool = False,
  ):
    """Teacher forcing: src [B, S], src_lengths [B], tgt_in [B, T] (BOS y_1 .. y_{T-1}) -> logits
    [B, T, V] float32 (plus attention [B, T, S] and per-layer diagnostics [B, T, ...] when asked)."""
    enc = self.encode(src, src_lengths, deterministic)
    x = jnp.swapaxes(self.tgt_embed(tgt_in), 0, 1)  # [T, B, E]

    def body(step, carry, x_t, memory, keys, mask):
      return step(carry, x_t, memory, keys, mask, deterministic, return_diagnostics)

    scan = nn.scan(
      body,
      variable_broadcast='params',
      split_rngs={'params': False, 'dropout': True},
      in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast),
      out_axes=0,
    )
    _, (top, weights, diag) = scan(
      self.decoder, self.initial_decoder_carry(src.shape[0]), x, enc.memory, enc.keys, enc.mask
    )
    top = self.out_drop(jnp.swapaxes(top, 0, 1), deterministic=deterministic)
    logits = self.softmax(top).astype(jnp.float32)
    extra = ()
    if return_attention:
      extra += (jnp.swapaxes(weights, 0, 1),)
    if return_diagnostics:
      extra += (jax.tree.map(lambda d: jnp.swapaxes(d, 0, 1), diag),)
    return (logits,) + extra if extra else logits


# ----------------------------------------------------------------------------------------------------------
# Decoding.


def length_penalty(length: Array, alpha: float) -> Array:
  """GNMT's lp(Y) = (5 + |Y|)^alpha / (5 + 1)^alpha; |Y| counts the generated tokens, EOS included."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def coverage_penalty(coverage: Array, mask: Array, beta: float) -> Array:
  """GNMT's cp(X; Y) = beta * sum_i log(min(sum_j p_ij, 1)) over real source positions i.

  coverage [..., S]: attention summed over the decoded steps j. A position never attended has log 0 =
  -inf; it is floored at log(1e-10) so that scores stay finite.
  """
  if beta == 0.0:
    return jnp.zeros(coverage.shape[:-1], jnp.float32)
  logs = jnp.log(jnp.clip(coverage, 1e-10, 1.0))
  return beta * jnp.sum(jnp.where(mask, logs, 0.0), axis=-1)


StepFn = Callable[[PyTree, Array], tuple[PyTree, Array, Array | None]]


def greedy_search(
  step_fn: StepFn, carry: PyTree, batch_size: int, *, max_len: int, bos_id: int, eos_id: int, pad_id: int = 0
) -> Array:
  """Greedy decoding as a `lax.while_loop`: step_fn(carry, tokens [B]) -> (carry, log_probs [B, V], _).

  Returns tokens [B, max_len]: argmax tokens up to and including EOS, `pad_id` after it; stops when
  every sentence has produced EOS.
  """

  def cond(state):
    i, _, _, _, done = state
    return (i < max_len) & ~jnp.all(done)

  def body(state):
    i, carry, last, seq, done = state
    carry, logp, _ = step_fn(carry, last)
    tok = jnp.argmax(logp, axis=-1).astype(jnp.int32)
    tok = jnp.where(done, pad_id, tok)
    seq = seq.at[:, i].set(tok)
    return i + 1, carry, tok, seq, done | (tok == eos_id)

  state = (
    jnp.int32(0),
    carry,
    jnp.full((batch_size,), bos_id, jnp.int32),
    jnp.full((batch_size, max_len), pad_id, jnp.int32),
    jnp.zeros((batch_size,), bool),
  )
  return jax.lax.while_loop(cond, body, state)[3]


class BeamState(NamedTuple):
  i: Array
  carry: PyTree  # leaves [B * K, ...]
  alive_seq: Array  # [B, K, L]
  alive_logp: Array  # [B, K]
  alive_cov: Array  # [B, K, S] attention summed over the steps (zeros [B, K, 1] without coverage)
  finished_seq: Array  # [B, K, L]
  finished_score: Array  # [B, K]
  finished: Array  # [B, K] bool: slot holds a finished hypothesis


def beam_search(
  step_fn: StepFn,
  carry: PyTree,
  batch_size: int,
  *,
  beam_size: int,
  max_len: int,
  bos_id: int,
  eos_id: int,
  pad_id: int = 0,
  alpha: float = 0.6,
  beta: float = 0.0,
  src_mask: Array | None = None,
) -> tuple[Array, Array]:
  """Beam search (GNMT section 7) as a `lax.while_loop` over fixed-shape buffers.

  step_fn(carry, tokens [B*K]) -> (carry, log_probs [B*K, V], attention [B*K, S] or None); `carry`
  has leaves [B*K, ...] (each sentence's start state repeated K times). Hypotheses are ranked by GNMT's
  s(Y, X) = log P(Y|X) / lp(Y) + cp(X; Y) (`length_penalty`, `coverage_penalty`; beta > 0 needs the
  attention and `src_mask` [B, S]). At each step the 2K best extensions are split into those ending in
  EOS among the K best (candidates for the K finished slots) and the K best others (the new live beam).
  A sentence is done when its K finished slots are full and the best live hypothesis cannot beat the
  worst finished one even at `max_len` (log P only falls; cp <= 0): the search stops when all are.

  Returns (tokens [B, K, max_len] up to and including EOS then `pad_id`, best first; scores [B, K]).
  If a sentence finished nothing by `max_len`, its live hypotheses are returned, scored alike.
  """
  k = beam_size
  b_idx = jnp.arange(batch_size)[:, None]
  cov_len = src_mask.shape[-1] if beta != 0.0 else 1
  mask = src_mask[:, None, :] if beta != 0.0 else jnp.ones((batch_size, 1, 1), bool)

  def gather_beams(x, beams):  # x [B, K, ...], beams [B, K'] -> [B, K', ...]
    return x[b_idx, beams]

  def cond(s: BeamState):
    best_alive = jnp.max(s.alive_logp, axis=1) / length_penalty(max_len, alpha)
    worst_finished = jnp.min(jnp.where(s.finished, s.finished_score, NEG_INF), axis=1)
    done = jnp.all(s.finished, axis=1) & (worst_finished > best_alive)
    return (s.i < max_len) & ~jnp.all(done)

  def body(s: BeamState):
    last = s.alive_seq[:, :, jnp.maximum(s.i - 1, 0)]
    last = jnp.where(s.i == 0, bos_id, last).reshape(-1)
    carry, logp, attn = step_fn(s.carry, last)
    vocab = logp.shape[-1]
    logp = logp.reshape(batch_size, k, vocab).astype(jnp.float32)
    cand_logp = s.alive_logp[:, :, None] + logp  # [B, K, V]
    cov = s.alive_cov
    if beta != 0.0:
      cov = cov + attn.reshape(batch_size, k, -1)
    penalty = coverage_penalty(cov, mask, beta)  # [B, K]
    cand_score = cand_logp / length_penalty(s.i + 1, alpha) + penalty[:, :, None]
    cand_score = jnp.where(s.alive_logp[:, :, None] <= NEG_INF / 2, NEG_INF, cand_score)
    top_score, top = jax.lax.top_k(cand_score.reshape(batch_size, k * vocab), 2 * k)
    beams, tokens = top // vocab, (top % vocab).astype(jnp.int32)
    top_logp = jnp.take_along_axis(cand_logp.reshape(batch_size, -1), top, axis=1)
    seqs = gather_beams(s.alive_seq, beams).at[:, :, s.i].set(tokens)  # [B, 2K, L]
    is_eos = tokens == eos_id
    live = top_score > NEG_INF / 2

    # The new live beam: the K best extensions that did not end.
    alive_rank = jnp.where(is_eos | ~live, NEG_INF, top_score)
    _, keep = jax.lax.top_k(alive_rank, k)
    alive_seq = jnp.take_along_axis(seqs, keep[:, :, None], axis=1)
    alive_logp = jnp.where(
      jnp.take_along_axis(alive_rank, keep, axis=1) > NEG_INF / 2,
      jnp.take_along_axis(top_logp, keep, axis=1),
      NEG_INF,
    )
    origin = jnp.take_along_axis(beams, keep, axis=1)  # [B, K] parent beam of each new live one
    alive_cov = gather_beams(cov, origin)
    flat_origin = (jnp.arange(batch_size)[:, None] * k + origin).reshape(-1)
    carry = jax.tree.map(lambda c: c[flat_origin], carry)

    # Finished slots: the K best of the old ones and the extensions that ended now.
    # Only an EOS among the K best extensions finishes a hypothesis (as fairseq): with K = 1 this is
    # greedy decoding, which never keeps an EOS that was not its argmax.
    ends = is_eos & live & (jnp.arange(2 * k) < k)[None, :]
    new_fin_score = jnp.where(ends, top_score, NEG_INF)
    all_score = jnp.concatenate([jnp.where(s.finished, s.finished_score, NEG_INF), new_fin_score], 1)
    all_seq = jnp.concatenate([s.finished_seq, seqs], axis=1)
    all_flag = jnp.concatenate([s.finished, ends], axis=1)
    fin_score, pick = jax.lax.top_k(all_score, k)
    return BeamState(
      s.i + 1,
      carry,
      alive_seq,
      alive_logp,
      alive_cov,
      jnp.take_along_axis(all_seq, pick[:, :, None], axis=1),
      fin_score,
      jnp.take_along_axis(all_flag, pick, axis=1),
    )

  init_logp = jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1), jnp.float32), (batch_size, 1))
  state = BeamState(
    jnp.int32(0),
    carry,
    jnp.full((batch_size, k, max_len), pad_id, jnp.int32),
    init_logp,
    jnp.zeros((batch_size, k, cov_len), jnp.float32),
    jnp.full((batch_size, k, max_len), pad_id, jnp.int32),
    jnp.full((batch_size, k), NEG_INF, jnp.float32),
    jnp.zeros((batch_size, k), bool),
  )
  s = jax.lax.while_loop(cond, body, state)
  alive_score = s.alive_logp / length_penalty(max_len, alpha) + coverage_penalty(s.alive_cov, mask, beta)
  any_finished = jnp.any(s.finished, axis=1)[:, None]
  seqs = jnp.where(any_finished[:, :, None], s.finished_seq, s.alive_seq)
  scores = jnp.where(any_finished, jnp.where(s.finished, s.finished_score, NEG_INF), alive_score)
  order = jnp.argsort(-scores, axis=1)
  return jnp.take_along_axis(seqs, order[:, :, None], axis=1), jnp.take_along_axis(scores, order, axis=1)


def _model_step_fn(model: Seq2Seq, variables: PyTree, enc: EncoderState, never: tuple[int, ...]) -> StepFn:
  def step(carry, tokens):
    carry, logits, weights, _ = model.apply(variables, carry, tokens, enc, method=Seq2Seq.decode_step)
    logits = logits.at[:, jnp.asarray(never)].set(NEG_INF)  # padding and BOS are never generated
    return carry, jax.nn.log_softmax(logits, axis=-1), weights

  return step


def greedy_decode(
  model: Seq2Seq,
  variables: PyTree,
  src: Array,
  src_lengths: Array,
  *,
  max_len: int,
  bos_id: int,
  eos_id: int,
  pad_id: int = 0,
) -> Array:
  """Greedy translation of a batch: src [B, S] ids, src_lengths [B] -> tokens [B, max_len] (jittable)."""
  enc = model.apply(variables, src, src_lengths, method=Seq2Seq.encode)
  carry = model.apply(variables, src.shape[0], method=Seq2Seq.initial_decoder_carry)
  step = _model_step_fn(model, variables, enc, (pad_id, bos_id))
  return greedy_search(
    step, carry, src.shape[0], max_len=max_len, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id
  )


def beam_search_decode(
  model: Seq2Seq,
  variables: PyTree,
  src: Array,
  src_lengths: Array,
  *,
  beam_size: int,
  max_len: int,
  bos_id: int,
  eos_id: int,
  pad_id: int = 0,
  alpha: float = 0.6,
  beta: float = 0.0,
) -> tuple[Array, Array]:
  """Beam search translation of a batch (`beam_search`): -> (tokens [B, K, max_len], scores [B, K])."""
  enc = model.apply(variables, src, src_lengths, method=Seq2Seq.encode)
  enc = jax.tree.map(lambda a: jnp.repeat(a, beam_size, axis=0), enc)
  batch = src.shape[0]
  carry = model.apply(variables, batch * beam_size, method=Seq2Seq.initial_decoder_carry)
  step = _model_step_fn(model, variables, enc, (pad_id, bos_id))
  return beam_search(
    step,
    carry,
    batch,
    beam_size=beam_size,
    max_len=max_len,
    bos_id=bos_id,
    eos_id=eos_id,
    pad_id=pad_id,
    alpha=alpha,
    beta=beta,
    src_mask=src_lengths[:, None] > jnp.arange(src.shape[1])[None, :],
  )
