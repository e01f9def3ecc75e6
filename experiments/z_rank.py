"""How many of the N_z directions of a trained HyperLSTM carry signal (issue 15).

    python -m experiments.z_rank runs/ptb/cpu_ln_hyperlstm256_nz16_s0 ...  [--json out.json]

Per layer and per gate g, the HyperLSTM (eq. 5-8, A.2.2) maps the hyper state ĥ to the weight scalings by
    z_h = W_ĥh ĥ + b_ĥh   (`z_h_kernel[:, g, :]`, [hyper, N_z]),
    d_h = W_hz z_h         (`scale_h[g]`, [N_z, units]),
and likewise z_x, d_x (`z_x_kernel`, `scale_x`) and the generated bias (`z_b_kernel`, `bias_projection`,
named `bias_z` in older checkpoints; its W_ĥb is random at init in every variant, so it is the control).
For each of these matrices, and for the composite W_ĥh W_hz ([hyper, units], the map from ĥ to d_h
whose rank is what reaches the main LSTM), this module reports its singular values, the entropy
effective rank of Roy & Vetterli (2007),
exp(-Σ p_i log p_i) with p_i = s_i / Σ s_j, and the number of singular values above 1% of the largest.
With the reference init (A.2.3) the N_z columns of W_ĥh, W_ĥx and the N_z rows of W_hz, W_xz stay equal
(`hyper/cells.py` z_initializers), so every one of these ranks is 1 whatever N_z is; `symmetry_gap` is the
max over coordinate pairs (n, m) of max |column_n - column_m| (rows for W_hz), relative to the matrix's
largest entry, which is float round-off in that case.

The CLI prints one line per workdir: N_z, then for h, x and b the entropy effective rank of the composite
map, of the embedding W_ĥ and of the projection W_z (mean over layers and gates) and the largest relative
symmetry gap. `summarize(params)` gives the same numbers to other tools (experiments/results_table.py).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import sys
from typing import Any

import numpy as np

GATES = ('i', 'j', 'f', 'o')  # Gate order of hyper/cells.py (input, candidate, forget, output).
SOURCES = {
  'h': ('z_h_kernel', 'scale_h'),
  'x': ('z_x_kernel', 'scale_x'),
  'b': ('z_b_kernel', 'bias_projection'),
}


def singular_values(matrix: np.ndarray) -> np.ndarray:
  """Singular values in descending order (float64)."""
  return np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)


def entropy_rank(s: np.ndarray) -> float:
  """Roy & Vetterli's effective rank: exp of the entropy of the normalised singular values (1 .. len(s))."""
  s = np.asarray(s, np.float64)
  total = s.sum()
  if total <= 0.0:
    return 0.0
  p = s[s > 0] / total
  return float(np.exp(-(p * np.log(p)).sum()))


def count_above(s: np.ndarray, fraction: float = 0.01) -> int:
  """Number of singular values above `fraction` of the largest."""
  s = np.asarray(s, np.float64)
  return int((s > fraction * s.max()).sum()) if s.size and s.max() > 0 else 0


def symmetry_gap(matrix: np.ndarray, axis: int) -> float:
  """max over coordinate pairs (n, m) along `axis` of max |slice_n - slice_m|, relative to max |matrix|.

  axis=-1 compares the columns of W_ĥ [hyper, N_z], axis=0 the rows of W_z [N_z, units].
  """
  m = np.moveaxis(np.asarray(matrix, np.float64), axis, 0).reshape(matrix.shape[axis], -1)
  gap = (m.max(axis=0) - m.min(axis=0)).max()  # The widest pair, entry by entry.
  scale = np.abs(m).max()
  return float(gap / scale) if scale > 0 else 0.0


def _stats(matrix: np.ndarray) -> dict[str, Any]:
  s = singular_values(matrix)
  return {'singular_values': s.tolist(), 'entropy_rank': entropy_rank(s), 'above_1pct': count_above(s)}


def hyper_layers(params: Any) -> dict[str, dict[str, np.ndarray]]:
  """{'rnn/layer_0': {'z_h_kernel': ..., ...}, ...}: every sub-tree holding a HyperLSTM's z parameters."""
  found = {}

  def walk(tree, path):
    if not hasattr(tree, 'keys'):
      return
    if 'bias_z' in tree and 'bias_projection' not in tree:  # Checkpoints written before the rename.
      tree = {('bias_projection' if k == 'bias_z' else k): v for k, v in tree.items()}
    if all(name in tree for pair in SOURCES.values() for name in pair):
      found['/'.join(path)] = {k: np.asarray(getattr(v, 'value', v)) for k, v in tree.items()}
      return
    for key in tree:
      walk(tree[key], path + [str(key)])

  walk(params, [])
  return found


def layer_ranks(layer: dict[str, np.ndarray]) -> dict[str, Any]:
  """Per source (h, x, b) and gate: stats of W_ĥ [hyper, N_z], W_z [N_z, units] and W_ĥ W_z [hyper, units]."""
  out = {}
  for source, (embed_name, proj_name) in SOURCES.items():
    embed, proj = layer[embed_name], layer[proj_name]  # [hyper, 4, N_z], [4, N_z, units]
    out[source] = {}
    for g, gate in enumerate(GATES):
      e, p = embed[:, g, :], proj[g]
      out[source][gate] = {
        'embedding': {**_stats(e), 'symmetry_gap': symmetry_gap(e, -1)},
        'projection': {**_stats(p), 'symmetry_gap': symmetry_gap(p, 0)},
        'composite': _stats(e @ p),
      }
  return out


