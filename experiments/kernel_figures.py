"""Kernel pictures of the paper's Figures 2, 12 and 13: a trained normal network's conv kernels beside
the ones its static hypernetwork generates (e.g. 16x16x3x3 and 32x32x3x3 kernels of a Wide ResNet).

  python -m experiments.kernel_figures --normal_workdir=runs/wrn --hyper_workdir=runs/hyper_wrn --out=figs
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from etils import epath

# Kernel grids (N_in x N_out) drawn by the CLI: Fig. 2 / 12 show 16x16, Fig. 13 32x32 (of 3x3 kernels).
DEFAULT_GRIDS = ((16, 16), (32, 32))


def kernel_mosaic(kernel: np.ndarray, gap: int = 1) -> np.ndarray:
  """[f_h, f_w, N_in, N_out] -> float image [N_in*(f_h+gap)-gap, N_out*(f_w+gap)-gap] in [0, 1], NaN gaps.

  Tile (i, o) is the f_h x f_w kernel from input channel i to output channel o, each tile scaled by its
  own largest magnitude so shapes (not scales) compare across networks, as in the paper's figures.
  """
  kernel = np.asarray(kernel, np.float32)
  if kernel.ndim != 4:
    raise ValueError(f'expected a conv kernel [f_h, f_w, N_in, N_out], got shape {kernel.shape}')
  f_h, f_w, n_in, n_out = kernel.shape
  tiles = kernel.transpose(2, 3, 0, 1)  # [N_in, N_out, f_h, f_w]
  scale = np.abs(tiles).max(axis=(2, 3), keepdims=True)
  tiles = 0.5 + 0.5 * tiles / np.where(scale > 0, scale, 1.0)
  out = np.full((n_in * (f_h + gap) - gap, n_out * (f_w + gap) - gap), np.nan, np.float32)
  for i in range(n_in):  # loops over channels of one picture, not over training examples
    for o in range(n_out):
      out[i * (f_h + gap) : i * (f_h + gap) + f_h, o * (f_w + gap) : o * (f_w + gap) + f_w] = tiles[i, o]
  return out


def plot_kernel_grid(
  kernels_left: np.ndarray,
  kernels_right: np.ndarray,
  path: str,
  titles: Sequence[str] = ('Normal network', 'Hypernetwork'),
  pixels_per_cell: int = 8,
) -> str:
  """Writes a PNG of two kernel grids side by side ([f_h, f_w, N_in, N_out] each) and returns `path`.

  Image size grows with the number of kernels: each kernel pixel is `pixels_per_cell` PNG pixels.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg', force=False)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  mosaics = [kernel_mosaic(kernels_left), kernel_mosaic(kernels_right)]
  height = max(m.shape[0] for m in mosaics)
  width = sum(m.shape[1] for m in mosaics)
  dpi = 100
  title_in = 0.4
  fig_w = (width * pixels_per_cell) / dpi * 1.15
  fig_h = (height * pixels_per_cell) / dpi + title_in
  fig, axes = plt.subplots(
    1, 2, figsize=(fig_w, fig_h), dpi=dpi, gridspec_kw={'width_ratios': [m.shape[1] for m in mosaics]}
  )
  cmap = plt.get_cmap('gray').with_extremes(bad='white')
  for ax, mosaic, title in zip(axes, mosaics, titles):
    ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, vmin=0.0, vmax=1.0, interpolation='nearest')
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
  fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - title_in / fig_h, wspace=0.1)
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open('wb') as f:  # A file object: works for gs:// paths too.
    fig.savefig(f, format='png', dpi=dpi)
  plt.close(fig)
  return str(path)


def save_mosaic(kernel: np.ndarray, path: str | epath.Path, pixels_per_cell: int = 4) -> epath.Path:
  """Writes `kernel_mosaic(kernel)` as a grey PNG (white gaps), each kernel pixel a square of pixels."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg', force=False)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  mosaic = np.nan_to_num(kernel_mosaic(kernel), nan=1.0)
  mosaic = np.kron(mosaic, np.ones((pixels_per_cell, pixels_per_cell), np.float32))
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open('wb') as f:
    plt.imsave(f, mosaic, cmap='gray', vmin=0.0, vmax=1.0, format='png')
  return path


def conv_kernels(params: Mapping[str, Any], n_in: int, n_out: int) -> list[tuple[str, np.ndarray]]:
  """(path, kernel) of every 4-d leaf named 'kernel' with N_in = n_in and N_out = n_out, in tree order."""
  found = []

  def visit(tree, prefix):
    for key, value in tree.items():
      name = f'{prefix}/{key}' if prefix else str(key)
      if isinstance(value, Mapping):
        visit(value, name)
      elif (
        key == 'kernel'
        and len(shape := tuple(getattr(value, 'shape', np.shape(value)))) == 4
        and shape[2:] == (n_in, n_out)
      ):
        found.append((name, value))  # an array, or a ShapeDtypeStruct when given shapes only

  visit(params, '')
  return found


def main_network_params(config, params) -> dict:
  """The main network's full params: hyper params ({'generator', 'embeddings', 'direct'}) are run
  through the model's static hypernetwork; a normal network's params are returned unchanged."""
  if not (isinstance(params, Mapping) and 'generator' in params and 'embeddings' in params):
    return params
  from experiments.data.images import IMAGE_SHAPES  # pylint: disable=g-import-not-at-top
  from experiments.tasks.image import build_model  # pylint: disable=g-import-not-at-top

  model = build_model(config)
  hypernetwork = model.hypernetwork((1, *IMAGE_SHAPES[config.data.name]))
  return hypernetwork.apply(params)


def write_kernel_figures(
  normal_params, hyper_main_params, out: str, grids: Sequence[tuple[int, int]] = DEFAULT_GRIDS
) -> list[str]:
  """One PNG per grid size present in both networks: the first such kernel of each, side by side."""
  paths = []
  for n_in, n_out in grids:
    left, right = conv_kernels(normal_params, n_in, n_out), conv_kernels(hyper_main_params, n_in, n_out)
    if not left or not right:
      continue
    (name_l, k_l), (name_r, k_r) = left[0], right[0]
    k_l, k_r = np.asarray(k_l), np.asarray(k_r)
    f_h, f_w = k_l.shape[:2]
    path = str(epath.Path(out) / f'kernels_{n_in}x{n_out}x{f_h}x{f_w}.png')
    paths.append(
      plot_kernel_grid(k_l, k_r, path, titles=(f'Normal network: {name_l}', f'Hypernetwork: {name_r}'))
    )
  return paths


def main(argv: Sequence[str] | None = None) -> list[str]:
  import argparse  # pylint: disable=g-import-not-at-top

  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--normal_workdir', required=True, help='workdir of a trained normal network')
  parser.add_argument('--hyper_workdir', required=True, help='workdir of a trained hypernetwork model')
  parser.add_argument('--out', required=True, help='folder for the PNG files')
  parser.add_argument('--checkpoint', default='best', choices=('best', 'latest'))
  args = parser.parse_args(argv)

  from experiments import trainer  # pylint: disable=g-import-not-at-top

  _, normal = trainer.load(args.normal_workdir, args.checkpoint)
  hyper_config, hyper = trainer.load(args.hyper_workdir, args.checkpoint)
  paths = write_kernel_figures(normal, main_network_params(hyper_config, hyper), args.out)
  if not paths:
    raise SystemExit('no conv kernel grid of the same size (16x16 or 32x32 channels) in both networks')
  for path in paths:
    print(path)
  return paths


if __name__ == '__main__':
  main()
