"""Strict configs: every field checked against a schema before a run writes anything.

The schema is a table keyed by dotted path (`'train.batch_size'`; fnmatch patterns such as
`'model.*dropout'` cover fields of any cell or family), each value a `Check` that knows its allowed values,
plus cross-field rules (functions that raise `ConfigError`). Nothing here knows a family:

- `configs/common.py` registers `CHECKS` and `RULES` for the fields every family shares, and
  `TASK_CHECKS[task]` / `TASK_RULES[task]` for the fields its task helpers (`char_lm()`, `image()`) fill;
- a family file `configs/<family>.py` may add its own `CHECKS` and `RULES` (its checks take precedence,
  so a family can narrow a shared one) and `MODES` (the launch.py modes it supports).

A new family therefore adds its checks in its own config file. Fields without a check are accepted as
they are (ml-collections already keeps an override's type). Device-dependent facts (mesh shape, batch
divisibility) are checked by `check_devices` once the device count is known, still before any file is
written. `config_diff` and `RUN_LENGTH_FIELDS` decide which changes a resume accepts. Imports no jax.
"""

from __future__ import annotations

import dataclasses
import datetime
import fnmatch
import importlib
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import ml_collections
from etils import epath

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILE = 'config.json'
CHANGES_FILE = 'config_changes.jsonl'

# A resume may change these (how long to train, not what is trained); everything else must match the
# workdir's config.json unless --allow_config_change is given. data_dir/manual_dir say where the same
# data lives (they change when a run moves to another machine), not what the data is.
RUN_LENGTH_FIELDS = ('train.num_steps', 'train.num_epochs', 'eval.patience')
LOCATION_FIELDS = ('data.data_dir', 'data.manual_dir')
# Never compared nor recorded: test hooks (fault injection) and the name of the family file (provenance;
# config.json files written before it existed lack it), not part of what a run trains.
UNCOMPARED_FIELDS = ('debug', 'family')
# --mode=eval|sample on a workdir: what defines the trained model and its state (train.* shapes the
# optimizer state and the carry) must match, the run length aside; eval.*, sample.*, mesh.* and the rest
# may be set freely for the evaluation.
MODEL_PREFIXES = ('task', 'model', 'data', 'train')


class ConfigError(ValueError):
  """A config field with a value outside its allowed values; str() is one line naming the field."""

  def __init__(self, field: str, message: str):
    super().__init__(f'config.{field}: {message}')
    self.field = field


@dataclasses.dataclass(frozen=True)
class Check:
  """One field's allowed values: `test(value)` says whether a value is allowed, `allowed` says which are."""

  allowed: str
  test: Callable[[Any], bool]

  def __call__(self, field: str, value: Any) -> None:
    try:
      ok = self.test(value)
    except (TypeError, ValueError):
      ok = False
    if not ok:
      raise ConfigError(field, f'{value!r} is not allowed; allowed: {self.allowed}')


def _is_int(x) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
  return (_is_int(x) or isinstance(x, float)) and math.isfinite(x)


def integer(minimum: int | None = None, maximum: int | None = None, *, also: Iterable[int] = ()) -> Check:
  """An int in [minimum, maximum], or one of `also` (e.g. -1 meaning 'unset')."""
  also = tuple(also)
  bounds = ' and '.join(
    s
    for s in (f'>= {minimum}' if minimum is not None else '', f'<= {maximum}' if maximum is not None else '')
    if s
  )
  text = f'an integer {bounds}'.strip() + (f', or {" or ".join(map(str, also))}' if also else '')
  return Check(
    text,
    lambda x: (
      _is_int(x) and (x in also or ((minimum is None or x >= minimum) and (maximum is None or x <= maximum)))
    ),
  )


def number(
  minimum: float | None = None,
  maximum: float | None = None,
  *,
  open_min: bool = False,
  open_max: bool = False,
  also: Iterable[float] = (),
) -> Check:
  """A finite int or float in the interval (open or closed at each end), or one of `also`."""
  also = tuple(also)
  lo = f'{">" if open_min else ">="} {minimum}' if minimum is not None else ''
  hi = f'{"<" if open_max else "<="} {maximum}' if maximum is not None else ''
  text = f'a number {" and ".join(s for s in (lo, hi) if s)}'.strip()
  text += f', or {" or ".join(map(str, also))}' if also else ''

  def test(x):
    if not _is_number(x):
      return False
    if x in also:
      return True
    if minimum is not None and (x <= minimum if open_min else x < minimum):
      return False
    return maximum is None or (x < maximum if open_max else x <= maximum)

  return Check(text, test)


