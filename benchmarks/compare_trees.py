"""Times one training step of the character model from several versions of `hyper/`, in one process.

    python benchmarks/compare_trees.py --trees 33aec4c,7d7b89a,HEAD --cells lstm,hyperlstm [--steps 5]

Each tree is a git revision (its `hyper/` is extracted with `git archive`) or a directory holding a
`hyper/` package. Every (tree, cell) step is compiled, then the steps are run interleaved, one of each per
round, so a slowdown of the machine hits all alike; printed: ms per time step (median and min over the
rounds) and the loss, which must agree across trees. The shape is the paper's PTB shape (vocab 50,
1000 units, hyper 128, N_z 4, T 100, batch 128) unless overridden. Not a test: it prints numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import optax

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_char_lm(tree_dir: str):
  """`hyper.char_lm.CharLM` imported from `tree_dir` (any previously imported `hyper` is dropped).

  Trees before the cells-as-values redesign take `CharLM(cell='<name>', features=...)`; later ones a cell
  module: the returned function builds the model either way."""
  for name in [m for m in sys.modules if m == 'hyper' or m.startswith('hyper.')]:
    del sys.modules[name]
  sys.path.insert(0, tree_dir)
  try:
    import hyper.cells
    import hyper.char_lm

    char_lm, cells = hyper.char_lm.CharLM, hyper.cells
    if 'features' in char_lm.__dataclass_fields__:  # The old API: the cell by name.
      return char_lm

    def new_api(vocab_size, cell, features, hyper_features, embedding_size):
      kinds = {
        'lstm': (cells.LSTMCell, {}),
        'ln_lstm': (cells.LayerNormLSTMCell, {}),
        'hyperlstm': (cells.HyperLSTMCell, {'layer_norm': False}),
        'ln_hyperlstm': (cells.HyperLSTMCell, {'layer_norm': True}),
      }
      cls, extra = kinds[cell]
      if cls is cells.HyperLSTMCell:
        extra = dict(extra, hyper_features=hyper_features, embedding_size=embedding_size)
      return char_lm(vocab_size=vocab_size, cell=cls(features, **extra))

    return new_api
  finally:
    sys.path.pop(0)


def tree_dir(tree: str, scratch: str) -> str:
  if os.path.isdir(os.path.join(tree, 'hyper')):
    return os.path.abspath(tree)
  out = os.path.join(scratch, tree.replace('/', '_'))
  os.makedirs(out)
  archive = subprocess.run(['git', '-C', REPO, 'archive', tree, 'hyper'], check=True, capture_output=True)
  subprocess.run(['tar', '-x', '-C', out], input=archive.stdout, check=True)
  return out


def build_step(char_lm, cell: str, a):
  model = char_lm(
    vocab_size=a.vocab, cell=cell, features=a.features, hyper_features=a.hyper, embedding_size=a.nz
  )
  tokens = jax.random.randint(jax.random.key(0), (a.batch, a.seq + 1), 0, a.vocab)
  params = model.init(jax.random.key(0), tokens[:, :-1])['params']

  def loss_fn(p):
    logits, _ = model.apply({'params': p}, tokens[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

  step = jax.jit(jax.value_and_grad(loss_fn)).lower(params).compile()
  loss = float(jax.block_until_ready(step(params))[0])
  return (lambda: jax.block_until_ready(step(params))), loss


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--trees', required=True, help='comma-separated git revisions or directories')
  p.add_argument('--cells', default='lstm,hyperlstm')
  p.add_argument('--steps', type=int, default=5, help='timed rounds (median and min reported)')
  for name, default in (
    ('vocab', 50),
    ('features', 1000),
    ('hyper', 128),
    ('nz', 4),
    ('seq', 100),
    ('batch', 128),
  ):
    p.add_argument(f'--{name}', type=int, default=default)
  a = p.parse_args(argv)
  runs = {}
  with tempfile.TemporaryDirectory() as scratch:
    for tree in a.trees.split(','):
      char_lm = load_char_lm(tree_dir(tree, scratch))
      for cell in a.cells.split(','):
        runs[(tree, cell)] = build_step(char_lm, cell, a)
  times = {k: [] for k in runs}
  for _ in range(a.steps):
    for k, (run, _) in runs.items():
      t0 = time.perf_counter()
      run()
      times[k].append(time.perf_counter() - t0)
  print(f'jax {jax.__version__}, {jax.devices()[0].device_kind}; ms per time step over {a.steps} rounds')
  for (tree, cell), (_, loss) in runs.items():
    t = times[(tree, cell)]
    print(
      f'{tree:>12} {cell:<14} median {1e3 * statistics.median(t) / a.seq:7.2f}  '
      f'min {1e3 * min(t) / a.seq:7.2f}  loss {loss:.6f}',
      flush=True,
    )


if __name__ == '__main__':
  main()
