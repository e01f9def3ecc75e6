"""Pictures of pen lines: SVG and PNG (pen lifts as gaps), the paper's Figure 7, and an animated GIF.

Figure 7 (and the blog's front picture): a line drawn by the HyperLSTM, each segment coloured by how
much the hypernetwork changed the main LSTM's recurrent weights at the step that drew it, and under it
the per-step weight change of each gate (i, j, f, o), one row per gate. The animation draws the same
line point by point in the same colours.

`python -m experiments.handwriting_figures --npz=<stroke-3 npz> --split=valid --line=0 --out=<prefix>`
draws a real line (SVG + PNG); trained models write their pictures through the handwriting task.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

import numpy as np

from experiments.data import strokes as strokes_lib

GATES = ('i', 'j', 'f', 'o')
CMAP = 'viridis'


def absolute_strokes(points: np.ndarray) -> list[np.ndarray]:
  """Stroke-3 [N, 3] -> absolute [k, 2] strokes (the pen is lifted between them)."""
  return strokes_lib.offsets_to_strokes(np.asarray(points, np.float64))


def _bounds(strokes, margin: float = 10.0):
  xy = np.concatenate(strokes)
  lo, hi = xy.min(0) - margin, xy.max(0) + margin
  return lo, np.maximum(hi - lo, 1.0)


def svg_text(points: np.ndarray, colors: list[str] | None = None, stroke_width: float = 2.0) -> str:
  """An SVG document with one polyline per stroke (y grows downwards, as in the data)."""
  strokes = absolute_strokes(points)
  lo, size = _bounds(strokes)
  parts = [
    (
      f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size[0]:.1f} {size[1]:.1f}" '
      f'width="{size[0]:.0f}" height="{size[1]:.0f}"><rect width="100%" height="100%" fill="white"/>'
    )
  ]
  if colors is None:
    for s in strokes:
      pts = ' '.join(f'{x - lo[0]:.1f},{y - lo[1]:.1f}' for x, y in s)
      parts.append(
        f'<polyline points="{pts}" fill="none" stroke="black" stroke-width="{stroke_width}" '
        f'stroke-linecap="round" stroke-linejoin="round"/>'
      )
  else:  # one segment per point, coloured by that point's value
    k = 0
    for s in strokes:
      for a, b in itertools.pairwise(s):
        k += 1
        parts.append(
          f'<line x1="{a[0] - lo[0]:.1f}" y1="{a[1] - lo[1]:.1f}" x2="{b[0] - lo[0]:.1f}" '
          f'y2="{b[1] - lo[1]:.1f}" stroke="{colors[min(k, len(colors) - 1)]}" '
          f'stroke-width="{stroke_width}" stroke-linecap="round"/>'
        )
      k += 1
  parts.append('</svg>')
  return '\n'.join(parts)


def _figure_size(strokes, width: float = 10.0) -> tuple[float, float]:
  _, size = _bounds(strokes)
  return width, max(1.0, min(width * size[1] / size[0], 8.0))


def _draw_strokes(ax, points: np.ndarray, values: np.ndarray | None = None, vmax: float | None = None):
  from matplotlib.collections import LineCollection  # pylint: disable=g-import-not-at-top

  strokes = absolute_strokes(points)
  if values is None:
    for s in strokes:
      ax.plot(s[:, 0], s[:, 1], color='black', linewidth=1.5, solid_capstyle='round')
  else:
    segments, seg_values, k = [], [], 0
    for s in strokes:
      for a, b in itertools.pairwise(s):
        k += 1
        segments.append([a, b])
        seg_values.append(values[min(k, len(values) - 1)])
      k += 1
    lc = LineCollection(segments, cmap=CMAP, linewidths=2.0)
    lc.set_array(np.asarray(seg_values))
    lc.set_clim(0.0, vmax if vmax else max(float(np.max(seg_values, initial=0.0)), 1e-12))
    ax.add_collection(lc)
  ax.set_aspect('equal')
  ax.autoscale()
  ax.invert_yaxis()  # y grows downwards in the data
  ax.axis('off')


def write_sample(points: np.ndarray, prefix: str) -> list[str]:
  """<prefix>.svg and <prefix>.png of a stroke-3 line; returns the paths."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
  with open(prefix + '.svg', 'w') as f:
    f.write(svg_text(points))
  fig, ax = plt.subplots(figsize=_figure_size(absolute_strokes(points)))
  _draw_strokes(ax, points)
  fig.savefig(prefix + '.png', dpi=100, bbox_inches='tight')
  plt.close(fig)
  return [prefix + '.svg', prefix + '.png']


