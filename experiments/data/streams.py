"""Truncated-BPTT batches over a character corpus: parallel contiguous streams, stateless by step.

The training split is cut into `global_batch_size` contiguous streams (row b of every batch continues
row b of the previous batch), so the recurrent state carried from one step to the next is the state of
the text just read — truncated back-propagation through time as in the paper's character experiments.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class TrainStreams:
  """`batch(step)` is a pure function of `step`: a resumed run sees exactly the data it would have seen.

  Stream b reads ids[b*n : (b+1)*n] (n = (len(ids)-1) // global_batch_size); step s reads segment
  s mod steps_per_epoch of every stream: inputs ids[t:t+T], targets ids[t+1:t+T+1]. The tail of each
  stream shorter than seq_len is not read. After the last segment the streams start again, so the
  carried state is stale once per epoch; `starts_epoch(step)` says when a trainer may reset it.
  """

  def __init__(
    self,
    ids: np.ndarray,
    global_batch_size: int,
    seq_len: int,
    process_index: int = 0,
    process_count: int = 1,
  ):
    ids = np.asarray(ids)
    if ids.ndim != 1:
      raise ValueError(f'ids must be 1-D, got shape {ids.shape}')
    if global_batch_size < 1 or seq_len < 1:
      raise ValueError(f'global_batch_size and seq_len must be >= 1, got {global_batch_size}, {seq_len}')
    if global_batch_size % process_count or not 0 <= process_index < process_count:
      raise ValueError(
        f'global_batch_size {global_batch_size} must split evenly over '
        f'{process_count} processes (process_index {process_index})'
      )
    stream_len = (len(ids) - 1) // global_batch_size
    self.steps_per_epoch = stream_len // seq_len
    if self.steps_per_epoch < 1:
      raise ValueError(
        f'{len(ids)} ids are too few for {global_batch_size} streams of at least '
        f'{seq_len + 1} symbols; use a smaller batch size or sequence length'
      )
    self.global_batch_size, self.seq_len = global_batch_size, seq_len
    self.local_batch_size = global_batch_size // process_count
    rows = slice(process_index * self.local_batch_size, (process_index + 1) * self.local_batch_size)
    used = global_batch_size * stream_len
    # Views, not copies: [global_batch, stream_len] restricted to this process's rows.
    self._inputs = ids[:used].reshape(global_batch_size, stream_len)[rows]
    self._targets = ids[1 : used + 1].reshape(global_batch_size, stream_len)[rows]

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """{'inputs', 'targets'}: int32 [local_batch_size, seq_len] for global step `step` (>= 0)."""
    t = (int(step) % self.steps_per_epoch) * self.seq_len
    return {
      'inputs': self._inputs[:, t : t + self.seq_len].astype(np.int32),
      'targets': self._targets[:, t : t + self.seq_len].astype(np.int32),
    }

  def starts_epoch(self, step: int) -> bool:
    """True when `step` reads the first segment of the streams (the carried state is unrelated)."""
    return int(step) % self.steps_per_epoch == 0

  def epoch(self, step: int) -> float:
    return int(step) / self.steps_per_epoch


def eval_batches(
  ids: np.ndarray,
  batch_size: int,
  seq_len: int,
  *,
  bos_id: int | None = None,
  process_index: int = 0,
  process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
  """Covers the whole split once, as batch_size contiguous streams; carry the state across yields.

  Every symbol after the first is predicted exactly once: the masks sum to len(ids) - 1. With
  `bos_id` (e.g. the end-of-line id, since a split starts at a line boundary) that symbol is read
  first, so every symbol of the split is predicted and the masks sum to len(ids) — the symbol counts
  papers quote (PTB 393,042 / 442,423). Streams differ in length by at most one symbol; each yield
  is {'inputs', 'targets': int32 [b, seq_len], 'mask': float32 [b, seq_len]} with fixed shapes, the
  ragged end padded with id 0 and mask 0. With process_count > 1 each process gets its rows only.
  """
  ids = np.asarray(ids)
  if bos_id is not None:
    ids = np.concatenate([np.asarray([bos_id], ids.dtype), ids])
  if ids.ndim != 1 or len(ids) < 2:
    raise ValueError(f'need a 1-D split of at least 2 symbols, got shape {ids.shape}')
  if batch_size % process_count or not 0 <= process_index < process_count:
    raise ValueError(f'batch_size {batch_size} must split evenly over {process_count} processes')
  num_predictions = len(ids) - 1
  base, extra = divmod(num_predictions, batch_size)
  lengths = np.full(batch_size, base) + (np.arange(batch_size) < extra)  # [batch_size]
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
  num_yields = -(-int(lengths.max()) // seq_len)
  width = num_yields * seq_len
  local = batch_size // process_count
  rows = range(process_index * local, (process_index + 1) * local)
  inputs = np.zeros((local, width), np.int32)
  targets = np.zeros((local, width), np.int32)
  mask = np.zeros((local, width), np.float32)
  for r, b in enumerate(rows):
    s, n = starts[b], lengths[b]
    inputs[r, :n] = ids[s : s + n]
    targets[r, :n] = ids[s + 1 : s + n + 1]
    mask[r, :n] = 1.0
  for k in range(num_yields):
    cols = slice(k * seq_len, (k + 1) * seq_len)
    yield {'inputs': inputs[:, cols], 'targets': targets[:, cols], 'mask': mask[:, cols]}


def num_eval_batches(num_ids: int, batch_size: int, seq_len: int, *, bos: bool = False) -> int:
  """How many batches `eval_batches` yields for a split of num_ids symbols."""
  predictions = num_ids - 1 + int(bos)
  rows = -(-predictions // batch_size)  # ceil division
  return -(-rows // seq_len)
