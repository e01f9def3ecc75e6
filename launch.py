"""Runs one experiment: `python launch.py --config=configs/<family>.py:<variant> --workdir=DIR`.

With no flags it runs the default experiment (configs/default.py, workdir runs/default). Modes: train
(default; resumes from DIR), eval (a checkpoint on config.eval.splits), sample (char models), summary
(parameter table, no training). Config errors, bad data, a NaN loss and unusable checkpoints end the run
with one line on stderr and a non-zero exit. Everything else lives in experiments/.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys

from absl import flags
from absl import logging
from ml_collections import config_dict, config_flags

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(ROOT, 'configs', 'default.py')

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (default runs/<family>[_<variant>]).')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'sample', 'summary'], 'What to do.')
_CHECKPOINT = flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'], 'Checkpoint for eval/sample.')
_MULTIHOST = flags.DEFINE_bool('multihost', False, 'Call jax.distributed.initialize() (several hosts).')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (multihost).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes (multihost).')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process (multihost).')


class UsageError(Exception):
  """A bad flag or config key; the message is one line."""


def _config_argument(argv: list[str]) -> str:
  value = DEFAULT_CONFIG
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      value = arg.split('=', 1)[1]
    elif arg == '--config' and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def _leaf_paths(config, prefix: str = '') -> list[str]:
  paths = []
  for key, value in config.items():
    path = f'{prefix}{key}'
    paths.append(path)
    if isinstance(value, config_dict.ConfigDict):
      paths += _leaf_paths(value, path + '.')
  return paths


def check_config_arguments(argv: list[str]) -> None:
  """Loads the config and checks every --config.<key> override before absl parses the flags.

  ml-collections reports these problems as tracebacks; here each is one line naming the bad key and the
  nearest valid keys, the list of variants, or the missing file.
  """
  path, _, variant = _config_argument(argv).partition(':')
  if not os.path.isfile(path):
    raise UsageError(f'config file {path!r} not found; families: '
                     f'{", ".join(sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".py") and f != "common.py"))}')
  if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
  spec = importlib.util.spec_from_file_location('_launch_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  try:
    config = module.get_config(variant or None)
  except ValueError as e:
    raise UsageError(str(e)) from None
  valid = _leaf_paths(config)
  for arg in argv:
    if not arg.startswith('--config.'):
      continue
    key = arg[len('--config.'):].split('=', 1)[0]
    if key not in valid:
      near = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
      if not near:  # Suggest siblings of the deepest valid parent.
        parent = key.rsplit('.', 1)[0] if '.' in key else ''
        near = [p for p in valid if parent and p.startswith(parent + '.') and '.' not in p[len(parent) + 1:]][:5]
      raise UsageError(f'unknown config key {key!r}; nearest valid keys: {", ".join(near) or "(none)"}')


def parse_flags(argv: list[str]):
  """Checks the config arguments, defines --config (which loads the file) and parses every flag."""
  try:
    check_config_arguments(argv)
    config_flag = config_flags.DEFINE_config_file(
        'config', DEFAULT_CONFIG, 'Config file and variant, path:variant.', sys_argv=argv)
    flags.FLAGS(argv)
    return config_flag
  except UsageError as e:
    _fail(str(e), code=2)
  except (flags.Error, KeyError, AttributeError, ValueError, TypeError) as e:
    _fail(' '.join(str(e).split()), code=2)


def _fail(message: str, code: int = 1) -> None:
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(code)


def _default_workdir(config_arg: str) -> str:
  path, _, variant = config_arg.partition(':')
  family = os.path.splitext(os.path.basename(path))[0]
  name = family if not variant or variant == family else f'{family}_{variant}'
  return os.path.join('runs', name)


def _log_unraisable(unraisable) -> None:
  # Orbax/tensorstore coroutines left by a failed checkpoint restore are collected at arbitrary moments
  # and would print pages of 'Exception ignored in ...'; the damaged checkpoint is already reported in
  # one line, so these go to the absl log (INFO, not shown on the console) instead.
  logging.info('unraisable exception in %r: %s', unraisable.object, unraisable.exc_value)


def main(argv: list[str]) -> None:
  sys.unraisablehook = _log_unraisable
  config_flag = parse_flags(argv)
  import jax  # pylint: disable=g-import-not-at-top  (after flags: bad flags fail fast)

  if _MULTIHOST.value:
    # Cross-process collectives for CPU devices (local multi-process runs and tests); TPU/GPU ignore it.
    try:
      jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    except (AttributeError, ValueError):  # Option renamed or gone in another jax version.
      pass
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  from experiments import trainer  # pylint: disable=g-import-not-at-top
  from experiments.checkpoints import CheckpointError  # pylint: disable=g-import-not-at-top
  from experiments.data.errors import DataError  # pylint: disable=g-import-not-at-top

  config = config_flag.value
  workdir = _WORKDIR.value or _default_workdir(_config_argument(argv))
  if jax.process_index() == 0 and _MODE.value != 'summary':
    print(f'process {jax.process_index()}/{jax.process_count()}, {jax.local_device_count()} local of '
          f'{jax.device_count()} devices: {jax.devices()[0].platform} {jax.devices()[0].device_kind}',
          flush=True)
  try:
    if _MODE.value == 'train':
      trainer.train_and_evaluate(config, workdir)
    elif _MODE.value == 'eval':
      trainer.evaluate(config, workdir, _CHECKPOINT.value)
    elif _MODE.value == 'sample':
      trainer.sample(config, workdir, _CHECKPOINT.value)
    else:
      trainer.summary(config)
  except (DataError, CheckpointError, trainer.TrainingDiverged) as e:
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    # Skip interpreter teardown: orbax/tensorstore threads left by a failed restore print pages of
    # 'Exception ignored' there. Everything worth keeping was written before the error was raised.
    os._exit(1)


if __name__ == '__main__':
  main(sys.argv)