def summarize(params: Any) -> dict[str, Any]:
  """Ranks of every HyperLSTM layer in `params`, plus means over layers and gates per source.

  Returns {'nz': N_z, 'layers': {name: layer_ranks(...)}, 'mean': {source: {'composite_rank',
  'embedding_rank', 'projection_rank', 'composite_above_1pct', 'symmetry_gap' (max over layers, gates and
  both matrices)}}}. Raises ValueError when `params` holds no HyperLSTM.
  """
  layers = hyper_layers(params)
  if not layers:
    raise ValueError(
      'no HyperLSTM parameters (z_h_kernel, scale_h, ...) in these params; '
      'z ranks apply to hyperlstm / ln_hyperlstm models only'
    )
  per_layer = {name: layer_ranks(layer) for name, layer in layers.items()}
  nz = next(iter(layers.values()))['scale_h'].shape[1]
  mean = {}
  for source in SOURCES:
    gates = [per_layer[name][source][gate] for name in per_layer for gate in GATES]
    mean[source] = {
      'composite_rank': statistics.fmean(g['composite']['entropy_rank'] for g in gates),
      'embedding_rank': statistics.fmean(g['embedding']['entropy_rank'] for g in gates),
      'projection_rank': statistics.fmean(g['projection']['entropy_rank'] for g in gates),
      'composite_above_1pct': statistics.fmean(g['composite']['above_1pct'] for g in gates),
      'symmetry_gap': max(
        max(g['embedding']['symmetry_gap'], g['projection']['symmetry_gap']) for g in gates
      ),
    }
  return {'nz': int(nz), 'layers': per_layer, 'mean': mean}


def workdir_ranks(workdir: str, checkpoint: str = 'best') -> dict[str, Any]:
  """`summarize` of a launch.py workdir's checkpoint, with its variant, seed and z_init."""
  # Imported here: JAX and the models are only needed to read checkpoints.
  from experiments import trainer

  config, params = trainer.load(workdir, checkpoint)
  result = summarize(params)
  result.update(
    workdir=workdir,
    variant=config.get('variant', ''),
    seed=config.get('seed', 0),
    # model.cell.z_init since the cells became config values; model.z_init in runs from before.
    z_init=config.model.get('cell', {}).get('z_init') or config.model.get('z_init', 'reference'),
  )
  return result


def line(result: dict[str, Any]) -> str:
  """One text line: workdir, N_z, z_init, then per source composite/embedding/projection ranks and gap."""
  parts = [result.get('workdir', ''), f'nz={result["nz"]}', f'z_init={result.get("z_init", "?")}']
  for source, m in result['mean'].items():
    parts.append(
      f'{source}: rank {m["composite_rank"]:.2f} (emb {m["embedding_rank"]:.2f}, '
      f'proj {m["projection_rank"]:.2f}, >1% {m["composite_above_1pct"]:.1f}) '
      f'gap {m["symmetry_gap"]:.1e}'
    )
  return '  '.join(parts)


def row_table(results: list[dict[str, Any]]) -> str:
  """Markdown table, one row per workdir name less `_s<seed>`: N_z, seeds, and per source (h, x, b) the
  entropy effective rank of the composite map per gate i/j/f/o (mean over seeds and layers), then the
  largest relative symmetry gap of W_ĥh, W_hz (h) over seeds."""
  groups: dict[str, list[dict[str, Any]]] = collections.OrderedDict()
  for r in results:
    groups.setdefault(re.sub(r'_s\d+$', '', os.path.basename(os.path.normpath(r['workdir']))), []).append(r)
  head = ['row', 'N_z', 'seeds'] + [f'{s} rank i/j/f/o' for s in SOURCES] + ['h gap', 'x gap']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for row, group in groups.items():
    cells = [f'`{row}`', str(group[0]['nz']), str(len(group))]
    for source in SOURCES:
      ranks = [
        [layer[source][g]['composite']['entropy_rank'] for r in group for layer in r['layers'].values()]
        for g in GATES
      ]
      cells.append('/'.join(f'{statistics.fmean(per_gate):.2f}' for per_gate in ranks))
    cells += [f'{max(r["mean"][s]["symmetry_gap"] for r in group):.0e}' for s in ('h', 'x')]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdirs', nargs='+')
  parser.add_argument('--checkpoint', default='best', help="'best' or 'latest'")
  parser.add_argument('--json', default=None, help='also write every result (singular values included) here')
  parser.add_argument(
    '--rows',
    action='store_true',
    help="then print a table per row (workdir name less '_s<seed>'), per gate, mean over seeds",
  )
  args = parser.parse_args(argv)
  results = []
  for workdir in args.workdirs:
    try:
      result = workdir_ranks(workdir, args.checkpoint)
    except (OSError, ValueError, RuntimeError) as e:  # RuntimeError: CheckpointError.
      print(f'skipped {workdir}: {e}', file=sys.stderr)
      continue
    results.append(result)
    print(line(result), flush=True)
  if args.rows and results:
    print(row_table(results))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)
  return 0 if results else 1


if __name__ == '__main__':
  sys.exit(main())
