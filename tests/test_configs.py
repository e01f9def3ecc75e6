"""Configs: every family/variant builds, carries the paper's values, and unknown variants fail in one line."""

import importlib
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

FAMILIES = ('default', 'ptb_char', 'enwik8', 'mnist', 'cifar10')


def _family(name):
  return importlib.import_module(f'configs.{name}')


@pytest.mark.parametrize('family', FAMILIES)
def test_every_variant_builds_and_is_locked_with_comments(family):
  module = _family(family)
  for variant in module.VARIANTS:
    config = module.get_config(variant)
    assert config.variant == variant
    assert config.task in ('char_lm', 'image')
    # A duration is given exactly once.
    assert (config.train.num_steps >= 0) != (config.train.num_epochs >= 0), variant
  if family != 'default':
    assert 'tiny' in module.VARIANTS
  with pytest.raises(ValueError, match=r'unknown variant .*choose one of: '):
    module.get_config('no_such_row')


def test_every_field_has_a_one_line_comment():
  # Each field is defined once, in configs/common.py, as `<obj>.<name> = value  # comment`.
  text = open(os.path.join(ROOT, 'configs', 'common.py')).read()
  for family in FAMILIES:
    config = _family(family).get_config(None)
    for section, value in config.items():
      names = list(value.keys()) if hasattr(value, 'keys') else [section]
      for name in names:
        assert re.search(rf'\.{name} = .*# \S', text), f'{family}: {section}.{name} lacks a comment'


def test_ptb_char_rows_follow_appendix_a33():
  ptb = _family('ptb_char')
  c = ptb.get_config('ln_hyperlstm1000')
  assert (c.train.batch_size, c.data.seq_len, c.train.learning_rate, c.train.grad_clip_norm) == (
    128,
    100,
    0.001,
    1.0,
  )
  assert (c.model.cell.hyper_features, c.model.cell.embedding_size) == (128, 4)
  assert (
    c.model.input_dropout == c.model.output_dropout == c.model.cell.recurrent_dropout == pytest.approx(0.1)
  )
  assert ptb.get_config('ln_hyperlstm1000_nz16').model.cell.recurrent_dropout == pytest.approx(0.15)
  two = ptb.get_config('ln_hyperlstm1000_2layer').model
  assert (two.num_layers, two.cell.embedding_size, two.cell.recurrent_dropout) == (2, 16, pytest.approx(0.2))
  assert ptb.get_config('lstm1250').model.cell.features == 1250


def test_enwik8_and_image_rows():
  e = _family('enwik8').get_config('ln_hyperlstm2048').model.cell
  assert (e.features, e.hyper_features, e.embedding_size) == (2048, 512, 64)
  assert _family('enwik8').get_config('hyperlstm1800').model.cell.hyper_features == 256
  m = _family('mnist').get_config('hyper_conv')
  assert (m.train.batch_size, m.train.learning_rate, m.train.optimizer) == (1000, 0.001, 'adam')
  normal = _family('cifar10').get_config('wrn40_2')
  assert (normal.train.optimizer, normal.train.learning_rate, normal.train.weight_decay) == (
    'nesterov',
    0.1,
    5e-4,
  )
  assert tuple(normal.train.decay_epochs) == (60.0, 120.0, 160.0) and normal.model.width == 2
  assert _family('cifar10').get_config('hyper_wrn40_1').train.optimizer == 'adam'


def test_durations_are_converted_in_one_helper():
  from experiments import trainer

  assert trainer.to_steps(steps=7, epochs=-1, steps_per_epoch=100) == 7
  assert trainer.to_steps(steps=-1, epochs=2.5, steps_per_epoch=100) == 250
  with pytest.raises(ValueError, match='not both'):
    trainer.to_steps(steps=7, epochs=1.0, steps_per_epoch=100)


# Rows whose published count no consistent reading reproduces (tests/test_param_counts_rnn.py explains).
PINNED_ROWS = {('ptb_char', 'ln_hyperlstm1000_nz16'), ('enwik8', 'ln_hyperlstm1800')}


