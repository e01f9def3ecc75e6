"""Times one training step (forward, softmax loss, backward) of a one-layer character model; prints figures.

    python benchmarks/rnn_step.py --shapes=small,ptb --steps 5 [--json out.json] [--cells lstm,hyperlstm]
        [--impls fast,reference]

The model is the char LM's one layer as `hyper.sequence` runs it (the cell's `project_inputs` on all steps
at once, `nn.scan` over `step`, a dense softmax head), built here from the cell so that both forms of each
cell (`impl='fast'` and `impl='reference'`, see `hyper.cells`) can be timed. For each shape, cell and form:
tokens/s (median of --steps timed runs after one warm-up run; the cells' runs are
interleaved, one of each per round, so the ratios compare like with like), compile time, the
compiled step's memory (XLA memory_analysis: arguments + outputs + temporaries) and the growth of the
process's max RSS. Then, per form, the ratio HyperLSTM / LSTM tokens/s, and the GFLOP/s of the HyperLSTM
step's
matrix work (analytic count: every matmul of the forward pass, x3 for forward + backward) against a lone
jitted [B, H] x [H, 4H] matmul. Not a test: it prints numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import linen as nn  # noqa: E402

from hyper import cells  # noqa: E402

SHAPES = {
  # name: vocab, units, hyper units, N_z, steps (T), batch
  'ptb': dict(vocab=50, features=1000, hyper=128, nz=4, seq=100, batch=128),
  'small': dict(vocab=50, features=256, hyper=64, nz=8, seq=100, batch=32),
}
CELLS = ('lstm', 'ln_lstm', 'hyperlstm', 'ln_hyperlstm')


def matmul_flops(cell: str, s: dict) -> float:
  """Forward matmul FLOPs of one sequence batch (input projections are gathers: 0 FLOPs)."""
  b, t, h, hh, nz, v = s['batch'], s['seq'], s['features'], s['hyper'], s['nz'], s['vocab']
  per_step = 2 * b * h * 4 * h  # W_h h
  if 'hyper' in cell:
    per_step += 2 * b * (h + hh) * 4 * hh  # hyper LSTM on [x; h] (x rows gathered) and ĥ
    per_step += 2 * b * hh * 3 * 4 * nz + 2 * b * 3 * 4 * nz * h  # ĥ -> z, z -> d_h, d_x, b
  return t * per_step + 2 * b * t * h * v  # + softmax head


def make_cell(cell: str, impl: str, s: dict) -> nn.Module:
  common = dict(vocab_size=s['vocab'], impl=impl)
  if cell in ('lstm', 'ln_lstm'):
    return (cells.LSTMCell if cell == 'lstm' else cells.LayerNormLSTMCell)(s['features'], **common)
  return cells.HyperLSTMCell(
    s['features'],
    hyper_features=s['hyper'],
    embedding_size=s['nz'],
    layer_norm=cell == 'ln_hyperlstm',
    **common,
  )


class OneLayerLM(nn.Module):
  """tokens [B, T] -> logits [B, T, vocab]: one recurrent layer run as `hyper.sequence` runs it."""

  cell: nn.Module
  vocab: int

  @nn.compact
  def __call__(self, tokens):
    ids = tokens.T  # time-major [T, B]
    projected = self.cell.project_inputs(ids)  # all steps in one gather
    carry = self.cell.initialize_carry(None, ids.shape[1:])
    scan = nn.scan(
      lambda cell, c, p: cell.step(c, p, True)[:2],
      variable_broadcast='params',
      split_rngs={'params': False},
      in_axes=0,
      out_axes=0,
    )
    _, outputs = scan(self.cell, carry, projected)
    return nn.Dense(self.vocab, name='softmax')(outputs).swapaxes(0, 1)


def max_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def prepare_cell(cell: str, impl: str, s: dict) -> dict:
  """Compiles one cell's training step and runs it once; returns the compiled step and its figures."""
  model = OneLayerLM(make_cell(cell, impl, s), s['vocab'])
  key = jax.random.key(0)
  tokens = jax.random.randint(key, (s['batch'], s['seq'] + 1), 0, s['vocab'], jnp.int32)
  inputs, targets = tokens[:, :-1], tokens[:, 1:]
  params = nn.meta.unbox(jax.jit(model.init)(key, inputs)['params'])

  def loss_fn(p):
    logits = model.apply({'params': p}, inputs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

  step = jax.jit(jax.value_and_grad(loss_fn))
  rss0 = max_rss_mb()
  t0 = time.perf_counter()
  compiled = step.lower(params).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  mem_mb = None
  if mem is not None:
    mem_mb = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes) / 2**20
  jax.block_until_ready(compiled(params))  # warm-up
  return dict(
    cell=cell,
    impl=impl,
    key=f'{cell}/{impl}',
    run=lambda: jax.block_until_ready(compiled(params)),
    compile_s=compile_s,
    xla_memory_mb=mem_mb,
    rss_growth_mb=max_rss_mb() - rss0,
  )


