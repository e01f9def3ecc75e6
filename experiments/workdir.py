"""The run directory: one `etils.epath` path (local, gs://, ...), a lock for one writer, and stop signals.

Every file the trainer reads or writes in a workdir goes through `epath` (what Orbax and TFDS use), so a
workdir in a bucket (`--workdir=gs://bucket/run`) works like a local one. A lock file (`<workdir>/lock`:
pid, host, time) refuses a second writer; a lock left by a dead process on this host is taken over.
SIGTERM (what a preempted Cloud TPU VM or a scheduler sends) and SIGINT ask the train loop to save at
the next step boundary and stop; with several processes all of them agree on the step.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid

import jax
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from experiments.checkpoints import CheckpointError, RunError  # noqa: F401  (re-exported)


class WorkdirError(CheckpointError):
  """The workdir cannot be written (a file, read-only, no permission)."""


class WorkdirLocked(CheckpointError):
  """Another live process is training into this workdir."""


class DiskFull(CheckpointError):
  """The workdir's file system is full (ENOSPC) while saving or writing."""


def as_path(workdir: str | os.PathLike) -> epath.Path:
  """The workdir as an epath.Path; local paths are made absolute (the run may chdir), URIs kept as given."""
  text = os.fspath(workdir)
  if is_local(text):
    return epath.Path(os.path.abspath(text))
  return epath.Path(text)


def is_local(workdir: str | os.PathLike) -> bool:
  return '://' not in os.fspath(workdir)


def is_disk_full(error: BaseException) -> bool:
  """Whether `error` or anything in its cause chain is ENOSPC (orbax and tensorstore wrap OS errors)."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
      return True
    if 'No space left on device' in str(error):  # TensorStore's messages carry no errno.
      return True
    error = error.__cause__ or error.__context__
  return False


def _say(message: str) -> None:
  if jax.process_index() == 0:
    print(message, file=sys.stderr, flush=True)


def _agree(flag: bool) -> bool:
  """True on every process when `flag` is true on process 0 (a broadcast; free with one process)."""
  if jax.process_count() == 1:
    return flag
  return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Alive, another user's.
    return True
  return True


def workdir_error(workdir: epath.Path, error: OSError) -> CheckpointError:
  """One line for a workdir that cannot be written (a file, read-only, no permission)."""
  if is_disk_full(error):
    return DiskFull(f'no space left on the device of {workdir}; free space, then run the same command')
  reason = error.strerror or str(error)
  return WorkdirError(
    f'cannot write to the workdir {workdir} ({reason}: {error.filename or workdir}); choose another --workdir'
  )


class Lock:
  """`<workdir>/lock` held by process 0 for the length of a training run."""

  def __init__(self, workdir: epath.Path):
    self.workdir = workdir
    self.path = workdir / 'lock'
    self.token = uuid.uuid4().hex
    self.held = False

  def _describe(self, info: dict) -> str:
    since = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info.get('time', 0)))
    return f'pid {info.get("pid")} on host {info.get("host")} (since {since})'

  def _create(self, text: str) -> bool:
    """Creates the lock file if absent; False when it exists."""
    if is_local(self.path):
      # O_EXCL: atomic on a local file system (epath has no exclusive-create mode).
      try:
        fd = os.open(os.fspath(self.path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        return False
      with os.fdopen(fd, 'w') as f:
        f.write(text)
      return True
    # Object stores have no exclusive create: write, then read back our own token.
    if self.path.exists():
      return False
    self.path.write_text(text)
    return json.loads(self.path.read_text()).get('token') == self.token

  def acquire(self) -> None:
    """Takes the lock or raises WorkdirLocked naming the holder (one line); all processes agree."""
    problem = ''
    if jax.process_index() == 0:
      info = {'pid': os.getpid(), 'host': socket.gethostname(), 'time': time.time(), 'token': self.token}
      text = json.dumps(info)
      try:
        self.workdir.mkdir(parents=True, exist_ok=True)
        created = self._create(text)
      except OSError as e:
        raise workdir_error(self.workdir, e) from None
      if not created:
        try:
          holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
          holder = {}
        stale = holder.get('host') == info['host'] and not _pid_alive(int(holder.get('pid', -1)))
        if stale:
          _say(f'note: taking over the lock of {self._describe(holder)}, a process that no longer runs')
          self.path.write_text(text)
        else:
          problem = (
            f'{self.workdir} is being trained by {self._describe(holder)}; wait for it or stop it '
            f'(if that process is gone, delete {self.path})'
          )
      self.held = not problem
    if not _agree(not problem):
      raise WorkdirLocked(problem or f'{self.workdir} is locked by another run (see process 0)')

  def release(self) -> None:
    if not self.held:
      return
    self.held = False
    try:
      if json.loads(self.path.read_text()).get('token') == self.token:
        self.path.unlink()
    except (OSError, ValueError):
      pass


class StopSignals:
  """SIGTERM/SIGINT handlers that only record the signal; the train loop stops at a step boundary.

  A second SIGINT interrupts at once (KeyboardInterrupt), for a user who does not want to wait.
  """

  NAMES = {signal.SIGTERM: 'SIGTERM', signal.SIGINT: 'SIGINT'}

  def __init__(self, sync_every: int = 10):
    self.received: int | None = None
    self.sync_every = max(1, sync_every)
    self._previous = {}

  def __enter__(self) -> StopSignals:
    if threading.current_thread() is threading.main_thread():
      for sig in self.NAMES:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)
    self._previous = {}

  def _handle(self, signum, frame) -> None:
    del frame
    if self.received is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.received = signum

  def should_stop(self, step: int) -> bool:
    """Whether to stop after `step`. Several processes compare flags every `sync_every` steps (a tiny
    all-gather), so they all stop at the same step even when the signal reached them at different steps."""
    if jax.process_count() == 1:
      return self.received is not None
    if step % self.sync_every:
      return False
    flags = multihost_utils.process_allgather(np.int32(self.received or 0))
    signums = [int(s) for s in np.ravel(flags) if s]
    if signums and self.received is None:
      self.received = signums[0]
    return bool(signums)

  @property
  def name(self) -> str:
    return self.NAMES.get(self.received, str(self.received))

  @property
  def exit_code(self) -> int:
    return 128 + int(self.received or 0)  # What a shell reports for a process ended by that signal.