@pytest.mark.parametrize('family', ('ptb_char', 'enwik8', 'cifar10'))
def test_summary_prints_the_papers_count_and_result(family, capsys):
  from experiments import trainer

  module = _family(family)
  rows = [v for v in module.VARIANTS if module.get_config(v).paper.params]
  assert len(rows) == {'ptb_char': 8, 'enwik8': 6, 'cifar10': 4}[family]
  for variant in rows:
    config = module.get_config(variant)
    total = trainer.summary(config)
    out = capsys.readouterr().out
    assert f'paper_params: {config.paper.params}' in out and f'paper_test: {config.paper.test}' in out
    assert re.fullmatch(r'\d\.\d{2,3} bpc|\d\.\d\d% error', config.paper.test), config.paper.test
    millions = float(config.paper.params.rstrip('M'))
    digits = len(config.paper.params.rstrip('M').split('.')[1])
    if (family, variant) in PINNED_ROWS:
      assert abs(round(total / 1e6, digits) - millions) <= 0.06, variant
    else:
      assert round(total / 1e6, digits) == millions, (variant, total)


# ---- the schema (experiments/validate.py) ----------------------------------------------------------------

from configs import common  # noqa: E402
from experiments import validate as v  # noqa: E402


def test_every_variant_of_every_family_validates():
  for family in v.available_families():
    module = _family(family)
    for variant in module.VARIANTS:
      config = module.get_config(variant)
      assert config.family == family
      v.validate(config)


@pytest.mark.parametrize('family', FAMILIES)
def test_the_schema_checks_every_field(family):
  module = _family(family)
  for variant in module.VARIANTS:
    config = module.get_config(variant)
    table = v.schema(config)
    unchecked = [p for p in v.leaves(config) if table.check_for(p) is None]
    assert not unchecked, f'{family}:{variant}: no check for {unchecked}'


def test_name_lists_match_the_code():
  import hyper.cells
  from experiments import trainer
  from experiments.data import images, text

  assert set(common.CHAR_DATA) == set(text.NAMES)
  assert set(common.IMAGE_DATA) == set(images.IMAGE_SHAPES)
  assert tuple(common.Z_INITS) == tuple(hyper.cells.Z_INITS)
  try:  # The cell registry moves to experiments/models.py (make_cell); before that, hyper/sequence.py.
    from experiments import models

    cells = next(getattr(models, n) for n in ('CELLS', 'CELL_NAMES', 'CELL_KINDS') if hasattr(models, n))
  except (ImportError, StopIteration):
    from hyper import sequence

    cells = sequence.CELL_KINDS
  assert set(common.CELL_NAMES) == set(cells)
  import ml_collections

  train = lambda **kw: ml_collections.ConfigDict({**_family('cifar10').get_config('tiny').train, **kw})
  for name in common.OPTIMIZERS:
    trainer.make_optimizer(train(optimizer=name), 10)
  with pytest.raises(ValueError, match='unknown optimizer'):
    trainer.make_optimizer(train(optimizer='sgd'), 10)
  for name in common.SCHEDULES:
    trainer.make_optimizer(train(schedule=name), 10)


@pytest.mark.parametrize(
  'field, value, needle',
  [
    ('train.num_steps', 0, 'an integer >= 1, or -1'),
    ('train.learning_rate', 0.0, 'a number > 0'),
    ('train.momentum', 1.0, '< 1'),
    ('train.decay_epochs', (60.0, 30.0), 'increasing'),
    ('train.decay_factor', 0.0, '> 0'),
    ('eval.splits', (), 'non-empty'),
    ('checkpoint.keep', 0, 'an integer >= 1'),
    ('mesh.shape', (-1, -1), 'at most one -1'),
    ('mesh.axes', ('batch', 'model'), "'data'"),
    ('sample.temperature', 0.0, '> 0'),
    ('seed', -1, '>= 0'),
  ],
)
def test_each_bad_value_names_its_field(field, value, needle):
  config = _family('ptb_char').get_config('tiny')
  section, name = field.rsplit('.', 1) if '.' in field else ('', field)
  (config[section] if section else config)[name] = value
  with pytest.raises(v.ConfigError, match=re.escape(needle)) as info:
    v.validate(config)
  assert str(info.value).startswith('config.mesh.' if field.startswith('mesh') else f'config.{field}: ')
  assert '\n' not in str(info.value)


def test_char_data_is_a_corpus_name_or_a_prepared_npz():
  config = _family('ptb_char').get_config('tiny')
  config.data.name = 'prepared/ptb_char.npz'  # README: `--config.data.name=ptb_char.npz` on accelerators.
  v.validate(config)
  config.data.name = 'ptb'
  with pytest.raises(v.ConfigError, match=r"config.data.name: 'ptb' is not allowed; allowed: 'synthetic', "):
    v.validate(config)