def bench_cells(names: list[str], impls: list[str], s: dict, steps: int) -> list[dict]:
  """Times the cells' steps interleaved (one step of each cell per round, `steps` rounds), so that a
  slowdown of the machine during the run hits every cell alike and the ratios stay comparable."""
  prepared = [prepare_cell(cell, impl, s) for cell in names for impl in impls]
  times = {p['key']: [] for p in prepared}
  for _ in range(steps):
    for p in prepared:
      t0 = time.perf_counter()
      p['run']()
      times[p['key']].append(time.perf_counter() - t0)
  rows = []
  for p in prepared:
    med = statistics.median(times[p['key']])
    flops = 3 * matmul_flops(p['cell'], s)
    rows.append(
      dict(
        cell=p['cell'],
        impl=p['impl'],
        key=p['key'],
        step_s=med,
        tokens_per_s=s['batch'] * s['seq'] / med,
        compile_s=p['compile_s'],
        xla_memory_mb=p['xla_memory_mb'],
        rss_growth_mb=p['rss_growth_mb'],
        matmul_gflops=flops / med / 1e9,
      )
    )
  return rows


def lone_matmul_gflops(s: dict, steps: int) -> float:
  b, h = s['batch'], s['features']
  x = jax.random.normal(jax.random.key(1), (b, h))
  w = jax.random.normal(jax.random.key(2), (h, 4 * h))
  reps = 20
  # A chain of dependent matmuls in one jitted call, so dispatch overhead does not count.
  f = jax.jit(lambda x, w: jax.lax.fori_loop(0, reps, lambda i, y: jnp.tanh(y @ w)[:, :h], x))
  jax.block_until_ready(f(x, w))
  times = []
  for _ in range(max(steps, 3)):
    t0 = time.perf_counter()
    jax.block_until_ready(f(x, w))
    times.append(time.perf_counter() - t0)
  return reps * 2 * b * h * 4 * h / statistics.median(times) / 1e9


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--shapes', default='small', help='comma-separated: ' + ','.join(SHAPES))
  parser.add_argument('--cells', default=','.join(CELLS))
  parser.add_argument('--impls', default='fast,reference', help='forms of the cells: fast,reference')
  parser.add_argument('--steps', type=int, default=5, help='timed runs per cell (median reported)')
  parser.add_argument('--json', default=None, help='also write the results to this JSON file')
  args = parser.parse_args(argv)
  print(f'jax {jax.__version__} on {jax.devices()[0].device_kind} x{jax.device_count()}', flush=True)
  results = {}
  for name in args.shapes.split(','):
    s = SHAPES[name]
    print(f'\n== shape {name}: {s}', flush=True)
    print(
      f'{"cell/impl":<24}{"tokens/s":>11}{"step ms":>10}{"compile s":>11}{"XLA mem MB":>12}'
      f'{"RSS +MB":>9}{"mat GFLOP/s":>13}',
      flush=True,
    )
    rows = bench_cells(args.cells.split(','), args.impls.split(','), s, args.steps)
    for r in rows:
      mem = f'{r["xla_memory_mb"]:.0f}' if r['xla_memory_mb'] is not None else 'n/a'
      print(
        f'{r["key"]:<24}{r["tokens_per_s"]:>11.0f}{1e3 * r["step_s"]:>10.1f}{r["compile_s"]:>11.1f}'
        f'{mem:>12}{r["rss_growth_mb"]:>9.0f}{r["matmul_gflops"]:>13.1f}',
        flush=True,
      )
    by = {r['key']: r for r in rows}
    summary = {}
    for impl in args.impls.split(','):
      for hyper, base in (('hyperlstm', 'lstm'), ('ln_hyperlstm', 'ln_lstm')):
        h, b = f'{hyper}/{impl}', f'{base}/{impl}'
        if h in by and b in by:
          ratio = by[h]['tokens_per_s'] / by[b]['tokens_per_s']
          summary[f'{h} / {b} tokens/s'] = ratio
          print(f'{h} / {b} tokens/s ratio: {ratio:.2f} (target >= 0.8 for the fast form)')
    lone = lone_matmul_gflops(s, args.steps)
    summary['lone_matmul_gflops'] = lone
    print(
      f'lone jitted [{s["batch"]},{s["features"]}]x[{s["features"]},{4 * s["features"]}] matmul: '
      f'{lone:.1f} GFLOP/s'
    )
    for key, r in by.items():
      if r['cell'] in ('hyperlstm', 'ln_hyperlstm'):
        frac = r['matmul_gflops'] / lone
        summary[f'{key} matmul fraction'] = frac
        print(f'{key} matrix work: {r["matmul_gflops"]:.1f} GFLOP/s = {100 * frac:.0f}% of the lone matmul')
    results[name] = dict(shape=s, cells=rows, summary=summary)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)
  return results


if __name__ == '__main__':
  main()
