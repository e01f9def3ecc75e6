"""Where metrics go: TensorBoard (tensorboardX, no TensorFlow), `<workdir>/metrics.jsonl`, the console.

Only process 0 writes. `metrics.jsonl` holds one JSON object per (step, group of metrics); a resumed run
continues the same file. TensorBoard gets the scalars (loss, metrics, learning rate, rates), the
hyperparameters (the flattened config), the sampled text and the run's figures as images. All workdir
files go through etils.epath; for a workdir that is not on a local disk (gs://...) the event file is
written to a local temporary folder and copied into `<workdir>/tensorboard/` at every flush.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
from etils import epath


def _is_local(path: epath.Path) -> bool:
  return '://' not in os.fspath(path)


def flat_hparams(config: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  """{'train.learning_rate': 0.001, ...}: TensorBoard takes int/float/str/bool values only."""
  out = {}
  for key, value in config.items():
    name = f'{prefix}{key}'
    if isinstance(value, Mapping):
      out.update(flat_hparams(value, name + '.'))
    elif isinstance(value, (bool, int, float, str)):
      out[name] = value
    else:
      out[name] = str(value)
  return out


class MetricWriter:
  """Writes scalar metrics to TensorBoard and metrics.jsonl (process 0 only)."""

  def __init__(self, workdir: str | epath.Path):
    self.enabled = jax.process_index() == 0
    self.workdir = epath.Path(workdir)
    self.path = self.workdir / 'metrics.jsonl'
    self._local = _is_local(self.workdir)
    self._pending: list[str] = []  # Records not yet written (the file is written at flush).
    self._tb = None
    self._tb_dir = None
    if not self.enabled:
      return
    self.workdir.mkdir(parents=True, exist_ok=True)
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    except ImportError:
      return
    tb_dir = self.workdir / 'tensorboard'
    if not self._local:  # tensorboardX writes local files; copied to the workdir at flush.
      self._tb_dir = tb_dir
      tb_dir = tempfile.mkdtemp(prefix='hyper_tb_')
    self._tb = SummaryWriter(os.fspath(tb_dir))

  def write(self, step: int, metrics: Mapping[str, float], prefix: str = '') -> None:
    if not self.enabled:
      return
    scalars = {f'{prefix}{k}': float(v) for k, v in metrics.items()}
    self._pending.append(json.dumps({'step': int(step), 'time': time.time(), **scalars}) + '\n')
    if self._tb is not None:
      for name, value in scalars.items():
        self._tb.add_scalar(name, value, int(step))

  def write_hparams(self, config: Mapping[str, Any], metric_names: Iterable[str]) -> None:
    """The flattened config in TensorBoard's HPARAMS tab, linked to the given scalar tags."""
    if self._tb is None:
      return
    from tensorboardX.summary import hparams  # pylint: disable=g-import-not-at-top

    # The low-level summaries, so the hparams land in this run rather than in a new sub-run.
    for summary in hparams(flat_hparams(config), {name: 0.0 for name in metric_names}):
      self._tb.file_writer.add_summary(summary)
    self._tb.add_text('config', '```\n' + json.dumps(dict(config), indent=2, default=str) + '\n```', 0)

  def write_text(self, step: int, name: str, text: str) -> None:
    if self._tb is not None:
      # Markdown: indent by four spaces so newlines and spacing of generated text are kept.
      self._tb.add_text(name, '\n'.join('    ' + line for line in text.split('\n')), int(step))

  def write_image(self, step: int, name: str, png: epath.Path) -> None:
    """A PNG file of the workdir as a TensorBoard image."""
    if self._tb is None:
      return
    import matplotlib.image  # pylint: disable=g-import-not-at-top

    image = matplotlib.image.imread(io.BytesIO(epath.Path(png).read_bytes()), format='png')
    if image.dtype != np.uint8:
      image = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    if image.ndim == 2:
      image = image[..., None]
    self._tb.add_image(name, image[..., :3], int(step), dataformats='HWC')

  def flush(self) -> None:
    if not self.enabled:
      return
    if self._pending:
      if self._local:
        with self.path.open('a') as f:
          f.writelines(self._pending)
      else:  # Object stores cannot append: rewrite the file.
        old = self.path.read_text() if self.path.exists() else ''
        self.path.write_text(old + ''.join(self._pending))
      self._pending = []
    if self._tb is not None:
      self._tb.flush()
      if self._tb_dir is not None:
        self._tb_dir.mkdir(parents=True, exist_ok=True)
        local = epath.Path(self._tb.logdir)
        for f in local.iterdir():
          (self._tb_dir / f.name).write_bytes(f.read_bytes())

  def close(self) -> None:
    self.flush()
    if self._tb is not None:
      self._tb.close()
      if self._tb_dir is not None:
        for f in epath.Path(self._tb.logdir).iterdir():
          (self._tb_dir / f.name).write_bytes(f.read_bytes())
      self._tb = None


def console(message: str) -> None:
  """One line to stdout from process 0."""
  if jax.process_index() == 0:
    print(message, flush=True)


def read_metrics(workdir: str | epath.Path) -> list[dict[str, Any]]:
  """Every record of `<workdir>/metrics.jsonl` (for notebooks and tests)."""
  path = epath.Path(workdir) / 'metrics.jsonl'
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def format_duration(seconds: float) -> str:
  if math.isnan(seconds):
    return '?'
  seconds = max(0, int(seconds))
  hours, rest = divmod(seconds, 3600)
  return f'{hours}:{rest // 60:02d}:{rest % 60:02d}' if hours else f'{rest // 60}:{rest % 60:02d}'


class RateMeter:
  """Steps/s, units/s and ETA over the interval since the last call to `rates` (or `reset`)."""

  def __init__(self, start_step: int, total_steps: int, units_per_step: int, unit: str):
    self.total_steps, self.units_per_step, self.unit = total_steps, units_per_step, unit
    self._last_step, self._last_time = start_step, time.time()

  def reset(self, step: int) -> None:
    self._last_step, self._last_time = step, time.time()

  def rates(self, step: int) -> dict[str, float]:
    now = time.time()
    if step == self._last_step:  # No step since the reset (the first, compiling step was logged alone).
      return {'steps_per_s': math.nan, f'{self.unit}_per_s': math.nan, 'eta_s': math.nan}
    steps_per_s = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    return {
      'steps_per_s': steps_per_s,
      f'{self.unit}_per_s': steps_per_s * self.units_per_step,
      'eta_s': (self.total_steps - step) / max(steps_per_s, 1e-9),
    }


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
