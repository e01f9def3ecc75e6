"""Orbax checkpoints of the train state: one manager for latest and best, each step verified on restore.

One `ocp.CheckpointManager` holds every step; preservation policies keep the newest `keep` steps and the
best evaluated one (`LatestN` or `BestN`). A step is committed once (orbax writes to a temporary name and
renames), with its validation metric inside it, so "latest" and "best" are two views of the same set of
committed steps and cannot disagree after a kill at any moment.

Orbax lists a truncated step as a valid one and may restore a damaged file without complaint, so each
save also writes a small JSON item (`meta`) holding, per process, a sha256 over the bytes of the array
shards that process owns (replica 0 of each): no array is gathered across hosts. Restore recomputes
each process's own digest and all processes agree on the verdict; a damaged step falls back to the next
one (latest: the previous step; best: the next best evaluation), said in one line, and is moved aside
to `<workdir>/damaged/`.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import sys
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

_policies = ocp.checkpoint_managers


class _NoMissingMetricsWarning(logging.Filter):
  # Steps saved between evaluations carry no metrics by design; orbax warns about each one.
  def filter(self, record: logging.LogRecord) -> bool:
    return 'did not provide metrics' not in record.getMessage()


logging.getLogger('absl').addFilter(_NoMissingMetricsWarning())


class _NoOrphanedRestoreTasks(logging.Filter):
  # A failed restore of a damaged checkpoint can leave orbax's deserialisation tasks holding the error;
  # when one is collected (at any later time, on orbax's event-loop thread) asyncio logs a page of
  # traceback. The restore already raised and is reported in one line (CheckpointError), so drop these.
  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    orphan = 'exception was never retrieved' in message
    return not (orphan and any(s in message for s in ('orbax', 'tensorstore', 'deserialize')))


logging.getLogger('asyncio').addFilter(_NoOrphanedRestoreTasks())


class RunError(RuntimeError):
  """A run cannot go on; the message says what happened and what to do, in one line."""


class CheckpointError(RunError):
  """Checkpoints exist but none can be restored; the message says which and why, in one line."""


def host_arrays(tree: Any) -> Any:
  """The full value of every leaf as numpy, on every process (replicated leaves need no transfer)."""

  def fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if x.sharding.is_fully_replicated:
        return np.asarray(x.addressable_shards[0].data)
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)

  return jax.tree.map(fetch, tree)


def _owned_shards(leaf) -> list[tuple[str, np.ndarray]]:
  """(index, data) of the shards of `leaf` this process writes: replica 0 of each addressable shard."""
  if isinstance(leaf, jax.Array):
    return sorted((str(s.index), np.asarray(s.data)) for s in leaf.addressable_shards if s.replica_id == 0)
  return [('full', np.asarray(leaf))] if jax.process_index() == 0 else []


def local_checksum(tree: Any) -> str:
  """sha256 over the dtype, shape, shard index and bytes of the shards this process owns."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    digest.update(f'{jax.tree_util.keystr(path)};'.encode())
    for index, data in _owned_shards(leaf):
      data = np.ascontiguousarray(data)
      digest.update(f'{index}:{data.dtype}:{data.shape};'.encode())
      digest.update(data.tobytes())
  return digest.hexdigest()


def layout(tree: Any) -> str:
  """Identifies how `tree` is split over processes and devices: digests compare only within one layout."""
  digest = hashlib.sha256(f'{jax.process_count()}/{jax.device_count()}'.encode())
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    sharding = getattr(leaf, 'sharding', None)
    spec = getattr(sharding, 'spec', None)
    digest.update(f'{jax.tree_util.keystr(path)}:{getattr(leaf, "shape", ())}:{spec};'.encode())
  return digest.hexdigest()[:16]


