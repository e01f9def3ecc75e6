"""Points/s of the handwriting training step (model + mixture loss + clipped Adam), per cell and length.

`python -m benchmarks.handwriting_step --size=cpu --lengths=100,400,1600` prints, for each cell (LSTM,
LN LSTM, HyperLSTM, LN HyperLSTM) and window length T, the median time of a jitted training step on a
[batch, T, 3] window, points/s = batch * T / time, the rate relative to the cell's first length, and
the XLA temporary memory of the compiled step per time step. `--size=paper`: the section 4.3 sizes
(900 units, 1000 for the LN LSTM, hyper 128, batch 32); `--size=cpu`: 256 units, hyper 64, batch 32.
`--json=<path>` also writes the rows.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hyper import cells
from hyper.handwriting import HandwritingModel

SIZES = {
  'paper': {'lstm': 900, 'ln_lstm': 1000, 'hyperlstm': 900, 'ln_hyperlstm': 900, 'hyper': 128},
  'cpu': {'lstm': 256, 'ln_lstm': 256, 'hyperlstm': 256, 'ln_hyperlstm': 256, 'hyper': 64},
}


def make_cell(name: str, size: dict):
  units = size[name]
  if name == 'lstm':
    return cells.LSTMCell(units)
  if name == 'ln_lstm':
    return cells.LayerNormLSTMCell(units)
  return cells.HyperLSTMCell(units, hyper_features=size['hyper'], layer_norm=name == 'ln_hyperlstm')


def measure(name: str, size: dict, batch: int, length: int, repeats: int) -> dict:
  model = HandwritingModel(make_cell(name, size), num_mixtures=20)
  rng = np.random.default_rng(0)
  inputs = rng.normal(size=(batch, length + 1, 3)).astype(np.float32)
  inputs[..., 2] = rng.random((batch, length + 1)) < 0.05
  x, y = jnp.asarray(inputs[:, :-1]), jnp.asarray(inputs[:, 1:])
  mask = jnp.ones((batch, length), jnp.float32)
  reset = jnp.zeros((batch, length), bool).at[:, 0].set(True)
  params = model.init(jax.random.PRNGKey(0), x[:, :2])['params']
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
  opt_state = tx.init(params)
  carry = model.initialize_carry(batch)

  def step(params, opt_state, carry):
    def loss_fn(p):
      out, new_carry = model.apply({'params': p}, x, carry, reset=reset, mask=mask)
      return model.nll(out, y, mask).sum() / mask.sum(), new_carry

    (loss, new_carry), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, new_carry, loss

  jitted = jax.jit(step, donate_argnums=(0, 1))
  compiled = jitted.lower(params, opt_state, carry).compile()
  memory = compiled.memory_analysis()
  temp = getattr(memory, 'temp_size_in_bytes', 0) if memory is not None else 0
  params, opt_state, carry, loss = compiled(params, opt_state, carry)  # warm-up
  loss.block_until_ready()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    params, opt_state, carry, loss = compiled(params, opt_state, carry)
    loss.block_until_ready()
    times.append(time.perf_counter() - start)
  seconds = statistics.median(times)
  return {
    'cell': name,
    'units': size[name],
    'batch': batch,
    'length': length,
    'step_s': seconds,
    'points_per_s': batch * length / seconds,
    'temp_bytes': int(temp),
    'temp_bytes_per_step': temp / length,
  }


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--size', choices=sorted(SIZES), default='cpu')
  parser.add_argument('--cells', default='lstm,ln_lstm,hyperlstm,ln_hyperlstm')
  parser.add_argument('--lengths', default='100,200,400,800,1600')
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--json', default='')
  args = parser.parse_args(argv)
  size = SIZES[args.size]
  lengths = [int(t) for t in args.lengths.split(',')]
  print(
    f'# handwriting training step, size={args.size}, batch {args.batch}, jax {jax.__version__}, '
    f'{jax.devices()[0].platform} ({platform.processor() or platform.machine()})'
  )
  print(f'{"cell":<14}{"units":>6}{"T":>6}{"step s":>9}{"points/s":>11}{"vs T0":>7}{"XLA temp MB/step":>18}')
  rows = []
  for name in args.cells.split(','):
    first = None
    for length in lengths:
      row = measure(name, size, args.batch, length, args.repeats)
      first = first or row['points_per_s']
      row['relative_to_first_length'] = row['points_per_s'] / first
      rows.append(row)
      print(
        f'{name:<14}{row["units"]:>6}{length:>6}{row["step_s"]:>9.3f}{row["points_per_s"]:>11,.0f}'
        f'{row["relative_to_first_length"]:>7.2f}{row["temp_bytes_per_step"] / 1e6:>18.3f}',
        flush=True,
      )
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(rows, f, indent=1)
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
