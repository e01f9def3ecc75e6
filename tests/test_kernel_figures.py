"""Tests for experiments/kernel_figures.py: PNG files of kernel grids (Figures 2, 12, 13)."""

import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import kernel_figures as kf


def _png_size(path):
  with open(path, 'rb') as f:
    head = f.read(24)
  assert head[:8] == b'\x89PNG\r\n\x1a\n' and head[12:16] == b'IHDR'
  return struct.unpack('>II', head[16:24])  # width, height


def test_plot_kernel_grid_png_scales_with_kernel_count(tmp_path):
  rng = np.random.default_rng(0)
  small = kf.plot_kernel_grid(
    rng.normal(size=(3, 3, 16, 16)), rng.normal(size=(3, 3, 16, 16)), str(tmp_path / 'a' / 'k16.png')
  )
  large = kf.plot_kernel_grid(
    rng.normal(size=(3, 3, 32, 32)),
    rng.normal(size=(3, 3, 32, 32)),
    str(tmp_path / 'k32.png'),
    titles=('left', 'right'),
  )
  (w16, h16), (w32, h32) = _png_size(small), _png_size(large)
  assert (tmp_path / 'a' / 'k16.png').stat().st_size > 1000
  assert 1.7 < w32 / w16 < 2.3 and 1.5 < h32 / h16 < 2.3  # twice the channels: about twice the size
  assert w16 > h16  # two grids side by side


def test_kernel_mosaic_places_each_tile():
  kernel = np.zeros((3, 3, 2, 4), np.float32)
  kernel[0, 2, 1, 3] = 5.0  # input channel 1, output channel 3, top-right tap
  kernel[1, 1, 0, 0] = -2.0
  mosaic = kf.kernel_mosaic(kernel)
  assert mosaic.shape == (2 * 4 - 1, 4 * 4 - 1)
  assert mosaic[4 + 0, 12 + 2] == 1.0  # max of its own tile -> white
  assert mosaic[1, 1] == 0.0  # most negative of its tile -> black
  assert mosaic[4 + 1, 4 + 1] == 0.5  # an all-zero tile is mid-grey
  assert np.isnan(mosaic[3]).all() and np.isnan(mosaic[:, 3]).all()  # gaps between rows / columns


def test_figures_from_initialised_hypernetwork(tmp_path):
  """Kernels the WRN hypernetwork generates at init (sec. 4.1: 16x16x3x3 tiles from N_z = 64), beside
  He-normal kernels of the same shapes; paths come from the real HyperWideResNet parameter tree."""
  convnets = pytest.importorskip('hyper.convnets')
  static = pytest.importorskip('hyper.static')
  x_shape = (1, 32, 32, 3)
  hypernetwork = convnets.HyperWideResNet(depth=10, width=1).hypernetwork(x_shape)
  # Shapes only (no compilation): the generated main-network tree holds the kernels the CLI would draw.
  hyper_shapes = jax.eval_shape(hypernetwork.init, jax.random.key(0))
  main_shapes = jax.eval_shape(hypernetwork.apply, hyper_shapes)
  found = {
    (n_in, n_out): [p for p, _ in kf.conv_kernels(main_shapes, n_in, n_out)]
    for n_in, n_out in kf.DEFAULT_GRIDS
  }
  assert found[(16, 16)][0] == 'stage2_block0/conv_a/kernel' and found[(32, 32)]
  # Real generated values: one 16x16 tile and a 2x2 grid of tiles (a 32x32 kernel), eq. 1-2.
  generator = static.init_generator(jax.random.key(1), convnets.WRN_BASIC_SHAPE, convnets.WRN_EMBEDDING_SIZE)
  z = jax.random.normal(jax.random.key(2), (5, convnets.WRN_EMBEDDING_SIZE))
  tiles = np.asarray(static.generate_kernels(generator, z, convnets.WRN_BASIC_SHAPE))  # [5,3,3,16,16]
  big = np.asarray(static.tile_kernels(jnp.asarray(tiles[1:]).reshape(2, 2, 3, 3, 16, 16)))
  rng = np.random.default_rng(0)
  normal = {
    'stage2_block0': {'conv_a': {'kernel': rng.normal(0, 0.1, (3, 3, 16, 16))}},
    'stage3_block0': {'conv_b': {'kernel': rng.normal(0, 0.1, (3, 3, 32, 32))}},
  }
  generated = {
    'stage2_block0': {'conv_a': {'kernel': tiles[0]}},
    'stage3_block0': {'conv_b': {'kernel': big}},
  }
  paths = kf.write_kernel_figures(normal, generated, str(tmp_path))
  names = sorted(p.rsplit('/', 1)[1] for p in paths)
  assert names == ['kernels_16x16x3x3.png', 'kernels_32x32x3x3.png']
  sizes = {name: _png_size(str(tmp_path / name)) for name in names}
  assert sizes['kernels_32x32x3x3.png'][0] > 1.7 * sizes['kernels_16x16x3x3.png'][0]
