"""Real translations of finished translation runs, side by side, and each run's picture of one sentence.

    python -m experiments.translation_report runs/translation/cpu_*_s0 --pick 6 \
        --figure-sentence "I don't think that Tom knows where Mary lives." --out figures/translation_tatoeba

Every workdir's best checkpoint translates the same sentences (beam search with the run's decoding
settings, its own subwords.model): `--pick N` takes N test sentences evenly spaced through the test split
(Tatoeba's test split runs from short to long sentences), `--sentences FILE` reads them from a file (one
per line, no references). Prints a Markdown table (source, reference, one column per run). With
`--figure-sentence` and `--out`, writes `<out>/<run>.png`: the attention matrix of that sentence's
translation beside each decoder layer's per-step weight change (Figure 4 of the paper, for words).
"""

from __future__ import annotations

import argparse
import os
import sys

from experiments import trainer


def _cell(text: str) -> str:
  return text.replace('|', '\\|')


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdirs', nargs='+')
  parser.add_argument('--pick', type=int, default=6, help='test sentences, evenly spaced through the split')
  parser.add_argument('--sentences', default='', help='a file of source sentences instead of --pick')
  parser.add_argument('--figure-sentence', default='', help="the sentence of each run's picture")
  parser.add_argument('--out', default='', help='folder for <run>.png (with --figure-sentence)')
  args = parser.parse_args(argv)

  sources, references, columns = None, None, {}
  for workdir in args.workdirs:
    config = trainer.load_config(workdir)
    runner, state = trainer.restore_params(config, workdir, 'best')
    task, params = runner.task, state['params']
    if sources is None:
      if args.sentences:
        with open(args.sentences, encoding='utf-8') as f:
          sources = [line.rstrip('\n') for line in f if line.strip()]
        references = [''] * len(sources)
      else:
        src, ref = task.texts['test']
        idx = [(2 * k + 1) * len(src) // (2 * args.pick) for k in range(args.pick)]
        sources, references = [src[i] for i in idx], [ref[i] for i in idx]
    name = os.path.basename(os.path.normpath(workdir))
    columns[name] = task.translate(params, sources)
    if args.figure_sentence and args.out:
      os.makedirs(args.out, exist_ok=True)
      path = task.translation_figure(params, args.figure_sentence, os.path.join(args.out, f'{name}.png'))
      print(f'wrote {path}', file=sys.stderr)

  print('| source | reference | ' + ' | '.join(f'`{n}`' for n in columns) + ' |')
  print('|' + '---|' * (2 + len(columns)))
  for i, (s, r) in enumerate(zip(sources, references)):
    print(f'| {_cell(s)} | {_cell(r)} | ' + ' | '.join(_cell(c[i]) for c in columns.values()) + ' |')
  return 0


if __name__ == '__main__':
  sys.exit(main())
