"""The paper's Figure 4 (per-character weight change of the HyperLSTM) and Figure 5 (tanh(c_t) histograms).

Figure 4: a text with, under each character, the size of the change of the four recurrent matrices
W_h^i, W_h^g, W_h^f, W_h^o at the step that read it, one colour per gate (darker = larger change).
Figure 5: normalised histograms of tanh(c_t) while sampling, for LSTM / LN LSTM / HyperLSTM / LN HyperLSTM.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after selecting the Agg backend)
import numpy as np  # noqa: E402
from etils import epath  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402

from experiments import sampling  # noqa: E402

GATE_COLOURS = {'i': '#d62728', 'g': '#2ca02c', 'f': '#1f77b4', 'o': '#ff7f0e'}
_SHOWN = {'\n': '\u21b5', '\t': '\u21e5'}  # visible stand-ins for layout characters


def _wrap(text: str, chars_per_line: int) -> list[list[int]]:
  """Character indices per display line: break after a newline or at chars_per_line."""
  lines, cur = [], []
  for k, c in enumerate(text):
    cur.append(k)
    if c == '\n' or len(cur) == chars_per_line:
      lines.append(cur)
      cur = []
  if cur:
    lines.append(cur)
  return lines


def _save(fig, path, formats: tuple[str, ...]) -> list[str]:
  """Writes the figure as path's stem in each format, through etils.epath (local or gs:// paths)."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  paths = []
  for ext in formats:
    p = path.with_suffix(f'.{ext}')
    with p.open('wb') as f:
      fig.savefig(f, format=ext, dpi=150 if ext == 'png' else None, bbox_inches='tight')
    paths.append(str(p))
  plt.close(fig)
  return paths


def weight_change_figure(
  text: str,
  weight_change: np.ndarray,
  path: str,
  *,
  chars_per_line: int = 80,
  title: str | None = None,
  formats: tuple[str, ...] = ('png', 'svg'),
) -> list[str]:
  """Figure 4. weight_change: [len(text), 4] per gate (i, g, f, o); writes path's stem as PNG and SVG.

  Each gate's row is scaled by that gate's largest change over the text (so colours compare steps,
  not gates); returns the written paths.
  """
  wc = np.asarray(weight_change, np.float64).reshape(len(text), -1)
  if wc.shape[1] != len(sampling.GATES):
    raise ValueError(f'weight_change must be [len(text), 4] (gates i, g, f, o), got {wc.shape}')
  scale = wc.max(axis=0)
  norm = wc / np.where(scale > 0, scale, 1.0)  # [N, 4] in [0, 1]
  lines = _wrap(text, chars_per_line)
  rows_per_line = 1 + len(sampling.GATES) + 1  # text, four gates, gap
  width = max(len(line) for line in lines) if lines else 1
  fig, ax = plt.subplots(figsize=(max(4.0, 0.13 * width + 1.0), 0.16 * rows_per_line * len(lines) + 0.6))
  for n, line in enumerate(lines):
    top = -n * rows_per_line
    for x, k in enumerate(line):
      ax.text(
        x + 0.5,
        top - 0.5,
        _SHOWN.get(text[k], text[k]),
        ha='center',
        va='center',
        family='monospace',
        fontsize=7,
      )
    for g, gate in enumerate(sampling.GATES):
      cmap = LinearSegmentedColormap.from_list(gate, ['#ffffff', GATE_COLOURS[gate]])
      y0 = top - 1 - g
      ax.imshow(
        norm[line, g][None, :],
        cmap=cmap,
        vmin=0.0,
        vmax=1.0,
        aspect='auto',
        interpolation='nearest',
        extent=(0, len(line), y0 - 1, y0),
      )
  ax.set_xlim(0, width)
  ax.set_ylim(-rows_per_line * len(lines), 0)
  ax.axis('off')
  handles = [plt.Rectangle((0, 0), 1, 1, color=GATE_COLOURS[g]) for g in sampling.GATES]
  ax.legend(
    handles,
    [f'$W_h^{g}$' for g in sampling.GATES],
    loc='lower center',
    ncol=4,
    bbox_to_anchor=(0.5, 1.0),
    frameon=False,
    fontsize=8,
  )
  if title:
    ax.set_title(title, fontsize=9, pad=26)
  return _save(fig, path, formats)


