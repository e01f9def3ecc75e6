"""Shared by the trainer tests: the tiny reference run, launch.py subprocesses, file helpers."""

from __future__ import annotations

import glob
import hashlib
import importlib
import json
import os
import socket
import subprocess
import sys
import tempfile

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# The tiny PTB-family config (synthetic corpus) of the trainer tests: 12 steps, checkpoints at 4/8/12.
CHAR_CONFIG = 'configs/ptb_char.py:tiny'
CHAR_OVERRIDES = {
  'train.num_steps': 12,
  'log.every_steps': 2,
  'eval.every_steps': 6,
  'eval.max_batches': 2,
  'checkpoint.every_steps': 4,
  'sample.length': 0,
}


def get_config(config_arg: str = CHAR_CONFIG, overrides: dict | None = None, **more):
  path, _, variant = config_arg.partition(':')
  module = importlib.import_module('configs.' + os.path.splitext(os.path.basename(path))[0])
  config = module.get_config(variant or None)
  for key, value in {**(overrides or {}), **more}.items():
    node = config
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def launch_args(config_arg: str = CHAR_CONFIG, overrides: dict | None = None, **more) -> list[str]:
  args = [f'--config={config_arg}']
  for key, value in {**(overrides or {}), **more}.items():
    args.append(f'--config.{key}={value}')
  return args


# One persistent XLA compilation cache for every launch.py child of this test session: the first child
# compiles, the others load the executables (the same code, so results are unchanged) and start faster.
COMPILE_CACHE = tempfile.mkdtemp(prefix='hyper_test_jax_cache_')
CACHE_ENV = {
  'JAX_COMPILATION_CACHE_DIR': COMPILE_CACHE,
  'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
  'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0',
}


def run_launch(
  args: list[str], env: dict | None = None, timeout: float = 300, background=False, faults: dict | None = None
):
  """Runs launch.py from the repo root; returns CompletedProcess (or Popen with background=True).

  faults: injected by tests/fault_child.py (e.g. {'kill_after_save': 6}, {'nan_at_step': 5})."""
  full_env = {**os.environ, 'JAX_PLATFORMS': 'cpu', **CACHE_ENV, **(env or {})}
  script = 'launch.py'
  if faults:
    full_env['HYPER_TEST_FAULTS'] = json.dumps(faults)
    script = os.path.join('tests', 'fault_child.py')
  cmd = [sys.executable, os.path.join(ROOT, script), *args]
  if background:
    return subprocess.Popen(
      cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
  return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
  """stderr lines other than absl/XLA log noise."""
  noise = ('WARNING:', 'I0', 'W0', 'I1', 'W1', 'E0', 'E1')
  return [line for line in stderr.splitlines() if line.strip() and not line.startswith(noise)]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def tree_snapshot(directory: str) -> dict[str, str]:
  """path -> sha256 of every file under `directory` (to show a workdir was left unchanged)."""
  out = {}
  for path in sorted(glob.glob(os.path.join(directory, '**'), recursive=True)):
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return out


def truncate_largest_file(step_dir: str) -> str:
  files = [p for p in glob.glob(os.path.join(step_dir, 'state', '**'), recursive=True) if os.path.isfile(p)]
  path = max(files, key=os.path.getsize)
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)
  return path


class TraceCounter:
  """Counts traces of trainer.train_step while active (a retrace is a recompilation: a bug)."""

  def __enter__(self):
    from experiments import trainer  # pylint: disable=g-import-not-at-top

    self.count = 0
    self._trainer, self._original = trainer, trainer.train_step

    def counted(*args, **kwargs):
      self.count += 1
      return self._original(*args, **kwargs)

    trainer.train_step = counted
    return self

  def __exit__(self, *exc):
    self._trainer.train_step = self._original


def train_losses(workdir) -> dict[int, float]:
  """step -> mean training loss of each log window, from metrics.jsonl."""
  from experiments import metrics  # pylint: disable=g-import-not-at-top

  return {r['step']: r['train/loss'] for r in metrics.read_metrics(workdir) if 'train/loss' in r}


def checkpoint_steps(workdir) -> list[int]:
  """Committed checkpoint steps of a workdir (orbax's view, tmp folders excluded)."""
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def restored_params(config, workdir: str, checkpoint: str = 'latest'):
  from experiments import trainer  # pylint: disable=g-import-not-at-top

  _, state = trainer.restore_params(config, workdir, checkpoint)
  return jax.device_get(state['params']), int(state['step'])


def assert_trees_equal(a, b, exact: bool = True, rtol: float = 1e-5, atol: float = 1e-6):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(la, lb):
    x, y = np.asarray(x), np.asarray(y)
    if exact:
      np.testing.assert_array_equal(x, y)
    else:
      np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def tensorboard_tags(workdir) -> dict[str, set[str]]:
  """{'scalar'|'image'|'text'|'hparams': tags} of every event file under <workdir>/tensorboard.

  Reads the TFRecord framing (length, crc, data, crc) and tensorboardX's Event protos: no TensorFlow."""
  import struct  # pylint: disable=g-import-not-at-top

  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top

  tags: dict[str, set[str]] = {'scalar': set(), 'image': set(), 'text': set(), 'hparams': set()}
  for path in glob.glob(os.path.join(str(workdir), 'tensorboard', 'events.out.tfevents.*')):
    data = open(path, 'rb').read()
    offset = 0
    while offset + 12 <= len(data):
      (length,) = struct.unpack('<Q', data[offset : offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        if value.HasField('image'):
          tags['image'].add(value.tag)
        elif value.metadata.plugin_data.plugin_name == 'text':
          tags['text'].add(value.tag)
        elif value.metadata.plugin_data.plugin_name == 'hparams':
          tags['hparams'].add(value.tag)
        else:
          tags['scalar'].add(value.tag)
  return tags
