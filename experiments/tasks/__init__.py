"""Experiment families the trainer drives: `experiments/tasks/<config.task>.py` (see base.Task)."""

from __future__ import annotations

import ml_collections

from experiments.tasks.base import Task, TaskBase, make_task  # noqa: F401  (the package's API)


def build(
  config: ml_collections.ConfigDict, process_index: int = 0, process_count: int = 1, *, load_data: bool = True
) -> Task:
  """The Task for config.task, with its data loaded (raises DataError on missing/empty data)."""
  return make_task(config, process_index, process_count, load_data=load_data)
