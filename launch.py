"""Runs one experiment: `python launch.py --config=configs/<family>.py:<variant> --workdir=DIR`.

Modes: train (default; resumes from DIR), eval (a checkpoint on config.eval.splits), sample (tasks that
generate), summary (parameter table, no training). Without --config, a workdir's stored config.json is
used (a new run without either uses configs/default.py). Every config field is checked before anything
is written (experiments/validate.py); a resume may change only the run length unless
--allow_config_change is given, which config_changes.jsonl records. A user error ends the run with one
line on stderr and exit code 2, a runtime failure with one line and exit code 1.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
import sys
import tempfile
import traceback

from absl import app, flags, logging
from etils import epath
from ml_collections import config_dict, config_flags

ROOT = os.path.dirname(os.path.abspath(__file__))
if ROOT not in sys.path:  # Config files import configs.common and experiments.validate.
  sys.path.insert(0, ROOT)

from experiments import validate  # noqa: E402  (after the sys.path line above)

MODES = ('train', 'eval', 'sample', 'summary', 'translate')
HELP_FLAGS = ('--help', '-help', '-h', '--helpshort', '--helpfull', '--helpxml', '-?')

_CONFIG = config_flags.DEFINE_config_file(
  'config',
  None,
  'Experiment config, configs/<family>.py[:variant]; override fields with '
  "--config.<field>=<value>. Omitted: the workdir's config.json (a new run: configs/default.py).",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Run directory, local or e.g. gs://bucket/run (default runs/<family>_<variant>).'
)
_MODE = flags.DEFINE_enum('mode', 'train', MODES, 'What to do.')
_CHECKPOINT = flags.DEFINE_enum(
  'checkpoint', 'best', ['best', 'latest'], 'Checkpoint for eval/sample/translate.'
)
_INPUT = flags.DEFINE_string(
  'input', '-', "--mode=translate: a file of sentences, one per line ('-': stdin)."
)
_ALLOW_CHANGE = flags.DEFINE_bool(
  'allow_config_change',
  False,
  'Resume (or evaluate) a workdir with a config that differs from its '
  'config.json in more than the run length; a training run records the change in config_changes.jsonl.',
)
_MULTIHOST = flags.DEFINE_bool('multihost', False, 'Call jax.distributed.initialize() (several hosts).')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (multihost).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes (multihost).')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process (multihost).')


class UsageError(Exception):
  """Bad flags, config or workdir: printed as one line, exit code 2, before anything is written."""


def _fail(message: str, code: int) -> None:
  print(f'error: {" ".join(str(message).split())}', file=sys.stderr, flush=True)
  sys.exit(code)


# ---- flags -------------------------------------------------------------------------------------------


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parse with every failure turned into one line (exit 2); --help exits 0."""
  try:
    return flags.FLAGS(argv)
  except SystemExit:
    if any(a.split('=')[0] in HELP_FLAGS for a in argv[1:]):
      sys.exit(0)  # absl prints the help and exits 1; asking for help is not an error.
    raise
  except Exception as e:  # pylint: disable=broad-except  (flags.Error, and ml-collections' KeyError/...)
    _fail(_flag_error(e, argv), code=2)


def _config_arg(argv: list[str]) -> str | None:
  value = None
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      value = arg.split('=', 1)[1]
    elif arg == '--config' and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def _override_keys(argv: list[str]) -> list[str]:
  return [a[len('--config.') :].split('=', 1)[0] for a in argv if a.startswith('--config.')]


