"""The protocol between the one train loop (experiments/trainer.py) and an experiment family.

A task owns the model, the data and the loss; the trainer owns the state pytree, the mesh, the optimizer,
checkpoints and metrics. Everything a task returns for the jitted step is a pure function of its inputs,
so the trainer can `jax.eval_shape` it, shard it and trace it once.

Adding a family means a config (`config.task = '<name>'`), a module `experiments/tasks/<name>.py` with
`make_task(config, process_index=0, process_count=1, *, load_data=True)` returning a `Task`, and a data
module. `TaskBase` gives every optional method a default, so a new task subclasses it and writes only the
required ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import jax
import numpy as np

PyTree = Any
Batch = dict[str, np.ndarray]


class Task(Protocol):
  """What the trainer needs from an experiment family (char_lm, image)."""

  main_metric: str  # Validation metric that picks the best checkpoint ('bpc', 'error_rate').
  metric_higher_is_better: bool  # Direction of main_metric (False: lower is better, e.g. bpc; BLEU: True).
  unit: str  # What a batch counts, for the rate line ('chars', 'images').
  units_per_step: int  # Global units per training step.
  steps_per_epoch: int  # Training steps in one pass over the training split.
  data_source: str  # Where the data came from, for run_info.json and the first line ('' if unknown).

  def init_variables(self, rng: jax.Array) -> tuple[PyTree, PyTree]:
    """(params, model_state) for a fresh run; pure, so `jax.eval_shape` gives their shapes.

    Works on a task made with load_data=False (for `--mode=summary`)."""

  def init_carry(self, batch_size: int) -> PyTree:
    """State carried from one batch to the next ([batch, ...] leaves; {} for stateless models)."""

  def train_batch(self, step: int) -> Batch:
    """This process's rows of the global training batch at `step` (stateless by step)."""

  def loss_fn(
    self,
    params: PyTree,
    model_state: PyTree,
    carry: PyTree,
    batch: dict[str, jax.Array],
    rng: jax.Array,
    step: jax.Array,
  ) -> tuple[jax.Array, tuple[PyTree, PyTree, dict]]:
    """Scalar training loss and (new_model_state, new_carry, metrics: name -> scalar mean)."""

  def eval_splits(self) -> tuple[str, ...]:
    """Names of the splits this task can evaluate ('valid' picks the best checkpoint)."""

  def eval_batch_size(self) -> int:
    """Global rows per eval batch."""

  def eval_batches(self, split: str) -> Iterator[Batch]:
    """This process's rows of every eval batch of `split`, in order (carry flows across them)."""

  def num_eval_batches(self, split: str) -> int:
    """How many batches `eval_batches(split)` yields (for the progress bar)."""

  def eval_step(
    self, params: PyTree, model_state: PyTree, carry: PyTree, batch: dict[str, jax.Array]
  ) -> tuple[PyTree, dict[str, jax.Array]]:
    """(new_carry, sums): additive statistics of one eval batch (e.g. summed nll and count)."""

  def eval_metrics(self, sums: dict[str, float]) -> dict[str, float]:
    """Final metrics of a split from its summed statistics."""

  def evaluate(
    self, params: PyTree, model_state: PyTree, split: str, default_eval: Callable[[str], dict[str, float]]
  ) -> dict[str, float]:
    """Metrics of `split`; `default_eval(split)` runs the trainer's additive loop over eval_step."""

  def sample(self, params: PyTree, model_state: PyTree, rng: jax.Array, workdir: Any) -> str | None:
    """A generated sample as text (or None when the family has none), for --mode=sample and TensorBoard."""

  def write_artifacts(self, params: PyTree, model_state: PyTree, workdir: Any) -> dict[str, Any]:
    """Writes end-of-training files under `workdir` (an etils.epath.Path); returns {name: path}.

    Called on process 0 only, with host (numpy) copies of the parameters. PNG paths are also shown in
    TensorBoard as images, .txt paths as text."""


class TaskBase:
  """Defaults of the optional parts of `Task`; a family subclasses this and fills in the rest."""

  main_metric: str = 'loss'
  metric_higher_is_better: bool = False
  unit: str = 'examples'
  data_source: str = ''

  def eval_splits(self) -> tuple[str, ...]:
    return ('valid', 'test')

  def evaluate(self, params, model_state, split: str, default_eval) -> dict[str, float]:
    del params, model_state
    return default_eval(split)

  def sample(self, params, model_state, rng, workdir) -> str | None:
    del params, model_state, rng, workdir
    return None

  def write_artifacts(self, params, model_state, workdir) -> dict[str, Any]:
    del params, model_state, workdir
    return {}


def make_task(config, process_index: int = 0, process_count: int = 1, *, load_data: bool = True) -> Task:
  """The Task for config.task: `experiments.tasks.<config.task>.make_task(...)`."""
  import importlib  # pylint: disable=g-import-not-at-top
  import pkgutil  # pylint: disable=g-import-not-at-top

  from experiments import tasks as package  # pylint: disable=g-import-not-at-top

  name = config.task
  known = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.name != 'base')
  if not isinstance(name, str) or name not in known:
    raise ValueError(f'unknown task {name!r} (config.task); tasks in experiments/tasks/: {", ".join(known)}')
  module = importlib.import_module(f'experiments.tasks.{name}')
  if not hasattr(module, 'make_task'):
    raise ValueError(
      f'experiments/tasks/{name}.py has no make_task(config, process_index, process_count, '
      f'*, load_data) function'
    )
  return module.make_task(config, process_index, process_count, load_data=load_data)