def one_of(*names: Any) -> Check:
  return Check(', '.join(map(repr, names)), lambda x: x in names)


def boolean() -> Check:
  return Check('True or False', lambda x: isinstance(x, bool))


def text(nonempty: bool = False) -> Check:
  return Check(
    'a non-empty string' if nonempty else 'a string',
    lambda x: isinstance(x, str) and (bool(x) or not nonempty),
  )


def sequence_of(
  item: Check, *, nonempty: bool = False, increasing: bool = False, distinct: bool = False
) -> Check:
  """A tuple/list whose every item passes `item` (JSON gives lists where the config had tuples)."""
  words = [w for w, on in (('non-empty', nonempty), ('increasing', increasing), ('distinct', distinct)) if on]
  text_ = f'a {" ".join(words)} tuple of ({item.allowed})'.replace('a  ', 'a ')

  def test(x):
    if not isinstance(x, (tuple, list)) or (nonempty and not x):
      return False
    if not all(item.test(v) for v in x):
      return False
    if increasing and any(b <= a for a, b in zip(x, x[1:])):
      return False
    return not distinct or len(set(x)) == len(x)

  return Check(text_, test)


def available_tasks() -> list[str]:
  """Modules of experiments/tasks/ that a config.task may name (without importing them)."""
  folder = os.path.join(ROOT, 'experiments', 'tasks')
  return sorted(
    f[:-3]
    for f in os.listdir(folder)
    if f.endswith('.py') and not f.startswith('_') and f not in ('base.py',)
  )


def available_families() -> list[str]:
  folder = os.path.join(ROOT, 'configs')
  return sorted(
    f[:-3] for f in os.listdir(folder) if f.endswith('.py') and not f.startswith('_') and f != 'common.py'
  )


def _task_check() -> Check:
  return Check(
    f'one of the experiments/tasks/*.py modules: {", ".join(available_tasks())}',
    lambda x: isinstance(x, str) and x in available_tasks(),
  )


@dataclasses.dataclass
class Schema:
  checks: dict[str, Check]
  rules: list[Callable[[ml_collections.ConfigDict], None]]

  def check_for(self, path: str) -> Check | None:
    if path in self.checks:
      return self.checks[path]
    for pattern, check in self.checks.items():  # Registration order: the family's patterns come first.
      if any(c in pattern for c in '*?[') and fnmatch.fnmatchcase(path, pattern):
        return check
    return None


def schema(config: ml_collections.ConfigDict) -> Schema:
  """The checks for `config`: its family's (configs/<config.family>.py), its task's, then the shared ones."""
  common = importlib.import_module('configs.common')
  task = config.get('task', '')
  family = _family_module(config.get('family', ''))
  checks: dict[str, Check] = {}
  rules: list = []
  for source in (family, _TaskTables(common, task), common):
    for path, check in (getattr(source, 'CHECKS', None) or {}).items():
      checks.setdefault(path, check)
    rules += list(getattr(source, 'RULES', None) or ())
  checks.setdefault('task', _task_check())
  return Schema(checks, rules)


class _TaskTables:
  def __init__(self, common, task: str):
    self.CHECKS = getattr(common, 'TASK_CHECKS', {}).get(task, {})  # pylint: disable=invalid-name
    self.RULES = getattr(common, 'TASK_RULES', {}).get(task, ())  # pylint: disable=invalid-name


def allowed_modes(config: ml_collections.ConfigDict) -> tuple[str, ...] | None:
  """launch.py modes the config's task supports: its family file's MODES, else configs/common.py's
  TASK_MODES[task], else None (any mode; the task says at run time)."""
  family = _family_module(config.get('family', ''))
  if getattr(family, 'MODES', None):
    return tuple(family.MODES)
  modes = getattr(importlib.import_module('configs.common'), 'TASK_MODES', {}).get(config.get('task', ''))
  return tuple(modes) if modes else None


def _family_module(family: str):
  if not family:
    return None
  try:
    return importlib.import_module(f'configs.{family}')
  except ModuleNotFoundError:  # A stored config of a family file since removed: the shared checks stand.
    return None