def _flag_error(e: Exception, argv: list[str]) -> str:
  message = str(e).strip().strip('"\'')
  if isinstance(e, flags.UnrecognizedFlagError) and str(e.flagname).startswith('config.'):
    return (
      f'--{e.flagname} overrides a field of --config, which is missing; give '
      f'--config=configs/<family>.py[:variant] (to change a stored run, repeat its --config)'
    )
  if isinstance(e, flags.UnrecognizedFlagError):
    return f'{message}; python launch.py --help lists the flags'
  if 'Traceback' in message:  # A config file's get_config raised: its last line is the message.
    last = [l for l in message.splitlines() if l.strip()][-1]
    return last.split(': ', 1)[1] if last.split(':', 1)[0].isidentifier() and ': ' in last else last
  if isinstance(e, (KeyError, AttributeError)):
    words = re.sub(r'[\\\'"]', ' ', message).split()  # ml-collections quotes the bad name, escaped.
    return _unknown_key(words[0] if words else message, argv)
  return message


def _unknown_key(name: str, argv: list[str]) -> str:
  """'unknown config key ...' naming the whole dotted key and the nearest valid ones."""
  key = next((k for k in _override_keys(argv) if name in k.split('.')), name)
  valid = []
  try:
    path, _, variant = (_config_arg(argv) or '').partition(':')
    spec = importlib.util.spec_from_file_location('_launch_config', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variant or None)
    valid = list(validate.leaves(config))
  except Exception:  # pylint: disable=broad-except  (suggestions are a courtesy; the error stands)
    pass
  near = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
  if not near and '.' in key:  # The fields next to it.
    parent = key.rsplit('.', 1)[0]
    near = [p for p in valid if p.startswith(parent + '.') and '.' not in p[len(parent) + 1 :]][:8]
  return f'unknown config key {key!r}; nearest valid keys: {", ".join(near) or "(none)"}'


# ---- config and workdir --------------------------------------------------------------------------------


def _load_default_config() -> config_dict.ConfigDict:
  return importlib.import_module('configs.default').get_config(None)


def default_workdir(config: config_dict.ConfigDict) -> str:
  family = config.get('family', '') or config.task
  return os.path.join('runs', family if config.variant in ('', family) else f'{family}_{config.variant}')


def _is_local(workdir: str) -> bool:
  return '://' not in workdir


def check_workdir(workdir: str, mode: str) -> None:
  """A train run needs a directory it can write; eval/sample need an existing run directory."""
  if _is_local(workdir) and os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UsageError(f'--workdir={workdir} is a file, not a directory; choose a directory path')
  if mode in ('eval', 'sample', 'translate') and not epath.Path(workdir).exists():
    raise UsageError(f'--workdir={workdir} does not exist; --mode={mode} needs the directory of a run')
  if mode != 'train' or not _is_local(workdir):
    return
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise UsageError(f'--workdir={workdir}: {existing} is a file, not a directory; choose another path')
  if not _writable(existing):
    raise UsageError(
      f'--workdir={workdir} is not writable ({existing} is read-only); choose a writable '
      f'directory, or use --mode=eval|sample|summary to read the run'
    )


def _writable(directory: str) -> bool:
  if not os.access(directory, os.W_OK | os.X_OK):
    return False
  try:  # os.access says yes to root on a read-only mount: try it.
    fd, probe = tempfile.mkstemp(prefix='.hyper_write_probe_', dir=directory)
    os.close(fd)
    os.unlink(probe)
    return True
  except OSError:
    return False


def _describe(changes: dict, limit: int = 4) -> str:
  shown = [f'{k} ({old!r} -> {new!r})' for k, (old, new) in list(changes.items())[:limit]]
  more = f' and {len(changes) - limit} more' if len(changes) > limit else ''
  return ', '.join(shown) + more


def _check_config(config: config_dict.ConfigDict, mode: str) -> None:
  validate.validate(config)
  modes = validate.allowed_modes(config) or MODES
  if mode not in modes:
    raise UsageError(
      f'--mode={mode} is not available for task {config.task!r} '
      f'(config {config.get("family", "")}:{config.variant}); allowed: {", ".join(modes)}'
    )