def checksums(tree: Any) -> list[str]:
  """Every process's `local_checksum`, in process order (an all-gather of 32 bytes per process)."""
  mine = local_checksum(tree)
  if jax.process_count() == 1:
    return [mine]
  gathered = multihost_utils.process_allgather(np.frombuffer(bytes.fromhex(mine), np.uint8))
  return [bytes(np.asarray(row, np.uint8)).hex() for row in np.asarray(gathered).reshape(-1, 32)]


def _all_true(flag: bool) -> bool:
  if jax.process_count() == 1:
    return flag
  return bool(np.min(multihost_utils.process_allgather(np.int32(flag))))


def _say(message: str) -> None:
  if jax.process_index() == 0:
    print(message, file=sys.stderr, flush=True)


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0][:200] if text else type(error).__name__


@contextlib.contextmanager
def _quiet_unraisable():
  """A failed orbax restore leaves tensorstore coroutines holding the error; when they are collected
  Python prints 'Exception ignored in ...' pages to stderr. Collect them here, silently, so a damaged
  checkpoint is reported by our one line only."""
  try:
    yield
  finally:
    hook, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None
    try:
      gc.collect()
    finally:
      sys.unraisablehook = hook


class CheckpointStore:
  """The checkpoints of one run under `directory`: the newest `keep` steps plus the best evaluated one.

  best_metric: name of the validation metric saved with evaluated steps (None: no best tracking);
  higher_is_better: its direction.
  """

  def __init__(
    self,
    directory: str | epath.Path,
    keep: int,
    *,
    best_metric: str | None = None,
    higher_is_better: bool = False,
    async_save: bool = True,
    read_only: bool = False,
  ):
    self.directory = epath.Path(directory)
    self.read_only = read_only
    self.best_metric = best_metric
    self.higher_is_better = higher_is_better
    policies = [_policies.LatestN(max(1, keep))]
    best_fn = None
    if best_metric:
      best_fn = lambda metrics: float(metrics[best_metric])
      policies.append(
        _policies.BestN(
          get_metric_fn=best_fn, reverse=not higher_is_better, n=1, keep_checkpoints_without_metrics=False
        )
      )
    options = ocp.CheckpointManagerOptions(
      preservation_policy=_policies.AnyPreservationPolicy(policies),
      best_fn=best_fn,  # Makes orbax store the metrics passed to save() inside the step.
      best_mode='max' if higher_is_better else 'min',
      create=not read_only,
      read_only=read_only,
      enable_async_checkpointing=async_save,
      cleanup_tmp_directories=not read_only,
    )
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=('state', 'meta'))

  def steps(self) -> list[int]:
    self.manager.reload()
    return sorted(self.manager.all_steps())

  def metrics(self, step: int) -> dict[str, float] | None:
    return self.manager.metrics(step) if self.best_metric else None

  def save(
    self, step: int, state: Any, meta: dict[str, Any] | None = None, metrics: dict[str, float] | None = None
  ) -> None:
    """Saves `state` at `step` (in the background when async) with its checksums and `metrics`.

    metrics: the validation metrics of this very state (None for a step that was not evaluated); they
    rank the step for "best"."""
    meta = dict(
      meta or {},
      step=int(step),
      sha256=checksums(state),
      layout=layout(state),
      saved_at=time.time(),
      metrics=metrics,
    )
    self.manager.save(
      step,
      args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
      metrics=metrics if self.best_metric else None,
      force=True,
    )

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()

  def restore_step(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
    """Restores one step onto the shardings of `abstract_state`; raises if a checksum is wrong.

    Every process checks the shards it owns; all agree on the verdict."""
    error = None
    try:
      with _quiet_unraisable():
        restored = self.manager.restore(
          step,
          args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
          ),
        )
      state, meta = restored['state'], restored['meta']
      if not isinstance(meta, dict) or 'sha256' not in meta:
        raise CheckpointError(f'step {step} has no checksum')
      digests = meta['sha256'] if isinstance(meta['sha256'], list) else [meta['sha256']]
      if meta.get('layout') not in (None, layout(state)) or len(digests) != jax.process_count():
        _say(f'note: step {step} was saved on another process/device layout; its checksums are not checked')
      elif digests[jax.process_index()] != local_checksum(state):
        raise CheckpointError(f'step {step} fails its sha256 check')
    except Exception as e:  # Orbax/tensorstore raise many types for truncated files.
      error = e
    if not _all_true(error is None):
      raise CheckpointError(_first_line(error) if error else f'step {step} is damaged on another process')
    return state, meta

  def _restore_first(self, candidates: list[int], abstract_state: Any):
    """The first of `candidates` that restores and verifies, and the [(step, reason)] of those before."""
    problems = []
    for step in candidates:
      try:
        state, meta = self.restore_step(step, abstract_state)
      except CheckpointError as e:
        problems.append((step, str(e)))
        continue
      return state, meta, problems
    return None, None, problems

  def restore_latest(self, abstract_state: Any) -> tuple[Any, dict[str, Any]] | None:
    """The newest step that restores and verifies; None when there are no checkpoints at all.

    Damaged steps are skipped with a one-line notice each (and, unless read-only, moved aside to
    `<workdir>/damaged/` so a new save of that step never meets them); when checkpoints exist but none
    is valid this raises instead of letting the caller silently start from scratch.
    """
    steps = self.steps()
    if not steps:
      return None
    state, meta, problems = self._restore_first(list(reversed(steps)), abstract_state)
    if state is None:
      reasons = '; '.join(f'step {s}: {r}' for s, r in problems)
      raise CheckpointError(
        f'checkpoints exist in {self.directory} but none is valid ({reasons}); '
        f'refusing to restart from scratch -- move {self.directory} aside to start a '
        f'new run'
      )
    for step, reason in problems:
      _say(
        f'checkpoint step {step} in {self.directory} is damaged ({reason}); falling back to step '
        f'{meta["step"]}'
      )
    self._set_aside([s for s, _ in problems])
    return state, meta

  def ranked_steps(self) -> list[tuple[int, float]]:
    """(step, value of best_metric) of every evaluated step, best first."""
    ranked = []
    for step in self.steps():
      metrics = self.metrics(step)
      if metrics and self.best_metric in metrics:
        ranked.append((step, float(metrics[self.best_metric])))
    return sorted(ranked, key=lambda sv: (-sv[1] if self.higher_is_better else sv[1], -sv[0]))

  def restore_best(self, abstract_state: Any) -> tuple[Any, dict[str, Any]] | None:
    """The best evaluated step that restores and verifies; None when no step was evaluated.

    A damaged best falls back to the best intact evaluation, said in one line."""
    ranked = self.ranked_steps()
    if not ranked:
      return None
    state, meta, problems = self._restore_first([s for s, _ in ranked], abstract_state)
    if state is None:
      raise CheckpointError(
        f'every evaluated checkpoint in {self.directory} is damaged (steps '
        f'{", ".join(str(s) for s, _ in problems)}: {problems[0][1]}); '
        f'use --checkpoint=latest'
      )
    if problems:
      step, reason = problems[0]
      value = dict(ranked)[meta['step']]
      _say(
        f'best checkpoint step {step} in {self.directory} is damaged ({reason}); using step '
        f'{meta["step"]}, the best intact evaluation (valid {self.best_metric} {value:.4f})'
      )
    self._set_aside([s for s, _ in problems])
    return state, meta

  def _set_aside(self, steps: list[int]) -> None:
    if not steps or self.read_only:
      return
    self.wait()
    if jax.process_index() == 0:
      damaged = self.directory.parent / 'damaged'
      damaged.mkdir(parents=True, exist_ok=True)
      for step in steps:
        source = self.directory / str(step)
        if source.exists():
          source.rename(damaged / f'{self.directory.name}-{step}')
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('checkpoints_set_aside')
    self.manager.reload()
