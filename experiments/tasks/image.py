"""Image classification (paper section 4.1): MNIST and CIFAR-10 with normal or hypernetwork conv nets.

Batches are uint8 images; augmentation (random pad-and-crop, flips for CIFAR-10) and normalisation run
inside the jitted step. Metrics: cross-entropy loss and error rate; BatchNorm statistics are the model
state. `data.synthetic=True` replaces the data set by a small learnable one generated in-process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.data import images as image_data
from experiments.tasks import base


def synthetic_splits(name: str, train_size: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Class templates plus noise: learnable in a few steps, so a falling loss means the loop works."""
  shape = image_data.IMAGE_SHAPES[name]
  rng = np.random.default_rng(seed)
  templates = rng.uniform(0, 255, (10, *shape))
  splits = {}
  for split, n in (
    ('train', train_size),
    ('valid', max(train_size // 4, 10)),
    ('test', max(train_size // 4, 10)),
  ):
    labels = rng.integers(0, 10, n).astype(np.int32)
    noisy = 0.6 * templates[labels] + 0.4 * rng.uniform(0, 255, (n, *shape))
    splits[split] = (noisy.clip(0, 255).astype(np.uint8), labels)
  return splits


def build_model(config: ml_collections.ConfigDict):
  """The flax module of config.model (hyper.convnets; the static hypernetworks of sec. 3.1)."""
  from hyper import convnets  # pylint: disable=g-import-not-at-top

  m = config.model
  if m.name == 'mnist_conv':
    if m.hyper and hasattr(convnets, 'HyperMNISTConvNet'):
      return convnets.HyperMNISTConvNet(embedding_size=m.embedding_size)
    return convnets.MNISTConvNet(hyper=m.hyper)
  if m.name == 'wrn':
    if m.hyper:
      return convnets.HyperWideResNet(
        depth=m.depth, width=m.width, num_classes=m.num_classes, embedding_size=m.embedding_size
      )
    return convnets.WideResNet(depth=m.depth, width=m.width, num_classes=m.num_classes)
  raise ValueError(f'unknown image model {m.name!r}; use mnist_conv or wrn')


def make_task(
  config: ml_collections.ConfigDict, process_index: int = 0, process_count: int = 1, *, load_data: bool = True
) -> ImageTask:
  return ImageTask(config, process_index, process_count, load_data=load_data)


class ImageTask(base.TaskBase):
  """The mnist and cifar10 families."""

  metric_higher_is_better = False
  unit = 'images'

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    process_index: int = 0,
    process_count: int = 1,
    *,
    load_data: bool = True,
  ):
    self.config = config
    self.kind = config.data.name
    self.main_metric = config.eval.get('metric', 'error_rate') or 'error_rate'
    self.process_index, self.process_count = process_index, process_count
    if not load_data:  # Shapes only (--mode=summary): the data set is not read.
      self.model = build_model(config)
      self.image_shape = image_data.IMAGE_SHAPES[self.kind]
      self.data_source = self.kind
      return
    if config.data.synthetic:
      self.splits = synthetic_splits(self.kind, config.data.synthetic_size, seed=config.seed)
      self.data_source = f'{self.kind} (synthetic)'
    else:
      data = image_data.load_image_splits(
        self.kind, manual_dir=config.data.manual_dir or None, data_dir=config.data.data_dir or None
      )
      self.splits = dict(data.splits)
      # 'official' or 'jpeg-copy' (CIFAR-10's lossy stand-in): recorded in run_info.json and printed.
      self.data_source = f'{self.kind} ({data.source})'
    self.model = build_model(config)
    self.batches = image_data.ImageBatches(
      *self.splits['train'],
      config.train.batch_size,
      seed=config.seed,
      process_index=process_index,
      process_count=process_count,
    )
    self.steps_per_epoch = self.batches.steps_per_epoch
    self.units_per_step = config.train.batch_size
    self.image_shape = self.splits['train'][0].shape[1:]

  def init_variables(self, rng: jax.Array):
    x = jnp.zeros((1, *self.image_shape), jnp.float32)
    variables = dict(self.model.init({'params': rng}, x, train=False))
    params = variables.pop('params')
    return params, variables  # model state: {'batch_stats': ...} or {}

  def init_carry(self, batch_size: int):
    return {}

  def train_batch(self, step: int):
    return self.batches.batch(step)

  def _inputs(self, images, rng):
    if self.config.data.augment:
      return image_data.augment(rng, images, self.kind)
    return image_data.preprocess(images, self.kind)

  def loss_fn(self, params, model_state, carry, batch, rng, step):
    augment_rng, dropout_rng = jax.random.split(rng)
    x = self._inputs(batch['image'], augment_rng)
    variables = {'params': params, **model_state}
    if model_state:
      logits, updates = self.model.apply(
        variables, x, train=True, mutable=list(model_state), rngs={'dropout': dropout_rng}
      )
      model_state = dict(updates)
    else:
      logits = self.model.apply(variables, x, train=True, rngs={'dropout': dropout_rng})
    logits = logits.astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
    error = (jnp.argmax(logits, -1) != batch['label']).astype(jnp.float32).mean()
    return loss, (model_state, carry, {'loss': loss, 'error_rate': error})

  def eval_splits(self):
    return ('valid', 'test')

  def eval_batch_size(self) -> int:
    return self.config.eval.batch_size

  def num_eval_batches(self, split: str) -> int:
    n = -(-len(self.splits[split][1]) // self.eval_batch_size())
    cap = self.config.eval.max_batches
    return n if cap < 0 else min(n, cap)

  def eval_batches(self, split: str) -> Iterator[dict[str, np.ndarray]]:
    batches = image_data.eval_batches(
      *self.splits[split], self.eval_batch_size(), self.process_index, self.process_count
    )
    for i, batch in enumerate(batches):
      if i >= self.num_eval_batches(split):
        return
      yield batch

  def eval_step(self, params, model_state, carry, batch):
    x = image_data.preprocess(batch['image'], self.kind)
    logits = self.model.apply({'params': params, **model_state}, x, train=False).astype(jnp.float32)
    mask = batch['mask'].astype(jnp.float32)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
    wrong = (jnp.argmax(logits, -1) != batch['label']).astype(jnp.float32)
    return carry, {'nll': (nll * mask).sum(), 'wrong': (wrong * mask).sum(), 'count': mask.sum()}

  def eval_metrics(self, sums: dict[str, Any]):
    count = max(float(sums['count']), 1.0)
    return {'loss': float(sums['nll']) / count, 'error_rate': float(sums['wrong']) / count}

  def write_artifacts(self, params, model_state, workdir) -> dict[str, Any]:
    """kernels.png: the first 16x16-channel conv kernel of the main network (generated ones for a
    hypernetwork model), one tile per (input, output) channel pair (the paper's Figure 2 style)."""
    del model_state
    from experiments import kernel_figures  # pylint: disable=g-import-not-at-top

    main_params = kernel_figures.main_network_params(self.config, params)
    kernels = kernel_figures.conv_kernels(main_params, 16, 16)
    if not kernels:
      return {}
    path = workdir / 'kernels.png'
    kernel_figures.save_mosaic(np.asarray(kernels[0][1]), path)
    return {'kernels': path}