def resolve_config(mode: str, workdir: str | None) -> tuple[config_dict.ConfigDict, dict, dict, str]:
  """(config, changes to record, run-length changes, workdir); raises UsageError.

  The config is the --config flag's (parsed once, by absl), else the workdir's config.json, else (a new
  training run or a summary) configs/default.py.
  """
  given = flags.FLAGS['config'].present
  if given and not isinstance(_CONFIG.value, config_dict.ConfigDict):
    path = config_flags.get_config_filename(flags.FLAGS['config'])
    raise UsageError(
      f'config file {path!r} not found; families: '
      f'{", ".join("configs/" + f + ".py" for f in validate.available_families())}'
    )
  if given:  # The flags alone are checked first: a bad field is reported whatever the workdir holds.
    _check_config(_CONFIG.value, mode)
  if workdir is None:
    workdir = default_workdir(_CONFIG.value if given else _load_default_config())
  check_workdir(workdir, mode)
  try:
    stored = validate.read_stored_config(workdir)
  except (ValueError, OSError) as e:
    raise UsageError(f'{workdir}/config.json cannot be read ({e}); give --config=... or repair it') from None
  if given:
    config = _CONFIG.value
  elif stored is not None:
    config = stored
    _check_config(config, mode)
  elif mode in ('eval', 'sample', 'translate'):
    raise UsageError(
      f'--workdir={workdir} holds no config.json; --mode={mode} needs the directory of a run '
      f'(or give its --config=configs/<family>.py:<variant>)'
    )
  else:
    config = _load_default_config()
    _check_config(config, mode)
  record, run_length = {}, {}
  if given and stored is not None and mode != 'summary':  # A summary reads no checkpoint.
    free = (*validate.RUN_LENGTH_FIELDS, *validate.LOCATION_FIELDS, *validate.UNCOMPARED_FIELDS)
    if mode == 'train':
      changes = validate.config_diff(stored, config, ignore=free)
      run_length = validate.config_diff(
        stored, config, only=(*validate.RUN_LENGTH_FIELDS, *validate.LOCATION_FIELDS)
      )
    else:
      changes = validate.config_diff(stored, config, only=validate.MODEL_PREFIXES, ignore=free)
    if changes and not _ALLOW_CHANGE.value:
      what = 'resume it with these values' if mode == 'train' else f'use them for --mode={mode}'
      raise UsageError(
        f'{workdir} holds a run with another config, differing in {_describe(changes)}; omit --config '
        f'to use its config.json, choose another --workdir, or pass --allow_config_change to {what}'
      )
    if mode == 'train':
      record = changes
  return config, record, run_length, workdir


# ---- main ----------------------------------------------------------------------------------------------


def _log_unraisable(unraisable) -> None:
  # Orbax/tensorstore coroutines left by a failed checkpoint restore are collected at arbitrary moments
  # and would print pages of 'Exception ignored in ...'; the failure is already reported in one line.
  logging.info('unraisable exception in %r: %s', unraisable.object, unraisable.exc_value)


def _runtime_failure(e: BaseException) -> str:
  """One line for an unexpected exception; the traceback goes to a file the line names."""
  with tempfile.NamedTemporaryFile('w', prefix='hyper-launch-', suffix='.txt', delete=False) as f:
    traceback.print_exception(e, file=f)
  return f'{type(e).__name__}: {e} (traceback in {f.name})'