def leaves(config: Mapping, prefix: str = '') -> dict[str, Any]:
  """Dotted path -> value of every leaf (ConfigDicts and dicts are descended into)."""
  out = {}
  for key, value in config.items():
    path = f'{prefix}{key}'
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      out.update(leaves(value, path + '.'))
    else:
      out[path] = value
  return out


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError (one line naming the field and the allowed values) for the first bad field."""
  if config.get('task', '') not in available_tasks():
    _task_check()('task', config.get('task', ''))
  table = schema(config)
  for path, value in leaves(config).items():
    check = table.check_for(path)
    if check is not None:
      check(path, value)
  for rule in table.rules:
    rule(config)


def data_parallel_size(mesh_shape: Iterable[int], mesh_axes: Iterable[str], device_count: int) -> int:
  """Size of the 'data' axis once a -1 in mesh.shape takes the remaining devices."""
  shape = list(mesh_shape)
  if -1 in shape:
    known = math.prod(s for s in shape if s != -1)
    shape[shape.index(-1)] = device_count // known
  return dict(zip(mesh_axes, shape)).get('data', 1)


def check_devices(config: ml_collections.ConfigDict, device_count: int, process_count: int = 1) -> None:
  """Mesh against the devices, batches against the 'data' axis and the processes (one-line ConfigError)."""
  shape, axes = list(config.mesh.shape), list(config.mesh.axes)
  known = math.prod(s for s in shape if s != -1)
  if (-1 in shape and device_count % known) or (-1 not in shape and known != device_count):
    raise ConfigError(
      'mesh.shape',
      f'{tuple(shape)} does not fit the {device_count} devices; allowed: '
      f'shapes whose product is {device_count}, with at most one -1 taking the rest '
      f'(e.g. (-1, 1))',
    )
  data = data_parallel_size(shape, axes, device_count)
  for field in ('train.batch_size', 'eval.batch_size'):
    section, name = field.split('.')
    value = config[section].get(name)
    if value is None:
      continue
    for divisor, what in (
      (data, f"the 'data' mesh axis ({data} devices)"),
      (process_count, f'the {process_count} processes'),
    ):
      if divisor > 1 and value % divisor:
        raise ConfigError(
          field,
          f'{value} does not split evenly over {what}; allowed: multiples of '
          f'{math.lcm(data, process_count)} (e.g. {_next_multiple(value, math.lcm(data, process_count))})',
        )


def _next_multiple(value: int, divisor: int) -> int:
  return max(divisor, -(-value // divisor) * divisor)


# ---- stored configs and resumes -------------------------------------------------------------------


def _tuples(tree):
  """JSON turned the config's tuples into lists; turn them back."""
  if isinstance(tree, dict):
    return {k: _tuples(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples(v) for v in tree)
  return tree


def read_stored_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict | None:
  """The workdir's config.json as a ConfigDict, or None when there is none."""
  path = epath.Path(workdir) / CONFIG_FILE
  if not path.exists():
    return None
  return ml_collections.ConfigDict(_tuples(json.loads(path.read_text())))


def _plain(config) -> dict[str, Any]:
  # The JSON form on both sides, so that tuples and lists, ints and floats compare as stored.
  if isinstance(config, ml_collections.ConfigDict):
    config = json.loads(config.to_json_best_effort())
  return leaves(config)


def config_diff(
  stored, new, *, ignore: Iterable[str] = (), only: Iterable[str] | None = None
) -> dict[str, tuple[Any, Any]]:
  """Dotted path -> (stored value, new value) for every differing leaf ('<absent>' where missing).

  `ignore` drops the paths equal to or under one of its prefixes; `only` keeps just those.
  """
  a, b = _plain(stored), _plain(new)
  under = lambda path, prefixes: any(path == p or path.startswith(p + '.') for p in prefixes)
  ignore, only = tuple(ignore), tuple(only) if only is not None else None
  out = {}
  for path in sorted(set(a) | set(b)):
    if under(path, ignore) or (only is not None and not under(path, only)):
      continue
    old, new_value = a.get(path, '<absent>'), b.get(path, '<absent>')
    if old != new_value:
      out[path] = (old, new_value)
  return out


def write_config(workdir: str | os.PathLike, config: ml_collections.ConfigDict) -> None:
  path = epath.Path(workdir) / CONFIG_FILE
  tmp = path.parent / (CONFIG_FILE + '.tmp')
  tmp.write_text(config.to_json_best_effort(indent=2))
  tmp.replace(path)  # Atomic on a local disk: a kill never leaves half a config.json.


def record_config_change(
  workdir: str | os.PathLike, changes: Mapping[str, tuple[Any, Any]], reason: str
) -> None:
  """Appends one JSON line {time, reason, changes: {path: [stored, new]}} to config_changes.jsonl."""
  path = epath.Path(workdir) / CHANGES_FILE
  line = json.dumps(
    {
      'time': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
      'reason': reason,
      'changes': {k: list(v) for k, v in changes.items()},
    }
  )
  previous = path.read_text() if path.exists() else ''
  path.write_text(previous + line + '\n')  # epath has no append mode that every backend supports.