def plot_weight_change(
  model, params, ids, vocab: list[str], path: str, *, layer: int | None = None, chars_per_line: int = 80
) -> list[str]:
  """Figure 4 for a given text (ids [T]) read by the model; the last layer unless `layer`."""
  ids = np.asarray(ids, np.int32)
  _, diag = sampling.diagnose(model, params, ids)
  wc = sampling.layer_diagnostics(diag, layer).get('weight_change')
  text = ''.join(vocab[int(i)] for i in ids)
  if wc is None or wc.shape[-1] != len(sampling.GATES):
    wc = np.zeros((len(ids), len(sampling.GATES)))  # no per-gate diagnostics (e.g. HyperRNN): blank rows
  return weight_change_figure(
    text, wc, path, chars_per_line=chars_per_line, title='weight change per character (gates i, g, f, o)'
  )


def tanh_c_histograms(
  values: Mapping[str, np.ndarray], path: str, *, bins: int = 100, formats: tuple[str, ...] = ('png',)
) -> list[str]:
  """Figure 5: one normalised histogram of tanh(c_t) per model (e.g. 'LSTM', 'LN LSTM', ...)."""
  names = list(values)
  if not names:
    raise ValueError('no tanh(c_t) values to plot')
  cols = min(2, len(names))
  rows = -(-len(names) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 2.8 * rows), squeeze=False, sharex=True)
  edges = np.linspace(-1.0, 1.0, bins + 1)
  for ax, name in zip(axes.ravel(), names):
    v = np.asarray(values[name], np.float64).ravel()
    ax.hist(v, bins=edges, density=True, color='#4c72b0')
    ax.set_title(name, fontsize=9)
    ax.set_xlim(-1.0, 1.0)
    ax.set_xticks([-1.0, -0.5, 0.0, 0.5, 1.0])
  for ax in axes.ravel()[len(names) :]:
    ax.axis('off')
  for ax in axes[-1]:
    ax.set_xlabel(r'$\tanh(c_t)$')
  fig.tight_layout()
  return _save(fig, path, formats)


def sample_tanh_c(
  model,
  params,
  vocab: list[str],
  *,
  length: int = 1000,
  temperature: float = 1.0,
  prime: str = '',
  seed: int = 0,
  layer: int | None = None,
) -> np.ndarray:
  """tanh(c_t) [length, H] of one layer while the model generates `length` characters."""
  _, diag = sampling.sample(model, params, vocab, length, temperature, prime, seed)
  tanh_c = sampling.layer_diagnostics(diag, layer).get('tanh_c')
  if tanh_c is None:
    raise ValueError('the model returns no tanh_c diagnostics')
  return tanh_c[len(prime) :]


def figure5(
  models: Mapping[str, tuple],
  vocab: list[str],
  path: str,
  *,
  length: int = 1000,
  temperature: float = 1.0,
  seed: int = 0,
) -> list[str]:
  """models: {'LSTM': (model, params), 'LN LSTM': ..., 'HyperLSTM': ..., 'LN HyperLSTM': ...}."""
  values = {
    name: sample_tanh_c(m, p, vocab, length=length, temperature=temperature, seed=seed)
    for name, (m, p) in models.items()
  }
  return tanh_c_histograms(values, path)


def saturation_stats(values: np.ndarray) -> dict[str, float]:
  """Summary of one Figure 5 histogram: mean |tanh(c_t)| and the share of units beyond ±0.95."""
  v = np.abs(np.asarray(values, np.float64).ravel())
  return {'mean_abs': float(v.mean()), 'saturated': float((v > 0.95).mean())}


