"""MNIST with a static hypernetwork (paper section 4.1, Table 1).

`--config=configs/mnist.py:<variant>`: `conv` (two 7x7 conv layers, 16 filters, learned directly),
`hyper_conv` (the second layer's 7x7x16x16 kernel generated from N_z = 4 embeddings), `tiny` for tests.
Training: Adam 0.001, batch 1000, 55k/5k/10k split, best checkpoint by validation error.
"""

import ml_collections

from configs import common


def _row(hyper: bool):
  def apply(config: ml_collections.ConfigDict) -> None:
    # Second-layer kernel parameters (the paper gives no total) and test error, section 4.1.
    config.paper.params = '4,244 (kernel 2)' if hyper else '12,544 (kernel 2)'
    config.paper.test = '0.76% error' if hyper else '0.72% error'
    common.image(
      config,
      data='mnist',
      model='mnist_conv',
      hyper=hyper,
      depth=0,
      width=0,
      embedding_size=4,  # Sec. 4.1: N_z = 4 for the MNIST kernel generator.
      batch_size=1000,
      optimizer='adam',
      learning_rate=0.001,
      schedule='constant',
      decay_epochs=(),
      decay_factor=1.0,
      weight_decay=0.0,
      num_epochs=100.0,  # 55 steps per epoch; the best validation checkpoint is kept.
      eval_every_steps=275,
    )  # Every 5 epochs.
    config.checkpoint.every_steps = 275
    config.log.every_steps = 55

  return apply


def _tiny(config: ml_collections.ConfigDict) -> None:
  _row(hyper=True)(config)
  config.paper.params = config.paper.test = ''
  config.data.synthetic = True
  config.data.synthetic_size = 256
  config.train.batch_size = 32
  config.train.num_epochs = -1.0
  config.train.num_steps = 30
  config.eval.every_steps = 15
  config.eval.batch_size = 64
  config.checkpoint.every_steps = 15
  config.log.every_steps = 5


VARIANTS = {'conv': _row(hyper=False), 'hyper_conv': _row(hyper=True), 'tiny': _tiny}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return common.select_variant('mnist', VARIANTS, arg, default='hyper_conv')