def test_a_family_registers_its_own_checks(monkeypatch):
  """A new family's file carries CHECKS/RULES; the validator is not edited (here: a module in memory)."""
  import types

  family = types.ModuleType('configs.handwriting_demo')
  family.CHECKS = {'model.mixtures': v.integer(1, 50)}

  def _rule(config):
    if config.model.mixtures > config.model.cell.features:
      raise v.ConfigError('model.mixtures', 'must not exceed model.cell.features')

  family.RULES = (_rule,)
  family.MODES = ('train', 'eval', 'summary')
  monkeypatch.setitem(sys.modules, 'configs.handwriting_demo', family)
  config = _family('ptb_char').get_config('tiny')
  assert v.allowed_modes(config) == ('train', 'eval', 'sample', 'summary')  # The char_lm task's.
  config.family = 'handwriting_demo'
  assert v.allowed_modes(config) == ('train', 'eval', 'summary')
  with config.unlocked():
    config.model.mixtures = 20
  v.validate(config)
  config.model.mixtures = 51
  with pytest.raises(v.ConfigError, match=r'config.model.mixtures: 51 is not allowed; allowed: an integer'):
    v.validate(config)
  config.model.mixtures = 40
  config.model.cell.features = 32
  with pytest.raises(v.ConfigError, match='must not exceed'):
    v.validate(config)
  config.family = 'ptb_char'  # Another family: its rule is not applied.
  v.validate(config)


def test_wide_resnet_rule_belongs_to_cifar10():
  config = _family('cifar10').get_config('tiny')
  config.model.depth = 16
  v.validate(config)
  config.model.depth = 12
  with pytest.raises(v.ConfigError, match='6n\\+4'):
    v.validate(config)


def test_devices_mesh_and_batch_divisibility():
  config = _family('mnist').get_config('tiny')  # batch 32, eval batch 64, mesh (-1, 1)
  v.check_devices(config, device_count=8, process_count=2)
  assert v.data_parallel_size((-1, 1), ('data', 'model'), 8) == 8
  assert v.data_parallel_size((2, -1), ('data', 'model'), 8) == 2
  config.train.batch_size = 12
  with pytest.raises(v.ConfigError, match=r"train.batch_size: 12 .* 'data' mesh axis \(8 devices\).*16"):
    v.check_devices(config, 8)
  config.mesh.shape = (2, 4)  # 'data' is 2 wide: 12 splits evenly.
  v.check_devices(config, 8)
  config.mesh.shape = (2, -1)
  with pytest.raises(v.ConfigError, match='the 8 processes'):
    v.check_devices(config, 16, process_count=8)  # 12 rows cannot be read as 8 equal process shares.
  config.mesh.shape = (3, -1)
  with pytest.raises(v.ConfigError, match=r'mesh.shape: \(3, -1\) does not fit the 8 devices'):
    v.check_devices(config, 8)


def test_config_diff_names_the_keys_and_ignores_the_run_length(tmp_path):
  stored = _family('ptb_char').get_config('tiny')
  v.write_config(tmp_path, stored)
  loaded = v.read_stored_config(tmp_path)
  assert v.config_diff(stored, loaded) == {}  # JSON lists vs tuples, ints vs floats: equal.
  new = _family('ptb_char').get_config('tiny')
  new.train.num_steps, new.eval.patience, new.train.learning_rate = 500, 3, 0.1
  new.data.manual_dir = '/elsewhere'
  free = (*v.RUN_LENGTH_FIELDS, *v.LOCATION_FIELDS)
  assert v.config_diff(loaded, new, ignore=free) == {'train.learning_rate': (0.01, 0.1)}
  assert set(v.config_diff(loaded, new, only=free)) == {'train.num_steps', 'eval.patience', 'data.manual_dir'}
  free += v.UNCOMPARED_FIELDS
  new.sample.length, new.eval.max_batches = 7, 1  # Free for an evaluation.
  assert v.config_diff(loaded, new, only=v.MODEL_PREFIXES, ignore=free) == {
    'train.learning_rate': (0.01, 0.1)
  }
  v.record_config_change(tmp_path, {'train.num_steps': (30, 500)}, 'run length')
  v.record_config_change(tmp_path, {'train.learning_rate': (0.01, 0.1)}, '--allow_config_change')
  import json

  lines = [json.loads(l) for l in (tmp_path / v.CHANGES_FILE).read_text().splitlines()]
  assert [l['reason'] for l in lines] == ['run length', '--allow_config_change']
  assert lines[1]['changes'] == {'train.learning_rate': [0.01, 0.1]}
