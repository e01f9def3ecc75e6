"""experiments/results_table.py: grouping by variant, mean ± spread over seeds, unfinished runs refused."""

import json
import os

import pytest

from experiments import results_table


def _write_run(root, name, variant, seed, test, valid, start=1000.0, end=1600.0, steps=1500):
  workdir = os.path.join(root, name)
  os.makedirs(workdir)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    json.dump({'variant': variant, 'seed': seed}, f)
  with open(os.path.join(workdir, 'run_info.json'), 'w') as f:
    json.dump({'param_count': 1234567, 'time': start, 'data_source': 'cifar10 (jpeg-copy)'}, f)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    f.write(json.dumps({'step': steps, 'time': end, 'train/loss': 1.0}) + '\n')
    f.write(json.dumps({'step': 1000, 'time': end + 5, 'final_valid/bpc': valid}) + '\n')
    f.write(json.dumps({'step': 1000, 'time': end + 9, 'final_test/bpc': test}) + '\n')
  return workdir


def test_groups_seeds_and_reports_mean_and_spread(tmp_path):
  dirs = [
    _write_run(tmp_path, 'a0', 'cpu_lstm256', 0, test=1.50, valid=1.60),
    _write_run(tmp_path, 'a1', 'cpu_lstm256', 1, test=1.70, valid=1.80, end=1900.0),
    _write_run(tmp_path, 'b0', 'cpu_ln_hyperlstm256', 0, test=1.40, valid=1.45),
  ]
  runs = [results_table.read_run(d, 'bpc') for d in dirs]
  assert runs[0]['wall_s'] == 600.0 and runs[0]['best_step'] == 1000 and runs[0]['steps'] == 1500
  lines = results_table.table(runs, 'bpc', paper={'cpu_lstm256': '1.312'}).splitlines()
  assert len(lines) == 4  # header, rule, two variants
  lstm = lines[2].split(' | ')
  # Mean 1.60 and population std 0.10 of the test bpc; wall 10 and 15 min -> 12.5 ± 2.5.
  assert lstm[7] == '1.600 ± 0.100' and lstm[6] == '1.700 ± 0.100' and lstm[5] == '12.5 ± 2.5'
  assert lstm[3] == '2' and lstm[8] == '1.500, 1.700' and lstm[2] == '1,234,567'
  assert lstm[1] == 'cifar10 (jpeg-copy)'
  assert lines[3].split(' | ')[7] == '1.400'  # one seed: no spread


def test_percent_scaling_for_error_rates(tmp_path):
  d = _write_run(tmp_path, 'm', 'conv', 0, test=0.0076, valid=0.008)
  with open(os.path.join(d, 'metrics.jsonl')) as f:
    text = f.read().replace('/bpc', '/error_rate')
  with open(os.path.join(d, 'metrics.jsonl'), 'w') as f:
    f.write(text)
  row = (
    results_table.table([results_table.read_run(d, 'error_rate')], 'error_rate', percent=True)
    .splitlines()[2]
    .split(' | ')
  )
  assert row[7] == '0.76'


def test_unfinished_run_is_refused_with_its_path(tmp_path, capsys):
  d = _write_run(tmp_path, 'x', 'cpu_lstm256', 0, test=1.5, valid=1.6)
  with open(os.path.join(d, 'metrics.jsonl'), 'w') as f:
    f.write(json.dumps({'step': 10, 'time': 1.0, 'train/loss': 2.0}) + '\n')
  with pytest.raises(ValueError, match='has not finished'):
    results_table.read_run(d, 'bpc')
  assert results_table.main([d, os.path.join(tmp_path, 'missing')]) == 1
  assert 'no finished runs' in capsys.readouterr().err


def test_group_by_workdir_and_z_rank_column(tmp_path):
  """Runs that differ only by overrides share a variant; `group_by='workdir'` separates them by name."""
  dirs = [
    _write_run(tmp_path, 'cpu_hyperlstm256_nz16_s0', 'cpu_hyperlstm256', 0, test=1.5, valid=1.6),
    _write_run(tmp_path, 'cpu_hyperlstm256_nz16_s1', 'cpu_hyperlstm256', 1, test=1.7, valid=1.8),
    _write_run(tmp_path, 'cpu_hyperlstm256_s0', 'cpu_hyperlstm256', 0, test=1.4, valid=1.45),
  ]
  runs = [results_table.read_run(d, 'bpc') for d in dirs]
  assert len(results_table.table(runs, 'bpc').splitlines()) == 3  # one variant
  runs[0]['z_rank'], runs[1]['z_rank'] = {'h': 1.0, 'x': 2.0}, {'h': 2.0, 'x': 3.0}
  lines = results_table.table(runs, 'bpc', group_by='workdir').splitlines()
  assert len(lines) == 4 and lines[0].endswith('| z rank h / x |')
  nz16, nz4 = lines[2].split(' | '), lines[3].split(' | ')
  assert nz16[0] == '| `cpu_hyperlstm256_nz16`' and nz16[7] == '1.600 ± 0.100' and nz16[9] == '1.50 / 2.50 |'
  assert nz4[0] == '| `cpu_hyperlstm256`' and nz4[9] == ' |'  # no rank for that row