def _colour_scale(weight_change: np.ndarray) -> tuple[np.ndarray, float]:
  """Per-point stroke colour value (mean over gates) and the colour scale's top (99th percentile)."""
  values = np.asarray(weight_change, np.float64).mean(-1)
  return values, max(float(np.percentile(values, 99)), 1e-12)


def write_figure7(points: np.ndarray, weight_change: np.ndarray, path: str) -> list[str]:
  """Figure 7: the line coloured by the weight change, and the per-gate weight change under it.

  weight_change [N, G]: of the step that drew each point (G = 4 gates for the HyperLSTM).
  """
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  weight_change = np.asarray(weight_change, np.float64)
  values, vmax = _colour_scale(weight_change)
  gates = GATES if weight_change.shape[-1] == 4 else tuple(str(g) for g in range(weight_change.shape[-1]))
  width, height = _figure_size(absolute_strokes(points))
  fig, (top, bottom) = plt.subplots(
    2, 1, figsize=(width, height + 1.5), gridspec_kw={'height_ratios': [height, 1.5]}
  )
  _draw_strokes(top, points, values, vmax)
  top.set_title('sampled line, coloured by the weight change of the main LSTM')
  image = bottom.imshow(
    weight_change.T,
    aspect='auto',
    cmap=CMAP,
    interpolation='nearest',
    vmin=0.0,
    vmax=max(float(np.percentile(weight_change, 99)), 1e-12),
  )
  bottom.set_yticks(range(len(gates)), gates)
  bottom.set_xlabel('time step (point)')
  bottom.set_ylabel('gate')
  fig.colorbar(image, ax=bottom, fraction=0.02, pad=0.01)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100, bbox_inches='tight')
  plt.close(fig)
  return [path]


def write_animation(
  points: np.ndarray,
  weight_change: np.ndarray,
  path: str,
  *,
  frames: int = 60,
  width: int = 800,
  frame_ms: int = 60,
) -> list[str]:
  """An animated GIF (Pillow) of the pen drawing the line, segments coloured as in `write_figure7`."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top

  values, vmax = _colour_scale(weight_change)
  cmap = matplotlib.colormaps[CMAP]
  strokes = absolute_strokes(points)
  lo, size = _bounds(strokes)
  scale = (width - 20) / size[0]
  height = max(40, int(size[1] * scale) + 20)
  segments, k = [], 0  # (point index, (x0, y0, x1, y1), colour)
  for s in strokes:
    xy = (s - lo) * scale + 10
    for a, b in itertools.pairwise(xy):
      k += 1
      rgb = tuple(int(255 * c) for c in cmap(min(values[min(k, len(values) - 1)] / vmax, 1.0))[:3])
      segments.append((k, (float(a[0]), float(a[1]), float(b[0]), float(b[1])), rgb))
    k += 1
  total = len(points)
  canvas = Image.new('RGB', (width, height), 'white')
  draw = ImageDraw.Draw(canvas)
  images, done = [], 0
  for f in range(1, frames + 1):
    upto = round(total * f / frames)
    while done < len(segments) and segments[done][0] <= upto:
      draw.line(segments[done][1], fill=segments[done][2], width=3)
      done += 1
    images.append(canvas.copy())
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  images[0].save(path, save_all=True, append_images=images[1:], duration=frame_ms, loop=0, optimize=False)
  return [path]


def main(argv: list[str] | None = None) -> int:
  """Draws one real line of a stroke-3 npz as SVG and PNG."""
  parser = argparse.ArgumentParser(description=main.__doc__)
  parser.add_argument(
    '--npz', required=True, help='stroke-3 npz (e.g. ../shared/data/strokes/unipen_lines.npz)'
  )
  parser.add_argument('--split', default='valid')
  parser.add_argument('--line', type=int, default=0)
  parser.add_argument('--out', required=True, help='output prefix (writes <out>.svg and <out>.png)')
  args = parser.parse_args(argv)
  try:
    lines = strokes_lib.load_npz(args.npz, (args.split,))[args.split]
  except strokes_lib.DataError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  for path in write_sample(lines.line(args.line % len(lines)), args.out):
    print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