def _run(trainer, mode: str, config, workdir: str, record: dict, run_length: dict) -> None:
  """Starts JAX (and jax.distributed), checks the config against the devices, then runs the mode."""
  import jax  # pylint: disable=g-import-not-at-top

  if _MULTIHOST.value:
    # Cross-process collectives for CPU devices (local multi-process runs and tests); TPU/GPU ignore it.
    try:
      jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    except (AttributeError, ValueError):  # Option renamed or gone in another jax version.
      pass
    jax.distributed.initialize(
      coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value
    )
  if mode == 'summary':
    trainer.summary(config)
    return
  validate.check_devices(config, jax.device_count(), jax.process_count())
  if jax.process_index() == 0:
    print(
      f'process {jax.process_index()}/{jax.process_count()}, {jax.local_device_count()} local of '
      f'{jax.device_count()} devices: {jax.devices()[0].platform} {jax.devices()[0].device_kind}',
      flush=True,
    )
  if mode == 'train':
    if jax.process_index() == 0 and (record or run_length):
      # The first write of this run; config.json now says what the run trains with.
      validate.write_config(workdir, config)
      if run_length:
        validate.record_config_change(workdir, run_length, 'run length')
      if record:
        validate.record_config_change(workdir, record, '--allow_config_change')
    trainer.train_and_evaluate(config, workdir)
  elif mode == 'eval':
    trainer.evaluate(config, workdir, _CHECKPOINT.value)
  elif mode == 'translate':  # Families that list 'translate' in their MODES have task.translate.
    runner, state = trainer.restore_params(config, workdir, _CHECKPOINT.value)
    source = sys.stdin if _INPUT.value == '-' else epath.Path(_INPUT.value).open()
    for line in runner.task.translate(state['params'], [line.rstrip('\n') for line in source]):
      print(line, flush=True)
  else:
    trainer.sample(config, workdir, _CHECKPOINT.value)


def main(argv: list[str]) -> None:
  sys.unraisablehook = _log_unraisable
  if not flags.FLAGS[
    'verbosity'
  ].present:  # Orbax logs each save and restore (INFO) and read-only opens (WARNING).
    logging.set_verbosity(logging.ERROR)
  if len(argv) > 1:
    _fail(
      f'unexpected arguments {" ".join(argv[1:])!r}; flags are --name=value '
      f'(python launch.py --help lists them)',
      code=2,
    )
  mode = _MODE.value
  try:
    config, record, run_length, workdir = resolve_config(mode, _WORKDIR.value)
  except (UsageError, validate.ConfigError) as e:
    _fail(str(e), code=2)

  known: tuple[type[Exception], ...] = ()  # Failures that explain themselves in one line.
  try:
    from experiments import trainer  # pylint: disable=g-import-not-at-top  (after the checks: fail fast)
    from experiments.checkpoints import RunError  # pylint: disable=g-import-not-at-top
    from experiments.data.errors import DataError  # pylint: disable=g-import-not-at-top

    known = (DataError, RunError)  # RunError: checkpoints, divergence, lock, full disk, workdir.
    _run(trainer, mode, config, workdir, record, run_length)
  except validate.ConfigError as e:  # The devices do not fit the config: still a user error.
    _fail(str(e), code=2)
  except Exception as e:  # pylint: disable=broad-except  (one line; an unexpected one names its traceback)
    message = str(e) if isinstance(e, known) else _runtime_failure(e)
  else:
    return
  print(f'error: {" ".join(message.split())}', file=sys.stderr, flush=True)
  sys.stdout.flush()
  # Skip interpreter teardown: orbax/tensorstore threads left by a failed restore print pages of
  # 'Exception ignored' there. Everything worth keeping was written before the error was raised.
  os._exit(1)


def cli(argv: list[str]) -> int:
  """Parses `argv` and runs main, returning the exit code: the tests' in-process entry point."""
  flags.FLAGS.unparse_flags()
  for name in [n for n in flags.FLAGS if n.startswith('config.')]:  # Overrides of the previous call.
    delattr(flags.FLAGS, name)
  saved, sys.argv = sys.argv, list(argv)  # The --config flag reads its overrides from sys.argv.
  hook = sys.unraisablehook
  try:
    main(parse_flags(argv))
  except SystemExit as e:
    return e.code if isinstance(e.code, int) else 1
  finally:
    sys.argv, sys.unraisablehook = saved, hook
  return 0


if __name__ == '__main__':
  import jax  # pylint: disable=g-import-not-at-top

  jax.config.config_with_absl()  # --jax_debug_nans, --jax_platforms, ... as absl flags.
  app.run(main, flags_parser=parse_flags)
