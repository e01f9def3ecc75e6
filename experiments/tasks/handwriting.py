"""Handwriting generation (section 4.3, Table 5; Graves 2013 section 4): `hyper.handwriting` on pen lines.

Training reads `batch_size` streams of whole lines laid end to end (`experiments.data.strokes.PackedStreams`),
`data.window` points at a time, carrying the recurrent state from one window to the next and resetting it
where a line starts; the offsets are scaled by training-split statistics and augmented by a random ±10%
scale per line. Evaluation reads every line of a split once, whole, the same way (no truncation).
Loss: -log p of the next point in nats (Graves eq. 26); metrics: nats per line (Table 5's figure: the
sum over a line's points, averaged over lines) and per point, both in the normalised units the model
sees (the paper's Table 5 counts per 300-point training sequence in its own units: see the notes).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.data import strokes
from experiments.models import make_cell

try:  # the optional-method defaults of the task protocol, where the harness has added them
  from experiments.tasks.base import TaskBase
except ImportError:  # pragma: no cover - older trees
  TaskBase = object


def build_model(config: ml_collections.ConfigDict):
  from hyper.handwriting import HandwritingModel  # pylint: disable=g-import-not-at-top

  m = config.model
  return HandwritingModel(
    cell=make_cell(m.cell),
    num_layers=m.num_layers,
    num_mixtures=m.num_mixtures,
    min_log_sigma=m.min_log_sigma,
    max_rho=m.max_rho,
  )


def load_splits(config: ml_collections.ConfigDict) -> dict[str, strokes.Lines]:
  """{split: Lines} in data units, after the length filter (synthetic: generated in-process)."""
  d = config.data
  if d.name == 'synthetic':
    return {
      s: strokes.synthetic_lines(n, config.seed * 3 + k)
      for k, (s, n) in enumerate(zip(strokes.SPLITS, d.synthetic_lines))
    }
  splits = strokes.load_strokes(
    d.name,
    manual_dir=d.manual_dir or None,
    data_dir=d.data_dir or None,
    split_lists=d.split_lists,
    min_length=d.min_length,
  )
  return {s: strokes.filter_lengths(v, d.min_length, d.max_length) for s, v in splits.items()}


class HandwritingTask(TaskBase):
  """The handwriting family: IAM-OnDB (paper), UNIPEN lines and Omniglot (here), synthetic lines (tests)."""

  main_metric = 'nats_per_line'
  metric_higher_is_better = False
  unit = 'points'

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    process_index: int = 0,
    process_count: int = 1,
    *,
    load_data: bool = True,
    splits: dict[str, strokes.Lines] | None = None,
  ):
    self.config = config
    self.process_index, self.process_count = process_index, process_count
    self.model = build_model(config)
    self.window = config.data.window
    self.units_per_step = config.train.batch_size * self.window
    self.data_source = config.data.name
    self.splits: dict[str, strokes.Lines] = {}
    self.normalizer = strokes.Normalizer((1.0, 1.0))
    self.steps_per_epoch = 1
    self._eval_cache: dict[str, strokes.PackedStreams] = {}
    if splits is None and load_data:
      splits = load_splits(config)
    if splits is not None:
      self.splits = splits
      self.normalizer = strokes.Normalizer.fit(splits['train'])
      self.train_streams = strokes.PackedStreams(
        splits['train'],
        self.normalizer,
        config.train.batch_size,
        self.window,
        shuffle=True,
        seed=config.seed,
        process_index=process_index,
        process_count=process_count,
      )
      self.steps_per_epoch = self.train_streams.steps_per_epoch

  # ---- training ----------------------------------------------------------------------------------

  def init_variables(self, rng: jax.Array):
    points = jnp.zeros((1, self.window, 3), jnp.float32)
    params = self.model.init({'params': rng}, points)['params']
    # The offsets' scale travels with the parameters (and the checkpoint): samples come back in data units.
    return params, {'data_std': jnp.asarray(self.normalizer.std, jnp.float32)}

  def init_carry(self, batch_size: int):
    return self.model.initialize_carry(batch_size)

  def train_batch(self, step: int):
    return self.train_streams.batch(step)

  def loss_fn(self, params, model_state, carry, batch, rng, step):
    inputs, targets = batch['inputs'], batch['targets']
    if self.config.data.augment_scale > 0:
      augment = functools.partial(
        strokes.scale_augment, seed=self.config.seed, max_change=self.config.data.augment_scale
      )
      inputs, targets = augment(inputs, batch['line']), augment(targets, batch['line'])
    outputs, new_carry = self.model.apply(
      {'params': params},
      inputs,
      carry,
      reset=batch['reset'],
      mask=batch['mask'],
      deterministic=False,
      rngs={'dropout': rng},
    )
    nll = self.model.nll(outputs, targets, batch['mask'])
    points = jnp.maximum(batch['mask'].sum(), 1.0)
    loss = nll.sum() / points
    return loss, (model_state, jax.lax.stop_gradient(new_carry), {'loss': loss, 'nats_per_point': loss})

  # ---- evaluation --------------------------------------------------------------------------------

  def eval_splits(self):
    return tuple(s for s in ('valid', 'test') if s in self.splits) or ('valid',)

  def eval_batch_size(self) -> int:
    return self.config.eval.batch_size

  def _eval_streams(self, split: str) -> strokes.PackedStreams:
    if split in self._eval_cache:
      return self._eval_cache[split]
    if split not in self.splits:
      raise ValueError(
        f'split {split!r} is not in data set {self.config.data.name!r} (it has {", ".join(self.splits)})'
      )
    self._eval_cache[split] = strokes.PackedStreams(
      self.splits[split],
      self.normalizer,
      self.eval_batch_size(),
      self.config.eval.window or self.window,
      shuffle=False,
      process_index=self.process_index,
      process_count=self.process_count,
    )
    return self._eval_cache[split]

  def num_eval_batches(self, split: str) -> int:
    return self._eval_streams(split).num_windows

  def eval_batches(self, split: str) -> Iterator[dict[str, np.ndarray]]:
    yield from self._eval_streams(split)

  def eval_step(self, params, model_state, carry, batch):
    outputs, new_carry = self.model.apply(
      {'params': params}, batch['inputs'], carry, reset=batch['reset'], mask=batch['mask'], deterministic=True
    )
    nll = self.model.nll(outputs, batch['targets'], batch['mask'])
    mask = batch['mask'].astype(jnp.float32)
    lines = jnp.sum(jnp.asarray(batch['reset'], jnp.float32) * mask)
    return new_carry, {'nll': nll.sum(), 'points': mask.sum(), 'lines': lines}

  def eval_metrics(self, sums):
    nll, points, lines = float(sums['nll']), max(float(sums['points']), 1.0), max(float(sums['lines']), 1.0)
    per_point = nll / points
    return {
      'loss': per_point,
      'nats_per_point': per_point,
      'nats_per_line': nll / lines,
      'nats_per_300_points': 300.0 * per_point,
      'lines': lines,
    }

  # ---- sampling and figures ----------------------------------------------------------------------

  def data_std(self, model_state) -> tuple[float, float]:
    std = np.asarray(model_state['data_std'], np.float64) if model_state else np.asarray(self.normalizer.std)
    return float(std[0]), float(std[1])

  def generate(
    self, params, model_state, seed: int = 0, prime_line: int = 0, prime_length: int | None = None
  ) -> dict[str, Any]:
    """A sampled line in data units: {'points': [N, 3], 'weight_change': [N, G] (first layer), 'prime'}.

    With prime_length > 0 (default config.sample.prime_length) the model first reads that many points of
    validation line `prime_line` and continues it.
    """
    from hyper.handwriting import sample  # pylint: disable=g-import-not-at-top

    s = self.config.sample
    std = self.data_std(model_state)
    normalizer = strokes.Normalizer(std)
    prime = None
    prime_length = s.prime_length if prime_length is None else prime_length
    if prime_length > 0 and 'valid' in self.splits:
      line = self.splits['valid'].line(prime_line % len(self.splits['valid']))[:prime_length]
      prime = jnp.asarray(normalizer.normalize(line), jnp.float32)
    out = sample(
      self.model,
      params,
      jax.random.PRNGKey(seed),
      s.length,
      temperature=float(s.temperature),
      bias=float(s.bias),
      prime=prime,
      batch_size=1,
    )
    points = normalizer.denormalize(np.asarray(out['points'][0], np.float64))
    points[:, 2] = np.round(points[:, 2])
    change = np.asarray(out['weight_change']['layer_0'][0])
    return {
      'points': points,
      'weight_change': change,
      'prime': None if prime is None else normalizer.denormalize(np.asarray(prime, np.float64)),
    }

  def write_artifacts(self, params, model_state, workdir) -> dict[str, str]:
    """sample.svg / sample.png, and the Figure 7 picture and the animation when plots.weight_change.

    Returns {file name: path} (the trainer shows the PNGs in TensorBoard)."""
    return {os.path.basename(str(p)): str(p) for p in self._write_figures(params, model_state, workdir)}

  def _write_figures(self, params, model_state, workdir) -> list[str]:
    from experiments import handwriting_figures as figures  # pylint: disable=g-import-not-at-top

    if self.config.sample.length <= 0:
      return []
    written = []
    result = self.generate(params, model_state, seed=self.config.seed)
    written += figures.write_sample(result['points'], os.path.join(workdir, 'sample'))
    if self.config.plots.weight_change:
      written += figures.write_figure7(
        result['points'], result['weight_change'], os.path.join(workdir, 'figure7.png')
      )
      written += figures.write_animation(
        result['points'], result['weight_change'], os.path.join(workdir, 'figure7.gif')
      )
    return written

  def sample(self, params, model_state, rng, workdir) -> str:
    """--mode=sample: writes the artifacts of a checkpoint and names them."""
    del rng
    return 'wrote ' + ', '.join(self._write_figures(params, model_state, workdir))


def make_task(
  config: ml_collections.ConfigDict, process_index: int = 0, process_count: int = 1, *, load_data: bool = True
) -> HandwritingTask:
  """The task the trainer loads by name (`config.task = 'handwriting'`)."""
  return HandwritingTask(config, process_index, process_count, load_data=load_data)


def main(argv: list[str] | None = None) -> int:
  """Stopgap until the trainer loads tasks by name: `python -m experiments.tasks.handwriting
  --variant=cpu_hyperlstm256 --steps=300 --workdir=DIR` trains with `experiments.trainer.Runner` (no
  checkpoints, no evaluation) and writes the sample and Figure 7 pictures into DIR."""
  import argparse  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top

  from configs import handwriting as configs  # pylint: disable=g-import-not-at-top
  from experiments import trainer  # pylint: disable=g-import-not-at-top

  parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
  parser.add_argument('--variant', default='tiny')
  parser.add_argument('--steps', type=int, default=30)
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--sample_length', type=int, default=0)
  args = parser.parse_args(argv)
  config = configs.get_config(args.variant)
  if args.sample_length:
    config.sample.length = args.sample_length
  config.plots.weight_change = True
  task = make_task(config)
  runner = trainer.Runner(config, task)
  state = runner.init()
  start = time.time()
  for step in range(args.steps):
    state, metrics = runner.train_step(state, trainer.global_batch(task.train_batch(step), runner.mesh))
    if (step + 1) % max(1, args.steps // 10) == 0:
      print(
        f'step {step + 1}: loss {float(metrics["loss"]):.4f} nats/point  '
        f'{(step + 1) * task.units_per_step / (time.time() - start):,.0f} points/s',
        flush=True,
      )
  for path in task.write_artifacts(
    jax.device_get(state['params']), jax.device_get(state['model_state']), args.workdir
  ):
    print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
