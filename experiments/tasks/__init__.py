"""Experiment families the trainer drives (see base.Task): 'char_lm' and 'image'."""

from __future__ import annotations

import ml_collections


def build(config: ml_collections.ConfigDict, process_index: int = 0, process_count: int = 1):
  """The Task for config.task, with its data loaded (raises DataError on missing/empty data)."""
  if config.task == 'char_lm':
    from experiments.tasks import char_lm  # pylint: disable=g-import-not-at-top
    return char_lm.CharLMTask(config, process_index, process_count)
  if config.task == 'image':
    from experiments.tasks import image  # pylint: disable=g-import-not-at-top
    return image.ImageTask(config, process_index, process_count)
  raise ValueError(f'unknown task {config.task!r}; use char_lm or image')
