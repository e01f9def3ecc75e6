"""Collects finished runs into the README's result tables (mean ± spread over seeds).

    python -m experiments.results_table runs/ptb/*  [--metric bpc] [--paper lstm=1.312,...] [--json out]
        [--group workdir] [--z-rank] [--extra test/chrf,newstest2014/bleu] [--digits 2]

Each argument is a workdir written by `launch.py`. Runs are grouped by config variant; for each group the
table gives the data source (e.g. CIFAR-10's 'jpeg-copy'), the parameter count, the number of seeds,
training steps, wall time (from the start of the run to its last training step, compile and evaluations
included) and the final validation and test metric of the
best checkpoint (the `final_valid/*`, `final_test/*` records of metrics.jsonl) as mean ± standard deviation
over seeds (population std; a single seed shows no spread), then every seed's value.
`--group workdir` groups by the workdir's name less its `_s<seed>` suffix instead of by the config variant
(for runs that differ only by command-line overrides). `--z-rank` adds the HyperLSTM's z effective rank
(experiments/z_rank.py: entropy effective rank of the composite maps ĥ -> d_h and ĥ -> d_x, mean over
layers, gates and seeds), read from each run's best checkpoint.
`--extra split/metric,...` adds a mean ± spread column for each other final record of the best checkpoint
(handwriting: `valid/nats_per_point,test/nats_per_point` beside `--metric nats_per_line`; translation:
`test/chrf,newstest2014/bleu,multi30k/bleu` beside `--metric bleu`, the extra test sets evaluated through
`eval.extra_test` and `eval.splits`); `--digits` sets the decimals of the metric columns.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import sys
from collections.abc import Sequence
from typing import Any


def read_run(workdir: str, metric: str) -> dict[str, Any]:
  """One finished run's summary; raises ValueError naming the workdir when it has not finished."""
  try:
    with open(os.path.join(workdir, 'config.json')) as f:
      config = json.load(f)
    with open(os.path.join(workdir, 'run_info.json')) as f:
      info = json.load(f)
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      records = [json.loads(line) for line in f if line.strip()]
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f'{workdir}: not a finished run ({e}); train it with launch.py first') from e
  final = {}
  last_train = None
  records_final: dict[str, float] = {}  # 'split/metric' -> value, every final record of the best step.
  for r in records:
    for key, value in r.items():
      if key.startswith('final_'):
        records_final[key[len('final_') :]] = value
    for split in ('valid', 'test'):
      if f'final_{split}/{metric}' in r:
        final[split] = r[f'final_{split}/{metric}']
        final['best_step'] = r['step']
    if any(k.startswith('train/') for k in r):
      last_train = r
  if 'test' not in final or last_train is None:
    raise ValueError(f'{workdir}: no final test {metric} in metrics.jsonl; the run has not finished')
  return {
    'variant': config.get('variant', '?'),
    'seed': config.get('seed', 0),
    'params': info['param_count'],
    # Runs from before run_info.json recorded the source: the corpus / data set the config names.
    'data': info.get('data_source') or config.get('data', {}).get('name', ''),
    'steps': last_train['step'],
    'wall_s': last_train['time'] - info['time'],
    'valid': final.get('valid', float('nan')),
    'test': final['test'],
    'best_step': final['best_step'],
    'final': records_final,
    'workdir': workdir,
  }


def _mean_std(values: list[float], scale: float, digits: int) -> str:
  mean = statistics.fmean(values) * scale
  if len(values) == 1:
    return f'{mean:.{digits}f}'
  return f'{mean:.{digits}f} ± {statistics.pstdev(values) * scale:.{digits}f}'


def _extra_column(group: list[dict[str, Any]], name: str, digits: int) -> str:
  values = [r['final'][name] for r in group if name in r.get('final', {})]
  if not values:
    return ''
  shown = _mean_std(values, 1.0, digits)
  return shown if len(values) == len(group) else f'{shown} ({len(values)} of {len(group)} seeds)'


def group_name(run: dict[str, Any], group_by: str = 'variant') -> str:
  """The row a run belongs to: its config variant, or ('workdir') its workdir name less `_s<seed>`."""
  if group_by == 'variant':
    return run['variant']
  if group_by == 'workdir':
    return re.sub(r'_s\d+$', '', os.path.basename(os.path.normpath(run['workdir'])))
  raise ValueError(f"group_by must be 'variant' or 'workdir', got {group_by!r}")


