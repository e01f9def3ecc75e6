"""Step time of a normal vs a hypernetized Wide ResNet (forward + backward + SGD update, jitted).

Prints ms/step, images/s and the hyper/normal ratio, plus how many times the kernel generator is traced
into one step (1: it runs once per step on all tiles, not per layer or per example) and its own cost.

  python benchmarks/wrn_step.py                       # WRN 40-1, batch 128, a few steps, CPU is fine
  python benchmarks/wrn_step.py --widths 1 2 --batch 32 --steps 3 --json /tmp/wrn_step.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import hyper.static as static  # noqa: E402
from hyper.convnets import HyperWideResNet, WideResNet  # noqa: E402


def make_step(model, tx):
  def loss_fn(params, batch_stats, images, labels):
    logits, updates = model.apply(
      {'params': params, 'batch_stats': batch_stats}, images, train=True, mutable=['batch_stats']
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, updates['batch_stats']

  def step(state, images, labels):
    params, batch_stats, opt_state = state
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params, batch_stats, images, labels
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

  return step


def count_generator_traces(step, state, images, labels) -> int:
  """How many times generate_kernels is called while tracing one step (forward and backward)."""
  calls = []
  real = static.generate_kernels
  static.generate_kernels = lambda *a, **k: calls.append(1) or real(*a, **k)
  try:
    jax.eval_shape(lambda *a: step(*a), state, images, labels)  # a fresh function: really traced
  finally:
    static.generate_kernels = real
  return len(calls)


def bench(model, images, labels, steps: int, warmup: int):
  tx = optax.sgd(0.1, momentum=0.9, nesterov=True)
  variables = jax.jit(lambda k: model.init({'params': k}, images, train=False))(jax.random.key(0))
  params, batch_stats = variables['params'], variables['batch_stats']
  raw_step = make_step(model, tx)
  state = (params, batch_stats, tx.init(params))
  n_gen = count_generator_traces(raw_step, state, images, labels)
  step = jax.jit(raw_step, donate_argnums=0)
  t0 = time.perf_counter()
  for _ in range(warmup):
    state, loss = step(state, images, labels)
  jax.block_until_ready(loss)
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(steps):
    state, loss = step(state, images, labels)
  jax.block_until_ready(loss)
  ms = (time.perf_counter() - t0) / steps * 1e3
  n_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
  return {
    'ms_per_step': ms,
    'images_per_s': images.shape[0] / ms * 1e3,
    'params': n_params,
    'compile_and_warmup_s': compile_s,
    'generator_calls_per_step': n_gen,
  }


def bench_generator(model, images, steps: int) -> float:
  """ms for the generator alone (all tiles of all kernels -> the main network's params)."""
  variables = jax.jit(lambda k: model.init({'params': k}, images, train=False))(jax.random.key(0))
  hn = model.hypernetwork(images.shape)
  gen = jax.jit(hn.apply)
  jax.block_until_ready(gen(variables['params']))
  t0 = time.perf_counter()
  for _ in range(steps):
    out = gen(variables['params'])
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / steps * 1e3


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--steps', type=int, default=5, help='timed steps (after warmup)')
  parser.add_argument('--warmup', type=int, default=1, help='untimed steps (the first one compiles)')
  parser.add_argument('--depth', type=int, default=40)
  parser.add_argument('--widths', type=int, nargs='+', default=[1], help='e.g. --widths 1 2 for 40-2 too')
  parser.add_argument('--json', type=str, default=None, help='write the results here')
  args = parser.parse_args(argv)

  rng = jax.random.key(0)
  images = jax.random.uniform(rng, (args.batch, 32, 32, 3), jnp.float32)
  labels = jax.random.randint(jax.random.fold_in(rng, 1), (args.batch,), 0, 10)
  print(f'devices: {jax.devices()}  batch {args.batch}  timed steps {args.steps}')
  results = []
  for width in args.widths:
    normal = bench(WideResNet(args.depth, width), images, labels, args.steps, args.warmup)
    hyper_model = HyperWideResNet(args.depth, width)
    hyper = bench(hyper_model, images, labels, args.steps, args.warmup)
    hyper['generator_ms'] = bench_generator(hyper_model, images, max(args.steps, 3))
    row = {
      'model': f'WRN {args.depth}-{width}',
      'batch': args.batch,
      'normal': normal,
      'hyper': hyper,
      'hyper_over_normal_time': hyper['ms_per_step'] / normal['ms_per_step'],
    }
    results.append(row)
    for kind, r in (('normal', normal), ('hyper', hyper)):
      extra = (
        f'  generator calls/step {r["generator_calls_per_step"]}, generator alone {r["generator_ms"]:.1f} ms'
        if kind == 'hyper'
        else ''
      )
      print(
        f'{row["model"]:>9} {kind:>6}: {r["params"]:>9,d} params  {r["ms_per_step"]:8.1f} ms/step  '
        f'{r["images_per_s"]:8.1f} images/s  (compile+warmup {r["compile_and_warmup_s"]:.1f} s)'
        f'{extra}'
      )
    print(f'{row["model"]:>9}  hyper/normal step time: {row["hyper_over_normal_time"]:.3f}')
  if args.json:
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f'wrote {args.json}')
  return results


if __name__ == '__main__':
  main()
