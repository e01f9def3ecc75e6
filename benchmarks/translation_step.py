"""Times the translation model (hyper.seq2seq.Seq2Seq): a training step (forward, loss, backward, Adam) in
source + target tokens/s, and beam search in sentences/s, for each cell; prints figures.

    python benchmarks/translation_step.py --size cpu --cells lstm,ln_lstm,hyperlstm,ln_hyperlstm \
        [--steps 3] [--beam 4] [--json out.json]

Sizes: 'cpu' (the configs' cpu_* rows: 128 units, 2 + 2 layers, 4k vocabulary, batches of 64 pairs of 32
subwords) and 'gnmt' (Table 6: 1024 units, 8 + 8 layers, 32k vocabulary, 128 pairs of 32; for an
accelerator). Median of --steps timed runs after one warm-up (compile) run; random ids, all of
full length (token counts are real tokens, no padding). Not a test: it prints numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import ml_collections
import optax

from configs import translation as translation_config
from experiments.tasks import translation
from hyper import seq2seq

SIZES = {
  'cpu': dict(variant='cpu_{cell}', batch=64, length=32, beam_batch=16),
  'gnmt': dict(variant='gnmt_{cell}', batch=128, length=32, beam_batch=32),
}


def config_for(size: str, cell: str) -> ml_collections.ConfigDict:
  base = 'ln_hyperlstm' if size == 'gnmt' and cell != 'lstm' else cell
  config = translation_config.get_config(SIZES[size]['variant'].format(cell=base))
  if size == 'gnmt' and cell != base:  # the paper has two GNMT rows; other cells at the same size
    config.model.cell.name = cell
  return config


def time_it(fn, steps: int) -> tuple[float, float]:
  t = time.perf_counter()
  jax.block_until_ready(fn())
  compile_s = time.perf_counter() - t
  runs = []
  for _ in range(steps):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    runs.append(time.perf_counter() - t)
  return statistics.median(runs), compile_s


def bench(size: str, cell: str, steps: int, beam: int) -> dict:
  config = config_for(size, cell)
  s = SIZES[size]
  task = translation.make_task(config, load_data=False)
  model, vocab = task.model, config.data.vocab_size
  key = jax.random.key(0)
  params, _ = jax.jit(task.init_variables)(key)
  b, n = s['batch'], s['length']
  ids = jax.random.randint(key, (b, n), 4, vocab, jnp.int32)
  batch = {
    'src': ids,
    'src_len': jnp.full((b,), n, jnp.int32),
    'tgt_in': ids,
    'tgt_out': ids,
    'tgt_mask': jnp.ones((b, n), jnp.float32),
  }
  tx = optax.adam(1e-3)
  opt = tx.init(params)

  @jax.jit
  def train_step(params, opt):
    grads = jax.grad(lambda p: task.loss_fn(p, {}, {}, batch, key, 0)[0])(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt

  step_s, compile_s = time_it(lambda: train_step(params, opt), steps)
  bb = s['beam_batch']
  decode = jax.jit(
    lambda p: seq2seq.beam_search_decode(
      model,
      {'params': p},
      ids[:bb],
      batch['src_len'][:bb],
      beam_size=beam,
      max_len=n + 5,
      bos_id=1,
      eos_id=2,
      alpha=0.6,
    )[0]
  )
  beam_s, beam_compile_s = time_it(lambda: decode(params), max(1, steps // 2))
  count = sum(x.size for x in jax.tree.leaves(params))
  return {
    'size': size,
    'cell': cell,
    'params': count,
    'tokens_per_s': 2 * b * n / step_s,
    'step_s': step_s,
    'compile_s': compile_s,
    'beam': beam,
    'beam_sentences_per_s': bb / beam_s,
    'beam_compile_s': beam_compile_s,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--size', default='cpu', choices=sorted(SIZES))
  parser.add_argument('--cells', default='lstm,ln_lstm,hyperlstm,ln_hyperlstm')
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--beam', type=int, default=4)
  parser.add_argument('--json', default='')
  args = parser.parse_args()
  print(f'jax {jax.__version__}, {jax.devices()[0].platform} x{jax.device_count()}, size {args.size}')
  rows = []
  for cell in args.cells.split(','):
    r = bench(args.size, cell, args.steps, args.beam)
    rows.append(r)
    print(
      f'{cell:>13}: {r["params"] / 1e6:7.2f}M params, train {r["tokens_per_s"]:9.0f} tokens/s '
      f'({r["step_s"] * 1e3:.0f} ms/step, compile {r["compile_s"]:.0f} s), beam {r["beam"]}: '
      f'{r["beam_sentences_per_s"]:.1f} sentences/s',
      flush=True,
    )
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(rows, f, indent=2)


if __name__ == '__main__':
  main()