def table(
  runs: list[dict[str, Any]],
  metric: str,
  paper: dict[str, str] | None = None,
  percent: bool = False,
  group_by: str = 'variant',
  extra: Sequence[str] = (),
  digits: int | None = None,
) -> str:
  """Markdown table, one row per variant (or workdir group) in order of first appearance.

  extra: 'split/metric' names of further final records, one mean ± spread column each after the test
  column (a run without the record counts as missing: the column shows the seeds that have it, or '').

  Runs with a 'z_rank' entry ({'h': rank, 'x': rank}) add a last column 'z rank h / x' (mean over seeds).
  """
  groups: dict[str, list[dict[str, Any]]] = collections.OrderedDict()
  for run in runs:
    groups.setdefault(group_name(run, group_by), []).append(run)
  with_z = any('z_rank' in run for run in runs)
  scale, default_digits, unit = (100.0, 2, f'{metric} (%)') if percent else (1.0, 3, metric)
  digits = default_digits if digits is None else digits
  head = [
    'variant' if group_by == 'variant' else 'row',
    'data',
    'params',
    'seeds',
    'steps',
    'wall (min)',
    f'valid {unit}',
    f'test {unit}',
    *(name.replace('/', ' ') for name in extra),
    'test per seed',
  ]
  if paper:
    head.append('paper test')
  if with_z:
    head.append('z rank h / x')
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for variant, group in groups.items():
    group.sort(key=lambda r: r['seed'])
    steps = sorted({r['steps'] for r in group})
    data = ' / '.join(sorted({r['data'] for r in group}))
    row = [
      f'`{variant}`',
      data,
      f'{group[0]["params"]:,}',
      str(len(group)),
      '/'.join(map(str, steps)),
      _mean_std([r['wall_s'] / 60 for r in group], 1.0, 1),
      _mean_std([r['valid'] for r in group], scale, digits),
      _mean_std([r['test'] for r in group], scale, digits),
      *(_extra_column(group, name, digits) for name in extra),
      ', '.join(f'{r["test"] * scale:.{digits}f}' for r in group),
    ]
    if paper:
      row.append(paper.get(variant, ''))
    if with_z:
      ranked = [r['z_rank'] for r in group if 'z_rank' in r]
      row.append(
        ' / '.join(f'{statistics.fmean(z[s] for z in ranked):.2f}' for s in ('h', 'x')) if ranked else ''
      )
    lines.append('| ' + ' | '.join(row) + ' |')
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdirs', nargs='+')
  parser.add_argument(
    '--metric',
    default='bpc',
    help="metric name: 'bpc' (char LM), 'error_rate', 'nats_per_line' (handwriting), 'bleu' (translation)",
  )
  parser.add_argument(
    '--extra',
    default='',
    help="more columns, 'split/metric,...' of the final records, e.g. test/chrf,newstest2014/bleu",
  )
  parser.add_argument('--digits', type=int, default=None, help='decimals of the metric columns')
  parser.add_argument('--percent', action='store_true', help='show the metric x100 (error rates)')
  parser.add_argument('--paper', default='', help='variant=value,... shown in a "paper test" column')
  parser.add_argument('--json', default=None, help='also write every run summary to this JSON file')
  parser.add_argument(
    '--group',
    default='variant',
    choices=('variant', 'workdir'),
    help="rows by config variant, or by workdir name less '_s<seed>'",
  )
  parser.add_argument(
    '--z-rank',
    action='store_true',
    help="add the HyperLSTM's z effective rank (loads each run's best checkpoint)",
  )
  args = parser.parse_args(argv)
  runs, skipped = [], []
  for workdir in args.workdirs:
    try:
      runs.append(read_run(workdir, args.metric))
    except ValueError as e:
      skipped.append(str(e))
  for message in skipped:
    print(f'skipped {message}', file=sys.stderr)
  if not runs:
    print('error: no finished runs among the given workdirs', file=sys.stderr)
    return 1
  if args.z_rank:
    # Loads JAX and the checkpoints: only when asked.
    from experiments import z_rank

    for run in runs:
      try:
        mean = z_rank.workdir_ranks(run['workdir'])['mean']
      except (OSError, ValueError, RuntimeError) as e:
        print(f'no z rank for {run["workdir"]}: {e}', file=sys.stderr)
        continue
      run['z_rank'] = {s: mean[s]['composite_rank'] for s in ('h', 'x')}
  paper = dict(item.split('=', 1) for item in args.paper.split(',') if item) or None
  extra = [name for name in args.extra.split(',') if name]
  bad = [name for name in extra if name.count('/') != 1]
  if bad:
    print(f'error: --extra takes split/metric names, got {", ".join(bad)}; e.g. test/chrf', file=sys.stderr)
    return 2
  print(table(runs, args.metric, paper, args.percent, args.group, extra, args.digits))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(runs, f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main())
