"""experiments/results_table.py for the handwriting and translation families: several metrics and splits
of the best checkpoint (`--extra split/metric`), as their README tables need."""

import json
import os

from experiments import results_table


def _write_run(root, name, seed, finals: dict[str, float], variant='cpu_ln_hyperlstm'):
  workdir = os.path.join(root, name)
  os.makedirs(workdir)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    json.dump({'variant': variant, 'seed': seed}, f)
  with open(os.path.join(workdir, 'run_info.json'), 'w') as f:
    json.dump({'param_count': 8_910_000, 'time': 0.0, 'data_source': 'tatoeba en->fr'}, f)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    f.write(json.dumps({'step': 1200, 'time': 600.0, 'train/loss': 3.0}) + '\n')
    for split in ('valid', 'test', 'newstest2014', 'multi30k'):
      record = {k.split('/')[1]: v for k, v in finals.items() if k.startswith(split + '/')}
      if record:
        f.write(json.dumps({'step': 1000, **{f'final_{split}/{k}': v for k, v in record.items()}}) + '\n')
  return workdir


def test_extra_columns_give_mean_and_spread_of_other_splits_and_metrics(tmp_path, capsys):
  finals = [
    {'valid/bleu': 10.0, 'test/bleu': 9.0, 'test/chrf': 30.0, 'newstest2014/bleu': 1.0, 'multi30k/bleu': 2.0},
    {
      'valid/bleu': 12.0,
      'test/bleu': 11.0,
      'test/chrf': 34.0,
      'newstest2014/bleu': 2.0,
      'multi30k/bleu': 4.0,
    },
    {'valid/bleu': 14.0, 'test/bleu': 13.0, 'test/chrf': 38.0, 'newstest2014/bleu': 3.0},  # no multi30k
  ]
  dirs = [_write_run(tmp_path, f'cpu_ln_hyperlstm_b1200_s{s}', s, f) for s, f in enumerate(finals)]
  code = results_table.main(
    [
      *dirs,
      '--metric',
      'bleu',
      '--group',
      'workdir',
      '--digits',
      '2',
      '--extra',
      'test/chrf,newstest2014/bleu,multi30k/bleu',
    ]
  )
  assert code == 0
  lines = capsys.readouterr().out.splitlines()
  head = [c.strip() for c in lines[0].strip('|').split('|')]
  row = [c.strip() for c in lines[2].strip('|').split('|')]
  assert head[6:11] == ['valid bleu', 'test bleu', 'test chrf', 'newstest2014 bleu', 'multi30k bleu']
  assert row[0] == '`cpu_ln_hyperlstm_b1200`' and row[3] == '3'
  # Population std over the 3 seeds: bleu 11 ± 1.63, chrF 34 ± 3.27; multi30k only in 2 of 3 runs.
  assert row[6:11] == [
    '12.00 ± 1.63',
    '11.00 ± 1.63',
    '34.00 ± 3.27',
    '2.00 ± 0.82',
    '3.00 ± 1.00 (2 of 3 seeds)',
  ]
  assert row[11] == '9.00, 11.00, 13.00'


def test_handwriting_nats_per_line_and_per_point(tmp_path, capsys):
  finals = {
    'valid/nats_per_line': -812.5,
    'test/nats_per_line': -640.25,
    'valid/nats_per_point': -1.25,
    'test/nats_per_point': -1.125,
  }
  workdir = _write_run(tmp_path, 'cpu_lstm256_s0', 0, finals, variant='cpu_lstm256')
  assert (
    results_table.main(
      [workdir, '--metric', 'nats_per_line', '--extra', 'valid/nats_per_point,test/nats_per_point']
    )
    == 0
  )
  row = [c.strip() for c in capsys.readouterr().out.splitlines()[2].strip('|').split('|')]
  assert row[6:10] == ['-812.500', '-640.250', '-1.250', '-1.125']
  assert results_table.main([workdir, '--metric', 'nats_per_line', '--extra', 'nats_per_point']) == 2
  assert 'split/metric' in capsys.readouterr().err
