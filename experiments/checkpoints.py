"""Orbax checkpoints of the train state, each step verified on restore by a sha256 of its arrays.

Orbax lists a truncated step as the latest one and may restore a damaged file without complaint, so every
save writes, beside the arrays, a small JSON item (`meta`) holding a sha256 over the arrays' bytes; restore
recomputes it and falls back to older steps in turn, saying so in one line. A step directory is only ever
created complete (orbax writes to a temporary name and renames), and a state with a non-finite loss is
never saved (the trainer checks before calling `save`).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import shutil
import sys
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils


class CheckpointError(RuntimeError):
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


def checksum(tree: Any) -> str:
  """sha256 over the dtype, shape and bytes of every leaf, in tree-flatten order."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(host_arrays(tree))[0]:
    leaf = np.ascontiguousarray(leaf)
    digest.update(f'{jax.tree_util.keystr(path)}:{leaf.dtype}:{leaf.shape};'.encode())
    digest.update(leaf.tobytes())
  return digest.hexdigest()


def _say(message: str) -> None:
  if jax.process_index() == 0:
    print(message, file=sys.stderr, flush=True)


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
  """Periodic checkpoints of one train-state pytree under `directory`, keeping the newest `keep`."""

  def __init__(self, directory: str, keep: int, async_save: bool = True, read_only: bool = False):
    self.directory = os.path.abspath(directory)
    self.read_only = read_only
    # Several processes: synchronous saves. Two async managers (latest and best) saving at the same
    # step interleave orbax's cross-process commit barriers, which then time out (seen with 2 processes).
    async_save = async_save and jax.process_count() == 1
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocp.checkpoint_managers.LatestN(keep),
        create=not read_only,
        read_only=read_only,
        enable_async_checkpointing=async_save,
        cleanup_tmp_directories=not read_only)
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=('state', 'meta'))

  def steps(self) -> list[int]:
    self.manager.reload()
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, meta: dict[str, Any] | None = None) -> None:
    """Saves `state` at `step` (in the background when async) with its checksum in `meta`."""
    meta = dict(meta or {}, step=int(step), sha256=checksum(state), saved_at=time.time())
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    meta=ocp.args.JsonSave(meta)), force=True)

  def delete_after(self, step: int) -> None:
    """Deletes steps newer than `step` (left by a run that died; the resumed run re-creates them)."""
    for newer in [s for s in self.steps() if s > step]:
      self.manager.delete(newer)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()

  def restore_step(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
    """Restores one step onto the shardings of `abstract_state`; raises if its checksum is wrong."""
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    state, meta = restored['state'], restored['meta']
    if not isinstance(meta, dict) or 'sha256' not in meta:
      raise CheckpointError(f'step {step} has no checksum')
    if checksum(state) != meta['sha256']:
      raise CheckpointError(f'step {step} fails its sha256 check')
    return state, meta

  def restore_latest(self, abstract_state: Any) -> tuple[Any, dict[str, Any]] | None:
    """The newest step that restores and verifies; None when there are no checkpoints at all.

    Damaged steps are skipped with a one-line notice each (and, unless read-only, moved aside to
    `<directory>/damaged/` so a new save of that step never meets them); when checkpoints exist but none
    is valid this raises instead of letting the caller silently start from scratch.
    """
    steps = self.steps()
    if not steps:
      return None
    problems = []
    for step in reversed(steps):
      with _quiet_unraisable():
        try:
          state, meta = self.restore_step(step, abstract_state)
        except Exception as e:  # Orbax/tensorstore raise many types for truncated files.
          reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
          problems.append(f'{step}: {reason}')
          state = None
      if state is None:
        continue
      for problem in problems:
        bad, reason = problem.split(': ', 1)
        _say(f'checkpoint step {bad} in {self.directory} is damaged ({reason}); falling back to step {step}')
      if problems and not self.read_only:
        self._set_aside([int(p.split(':')[0]) for p in problems])
      return state, meta
    raise CheckpointError(f'checkpoints exist in {self.directory} but none is valid '
                          f'(steps {", ".join(problems)}); refusing to restart from scratch -- move '
                          f'the directory away to start a new run')

  def _set_aside(self, steps: list[int]) -> None:
    self.wait()
    if jax.process_index() == 0:
      damaged = os.path.join(os.path.dirname(self.directory), 'damaged')
      os.makedirs(damaged, exist_ok=True)
      for step in steps:
        source = os.path.join(self.directory, str(step))
        if os.path.isdir(source):
          shutil.move(source, os.path.join(damaged, f'{os.path.basename(self.directory)}-{step}'))
    multihost_utils.sync_global_devices('checkpoints_set_aside')
    self.manager.reload()
