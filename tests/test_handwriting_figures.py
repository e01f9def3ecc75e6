"""experiments/handwriting_figures.py: SVG (pen lifts as gaps, exact coordinates), PNG, Figure 7, GIF."""

import re

import numpy as np
from PIL import Image

from experiments import handwriting_figures as figures
from experiments.data import strokes


def _line():
  rng = np.random.default_rng(0)
  xy = [np.cumsum(rng.integers(-5, 6, (n, 2)), 0) + [100 + 40 * k, 50] for k, n in enumerate((12, 7, 20))]
  return xy, strokes.strokes_to_offsets(xy)


def test_svg_has_one_polyline_per_stroke_at_the_points():
  xy, points = _line()
  text = figures.svg_text(points)
  polylines = re.findall(r'<polyline points="([^"]+)"', text)
  assert len(polylines) == 3  # the two pen lifts are gaps
  origin = np.concatenate(xy).min(0) - 10
  for s, p in zip(xy, polylines):
    got = np.array([[float(v) for v in pair.split(',')] for pair in p.split()])
    # strokes_to_offsets starts at (0, 0): absolute positions relative to the first point.
    np.testing.assert_allclose(got, s - xy[0][0] - (origin - xy[0][0]), atol=0.051)
  coloured = figures.svg_text(points, colors=['#000000'] * len(points))
  assert coloured.count('<line ') == sum(len(s) - 1 for s in xy)


def test_png_figure7_and_animation(tmp_path):
  _, points = _line()
  change = np.abs(np.random.default_rng(1).normal(size=(len(points), 4)))
  paths = figures.write_sample(points, str(tmp_path / 's'))
  assert [p[-3:] for p in paths] == ['svg', 'png']
  assert Image.open(paths[1]).size[0] > 100
  fig7 = figures.write_figure7(points, change, str(tmp_path / 'f7.png'))[0]
  assert Image.open(fig7).size[1] > 100
  gif = Image.open(figures.write_animation(points, change, str(tmp_path / 'a.gif'), frames=12)[0])
  assert gif.n_frames == 12
  gif.seek(0)
  first = np.asarray(gif.convert('RGB'))
  gif.seek(11)
  last = np.asarray(gif.convert('RGB'))
  # The pen draws: more ink in the last frame than in the first.
  ink = lambda a: int((a.sum(-1) < 700).sum())
  assert ink(last) > ink(first) and ink(last) > 50


def test_command_draws_a_real_line_from_an_npz(tmp_path, capsys):
  _, points = _line()
  np.savez(tmp_path / 'x.npz', valid_points=points, valid_offsets=np.array([0, len(points)]))
  assert figures.main(['--npz', str(tmp_path / 'x.npz'), '--out', str(tmp_path / 'o')]) == 0
  assert 'wrote' in capsys.readouterr().out and (tmp_path / 'o.png').is_file()
  assert figures.main(['--npz', str(tmp_path / 'nope.npz'), '--out', str(tmp_path / 'o')]) == 1
