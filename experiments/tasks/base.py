"""The protocol between the one train loop (experiments/trainer.py) and an experiment family.

A task owns the model, the data and the loss; the trainer owns the state pytree, the mesh, the optimizer,
checkpoints and metrics. Everything a task returns for the jitted step is a pure function of its inputs,
so the trainer can `jax.eval_shape` it, shard it and trace it once.
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol

import jax
import numpy as np

PyTree = Any
Batch = dict[str, np.ndarray]


class Task(Protocol):
  """What the trainer needs from an experiment family (char_lm, image)."""

  main_metric: str  # Metric that picks the best checkpoint, lower is better ('bpc', 'error_rate').
  unit: str  # What a batch counts, for the rate line ('chars', 'images').
  units_per_step: int  # Global units per training step.
  steps_per_epoch: int  # Training steps in one pass over the training split.

  def init_variables(self, rng: jax.Array) -> tuple[PyTree, PyTree]:
    """(params, model_state) for a fresh run; pure, so `jax.eval_shape` gives their shapes."""

  def init_carry(self, batch_size: int) -> PyTree:
    """State carried from one batch to the next ([batch, ...] leaves; {} for stateless models)."""

  def train_batch(self, step: int) -> Batch:
    """This process's rows of the global training batch at `step` (stateless by step)."""

  def loss_fn(self, params: PyTree, model_state: PyTree, carry: PyTree, batch: dict[str, jax.Array],
              rng: jax.Array, step: jax.Array) -> tuple[jax.Array, tuple[PyTree, PyTree, dict]]:
    """Scalar training loss and (new_model_state, new_carry, metrics: name -> scalar mean)."""

  def eval_splits(self) -> tuple[str, ...]:
    """Names of the splits this task can evaluate."""

  def eval_batch_size(self) -> int:
    """Global rows per eval batch."""

  def eval_batches(self, split: str) -> Iterator[Batch]:
    """This process's rows of every eval batch of `split`, in order (carry flows across them)."""

  def num_eval_batches(self, split: str) -> int:
    """How many batches `eval_batches(split)` yields (for the progress bar)."""

  def eval_step(self, params: PyTree, model_state: PyTree, carry: PyTree,
                batch: dict[str, jax.Array]) -> tuple[PyTree, dict[str, jax.Array]]:
    """(new_carry, sums): additive statistics of one eval batch (e.g. summed nll and count)."""

  def eval_metrics(self, sums: dict[str, float]) -> dict[str, float]:
    """Final metrics of a split from its summed statistics."""