def _load_char_model(workdir: str, checkpoint: str):
  """(model, params, corpus, config) of a trained character model; the corpus gives vocab and text."""
  # Imported here: the trainer loads tasks, and the char_lm task draws its figures with this module.
  from experiments import trainer  # pylint: disable=g-import-not-at-top

  config, params = trainer.load(workdir, checkpoint)
  if config.task != 'char_lm':
    raise ValueError(f'{workdir} holds a {config.task} model; Figures 4 and 5 need a character model')
  task = trainer.make_task(config)
  return task.model, params, task.corpus, config


def main(argv: list[str] | None = None) -> list[str]:
  """Figures 4 and 5 from trained workdirs.

    python -m experiments.plots --figure=5 --out=figs/figure5.png \\
        --run=LSTM=runs/ptb/cpu_lstm256_s0 --run='LN LSTM=runs/ptb/cpu_ln_lstm256_s0' ...
    python -m experiments.plots --figure=4 --out=figs/figure4.png --run=HyperLSTM=runs/ptb/... [--text=...]

  Figure 5 samples `--length` characters from each model (fixed seed) and prints, per model, the mean of
  |tanh(c_t)| and the share of units beyond ±0.95. Figure 4 reads `--text` (default: the start of the
  validation split) with the first model.
  """
  import argparse  # pylint: disable=g-import-not-at-top

  parser = argparse.ArgumentParser(description='Figures 4 and 5 from trained character models')
  parser.add_argument('--figure', type=int, choices=(4, 5), required=True)
  parser.add_argument('--run', action='append', required=True, help='NAME=WORKDIR (repeat)')
  parser.add_argument('--out', required=True, help='output path (.png; Figure 4 also writes .svg)')
  parser.add_argument('--length', type=int, default=2000, help='Figure 5: characters sampled per model')
  parser.add_argument('--temperature', type=float, default=1.0)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--text', default='', help='Figure 4: text to read (default: validation text)')
  parser.add_argument('--checkpoint', default='best', choices=('best', 'latest'))
  args = parser.parse_args(argv)
  runs = []
  for item in args.run:
    name, sep, workdir = item.partition('=')
    if not sep or not workdir:
      parser.error(f'--run must be NAME=WORKDIR, got {item!r}')
    runs.append((name, workdir))
  if args.figure == 4:
    name, workdir = runs[0]
    model, params, corpus, config = _load_char_model(workdir, args.checkpoint)
    vocab = list(corpus.vocab)
    if args.text:
      unknown = sorted(set(args.text) - set(vocab))
      if unknown:
        raise ValueError(f"--text has symbols outside the model's vocabulary: {unknown}")
      ids = np.array([vocab.index(ch) for ch in args.text], np.int32)
    else:
      ids = np.asarray(corpus.splits['valid'][: config.plots.length], np.int32)
    paths = plot_weight_change(model, params, ids, vocab, args.out)
  else:
    values = {}
    for name, workdir in runs:
      model, params, corpus, _ = _load_char_model(workdir, args.checkpoint)
      values[name] = sample_tanh_c(
        model, params, list(corpus.vocab), length=args.length, temperature=args.temperature, seed=args.seed
      )
      stats = saturation_stats(values[name])
      print(
        f'{name}: mean |tanh(c_t)| {stats["mean_abs"]:.3f}, '
        f'|tanh(c_t)| > 0.95 for {100 * stats["saturated"]:.1f}% of unit-steps'
      )
    paths = tanh_c_histograms(values, args.out)
  for p in paths:
    print(f'wrote {p}')
  return paths


if __name__ == '__main__':
  import sys  # pylint: disable=g-import-not-at-top

  from experiments.data.errors import DataError  # pylint: disable=g-import-not-at-top

  try:
    main()
  except (ValueError, DataError, OSError) as e:  # bad input: one line, not a traceback
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
