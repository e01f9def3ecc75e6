"""Every family's tiny variant trains a few steps through the one train loop and its loss falls."""

import numpy as np
import pytest

import trainer_testlib as T
from experiments import trainer


@pytest.mark.parametrize(
  'config_arg',
  ['configs/ptb_char.py:tiny', 'configs/enwik8.py:tiny', 'configs/mnist.py:tiny', 'configs/cifar10.py:tiny'],
)
def test_tiny_variant_of_every_family_learns(config_arg, tmp_path):
  config = T.get_config(
    config_arg,
    {
      'train.num_steps': 16,
      'eval.every_steps': 16,
      'checkpoint.every_steps': 16,
      'log.every_steps': 4,
      'eval.max_batches': 1,
      'sample.length': 0,
    },
  )
  with T.TraceCounter() as traces:
    out = trainer.train_and_evaluate(config, str(tmp_path))
  losses = T.train_losses(tmp_path)  # Means over steps 1-4, 5-8, 9-12, 13-16.
  assert sorted(losses) == [4, 8, 12, 16]
  assert losses[16] < losses[4] - 0.05, losses
  assert traces.count == 1
  task = trainer.make_task(config, load_data=False)
  assert np.isfinite(out['results']['test'][task.main_metric])
  if config.task == 'image':  # The main network's 16x16-channel kernels, as a PNG and in TensorBoard.
    assert (tmp_path / 'kernels.png').read_bytes()[:4] == b'\x89PNG'
    assert 'kernels' in T.tensorboard_tags(tmp_path)['image']
