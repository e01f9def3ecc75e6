"""XLA CPU: the 4 gates' nonlinearities of two scanned inputs, laid out [T, B, 4, H] or as 4 [T, B, H] arrays.

    python benchmarks/gate_layout.py [--seq 20 --batch 128 --units 1000]

The reason `HyperLSTMCell.project_inputs` hands W_x x to the scan as one array per gate: a fusion that
reads several gate slices of one scanned array compiles to much slower code on CPU. Prints ms per step of
each layout (median of 7 runs). Not a test: it prints numbers.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp


def gates(i, j, f, o):
  return jnp.tanh(i) * jax.nn.sigmoid(j) + jax.nn.sigmoid(f) * jnp.tanh(o)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--seq', type=int, default=20)
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--units', type=int, default=1000)
  a = p.parse_args(argv)
  k1, k2 = jax.random.split(jax.random.key(0))
  shape = (a.seq, a.batch, 4, a.units)
  xa, xb = jax.random.normal(k1, shape), jax.random.normal(k2, shape)
  split = lambda x: tuple(x[:, :, g] for g in range(4))  # noqa: E731
  zero = jnp.zeros((a.batch, a.units))

  def stacked(xa, xb):
    body = lambda c, x: (c + gates(*[x[0][:, g] + x[1][:, g] for g in range(4)]), None)  # noqa: E731
    return jax.lax.scan(body, zero, (xa, xb))[0]

  def per_gate(xa, xb):
    body = lambda c, x: (c + gates(*[x[0][g] + x[1][g] for g in range(4)]), None)  # noqa: E731
    return jax.lax.scan(body, zero, (xa, xb))[0]

  cases = {
    '[T, B, 4, H]': (jax.jit(stacked), (xa, xb)),
    '4 x [T, B, H]': (jax.jit(per_gate), (split(xa), split(xb))),
  }
  for name, (f, args) in cases.items():
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(7):
      t0 = time.perf_counter()
      jax.block_until_ready(f(*args))
      times.append(time.perf_counter() - t0)
    print(f'{name:<14} {1e3 * statistics.median(times) / a.seq:.3f} ms per step')


if __name__ == '__main__':
  main()
