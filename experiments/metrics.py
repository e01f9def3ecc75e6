"""Where metrics go: TensorBoard (tensorboardX, no TensorFlow), `<workdir>/metrics.jsonl`, the console.

Only process 0 writes. `metrics.jsonl` holds one JSON object per (step, group of metrics), appended, so a
resumed run continues the same file.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Iterable, Iterator, Mapping

import jax


class MetricWriter:
  """Writes scalar metrics to TensorBoard and metrics.jsonl (process 0 only)."""

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
        self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))
      except ImportError:
        self._tb = None

  def write(self, step: int, metrics: Mapping[str, float], prefix: str = '') -> None:
    if not self.enabled:
      return
    scalars = {f'{prefix}{k}': float(v) for k, v in metrics.items()}
    with open(self.path, 'a') as f:
      f.write(json.dumps({'step': int(step), 'time': time.time(), **scalars}) + '\n')
    if self._tb is not None:
      for name, value in scalars.items():
        self._tb.add_scalar(name, value, int(step))

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def console(message: str) -> None:
  """One line to stdout from process 0."""
  if jax.process_index() == 0:
    print(message, flush=True)


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """Every record of `<workdir>/metrics.jsonl` (for notebooks and tests)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def format_duration(seconds: float) -> str:
  seconds = max(0, int(seconds))
  hours, rest = divmod(seconds, 3600)
  return f'{hours}:{rest // 60:02d}:{rest % 60:02d}' if hours else f'{rest // 60}:{rest % 60:02d}'


class RateMeter:
  """Steps/s, units/s and ETA over the interval since the last call to `line`."""

  def __init__(self, start_step: int, total_steps: int, units_per_step: int, unit: str):
    self.total_steps, self.units_per_step, self.unit = total_steps, units_per_step, unit
    self._last_step, self._last_time = start_step, time.time()

  def reset(self, step: int) -> None:
    self._last_step, self._last_time = step, time.time()

  def rates(self, step: int) -> dict[str, float]:
    now = time.time()
    steps_per_s = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    return {'steps_per_s': steps_per_s, f'{self.unit}_per_s': steps_per_s * self.units_per_step,
            'eta_s': (self.total_steps - step) / max(steps_per_s, 1e-9)}


def progress(items: Iterable[Any], total: int, description: str) -> Iterator[Any]:
  """A progress bar on stderr for long loops (evaluation), when stderr is a terminal and tqdm exists."""
  if jax.process_index() != 0 or not sys.stderr.isatty() or total < 20:
    yield from items
    return
  try:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  except ImportError:
    yield from items
    return
  yield from tqdm(items, total=total, desc=description, leave=False, file=sys.stderr)
