"""Text generation from a character model (`hyper.char_lm.CharLM`), with per-step diagnostics.

`sample` primes the model with a text in one call, then generates with one jitted `jax.lax.scan` of
single-character steps. When the model offers them (`return_diagnostics=True`) it also records, for
every character of the returned text, the step that READ that character: the size of the change of the
recurrent weight matrices per gate (i, g, f, o) and tanh(c_t) — the data of the paper's Figures 4 and 5.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

GATES = ('i', 'g', 'f', 'o')  # gate order of the cells' diagnostics (g: the tanh candidate, "j" in code)


def _apply(model, params, tokens, carry, diagnostics: bool):
  """(logits, carry, diagnostics or None); diagnostics {} when the model cannot return them."""
  if diagnostics:
    try:
      out = model.apply({'params': params}, tokens, carry, deterministic=True, return_diagnostics=True)
    except TypeError:
      out = None
    if out is not None:
      logits, carry, diag = out
      return logits, carry, diag
  logits, carry = model.apply({'params': params}, tokens, carry, deterministic=True)
  return logits, carry, None


def encode(text: str, vocab: list[str]) -> np.ndarray:
  """int32 ids of text; ValueError naming the first character outside vocab."""
  index = {c: i for i, c in enumerate(vocab)}
  for k, c in enumerate(text):
    if c not in index:
      raise ValueError(f'prime character {c!r} at position {k} is not in the vocabulary')
  return np.asarray([index[c] for c in text], np.int32)


def _start_id(vocab: list[str]) -> int:
  # A text starts at a line boundary: read an end-of-line first when there is no prime.
  return vocab.index('\n') if '\n' in vocab else 0


def _squeeze_batch(diag) -> dict[str, Any]:
  """[1, T, ...] leaves -> numpy [T, ...]."""
  return jax.tree.map(lambda x: np.asarray(x)[0], diag)


@functools.partial(jax.jit, static_argnames=('model', 'diagnostics'))
def _read(model, params, tokens, carry, diagnostics: bool):
  return _apply(model, params, tokens, carry, diagnostics)


@functools.partial(jax.jit, static_argnames=('model', 'length', 'greedy', 'diagnostics'))
def _generate(model, params, carry, first, key, temperature, *, length: int, greedy: bool, diagnostics: bool):
  """length + 1 single-character steps from token `first`; the last step only reads the last sample."""

  def step(state, key_t):
    carry, token = state
    logits, carry, diag = _apply(model, params, token[None, None], carry, diagnostics)
    logits = logits[0, -1].astype(jnp.float32)
    if greedy:
      nxt = jnp.argmax(logits).astype(jnp.int32)
    else:
      nxt = jax.random.categorical(key_t, logits / temperature).astype(jnp.int32)
    return (carry, nxt), (nxt, diag)

  _, (tokens, diag) = jax.lax.scan(step, (carry, first), jax.random.split(key, length + 1))
  return tokens[:-1], diag


def diagnose(model, params, ids) -> tuple[np.ndarray, dict[str, Any]]:
  """Reads a given text (ids [T]) in one call: (log-probabilities [T, V], diagnostics per char [T, ...])."""
  ids = jnp.asarray(np.asarray(ids, np.int32)[None])
  logits, _, diag = _read(model, params, ids, model.initialize_carry(1), diagnostics=True)
  return np.asarray(jax.nn.log_softmax(logits[0])), (_squeeze_batch(diag) if diag is not None else {})


def sample(
  model,
  params,
  vocab: list[str],
  length: int,
  temperature: float = 1.0,
  prime: str = '',
  seed: int = 0,
  *,
  diagnostics: bool = True,
) -> tuple[str, dict[str, Any]]:
  """Generates `length` characters after `prime`; returns (prime + generated text, diagnostics).

  temperature: logits are divided by it; <= 0 picks the most likely character. The same seed gives the
  same text. diagnostics: the model's per-layer dict (e.g. {'layer_0': {'weight_change': [N, 4],
  'weight_change_x': [N, 4], 'tanh_c': [N, H]}}) with N = len(text), entry t from the step that read
  text[t]; {} when the model has none. Compiled once per (model, length, greedy) and prime length.
  """
  if length < 0:
    raise ValueError(f'length must be >= 0, got {length}')
  prime_ids = encode(prime, vocab)
  with_start = len(prime_ids) == 0
  read = np.concatenate([[_start_id(vocab)], prime_ids]).astype(np.int32) if with_start else prime_ids
  carry = model.initialize_carry(1)
  prime_diag = None
  if len(read) > 1:  # all but the last primed character in one call
    _, carry, prime_diag = _read(model, params, jnp.asarray(read[None, :-1]), carry, diagnostics=diagnostics)
  tokens, gen_diag = _generate(
    model,
    params,
    carry,
    jnp.int32(read[-1]),
    jax.random.PRNGKey(seed),
    jnp.float32(max(temperature, 1e-6)),
    length=length,
    greedy=temperature <= 0,
    diagnostics=diagnostics,
  )
  text = prime + ''.join(vocab[int(t)] for t in np.asarray(tokens))

  if gen_diag is None:
    return text, {}
  # gen_diag leaves: [length + 1, 1, 1, ...] (scan step, batch, time); prime_diag: [1, len(read)-1, ...].
  diag = jax.tree.map(lambda x: np.asarray(x)[:, 0, 0], gen_diag)
  if prime_diag is not None:
    diag = jax.tree.map(lambda a, b: np.concatenate([a, b]), _squeeze_batch(prime_diag), diag)
  if with_start:  # drop the step that read the start symbol, which is not part of the text
    diag = jax.tree.map(lambda x: x[1:], diag)
  return text, diag


def sample_text(
  model, params, vocab: list[str], length: int, temperature: float = 1.0, prime: str = '', seed: int = 0
) -> str:
  """Only the text; characters of `prime` outside the vocabulary are dropped (with a note)."""
  kept = ''.join(c for c in prime if c in vocab)
  if kept != prime:
    print(
      f'note: dropped prime characters not in the vocabulary: {sorted(set(prime) - set(kept))}', flush=True
    )
  return sample(model, params, vocab, length, temperature, kept, seed, diagnostics=False)[0]


def layer_diagnostics(diag: dict[str, Any], layer: int | None = None) -> dict[str, np.ndarray]:
  """The diagnostics of one layer (default: the last), whatever the nesting ({'layer_<l>': {...}} or flat)."""
  if not diag:
    return {}
  layers = sorted((k for k in diag if str(k).startswith('layer_')), key=lambda k: int(k.split('_')[-1]))
  if not layers:
    return diag
  key = layers[-1] if layer is None else f'layer_{layer}'
  return diag[key]
