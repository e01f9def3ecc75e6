"""Collects finished runs into the README's result tables (mean ± spread over seeds).

    python -m experiments.results_table runs/ptb/*  [--metric bpc] [--paper lstm=1.312,...] [--json out]

Each argument is a workdir written by `launch.py`. Runs are grouped by config variant; for each group the
table gives the data source (e.g. CIFAR-10's 'jpeg-copy'), the parameter count, the number of seeds,
training steps, wall time (from the start of the run to its last training step, compile and evaluations
included) and the final validation and test metric of the
best checkpoint (the `final_valid/*`, `final_test/*` records of metrics.jsonl) as mean ± standard deviation
over seeds (population std; a single seed shows no spread), then every seed's value.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
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
  for r in records:
    for split in ('valid', 'test'):
      if f'final_{split}/{metric}' in r:
        final[split] = r[f'final_{split}/{metric}']
        final['best_step'] = r['step']
    if any(k.startswith('train/') for k in r):
      last_train = r
  if 'test' not in final or last_train is None:
    raise ValueError(f'{workdir}: no final test {metric} in metrics.jsonl; the run has not finished')
  return {
      'variant': config.get('variant', '?'), 'seed': config.get('seed', 0), 'params': info['param_count'],
      # Runs from before run_info.json recorded the source: the corpus / data set the config names.
      'data': info.get('data_source') or config.get('data', {}).get('name', ''),
      'steps': last_train['step'], 'wall_s': last_train['time'] - info['time'],
      'valid': final.get('valid', float('nan')), 'test': final['test'], 'best_step': final['best_step'],
      'workdir': workdir}


def _mean_std(values: list[float], scale: float, digits: int) -> str:
  mean = statistics.fmean(values) * scale
  if len(values) == 1:
    return f'{mean:.{digits}f}'
  return f'{mean:.{digits}f} ± {statistics.pstdev(values) * scale:.{digits}f}'


def table(runs: list[dict[str, Any]], metric: str, paper: dict[str, str] | None = None,
          percent: bool = False) -> str:
  """Markdown table, one row per variant in order of first appearance."""
  groups: dict[str, list[dict[str, Any]]] = collections.OrderedDict()
  for run in runs:
    groups.setdefault(run['variant'], []).append(run)
  scale, digits, unit = (100.0, 2, f'{metric} (%)') if percent else (1.0, 3, metric)
  head = ['variant', 'data', 'params', 'seeds', 'steps', 'wall (min)', f'valid {unit}', f'test {unit}',
          'test per seed']
  if paper:
    head.append('paper test')
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for variant, group in groups.items():
    group.sort(key=lambda r: r['seed'])
    steps = sorted({r['steps'] for r in group})
    data = ' / '.join(sorted({r['data'] for r in group}))
    row = [f'`{variant}`', data, f'{group[0]["params"]:,}', str(len(group)), '/'.join(map(str, steps)),
           _mean_std([r['wall_s'] / 60 for r in group], 1.0, 1),
           _mean_std([r['valid'] for r in group], scale, digits),
           _mean_std([r['test'] for r in group], scale, digits),
           ', '.join(f'{r["test"] * scale:.{digits}f}' for r in group)]
    if paper:
      row.append(paper.get(variant, ''))
    lines.append('| ' + ' | '.join(row) + ' |')
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdirs', nargs='+')
  parser.add_argument('--metric', default='bpc', help="metric name: 'bpc' (char LM) or 'error_rate'")
  parser.add_argument('--percent', action='store_true', help='show the metric x100 (error rates)')
  parser.add_argument('--paper', default='', help='variant=value,... shown in a "paper test" column')
  parser.add_argument('--json', default=None, help='also write every run summary to this JSON file')
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
  paper = dict(item.split('=', 1) for item in args.paper.split(',') if item) or None
  print(table(runs, args.metric, paper, args.percent))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(runs, f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main())
