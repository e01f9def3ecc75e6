"""Main networks of the static-hypernetwork experiments (sec. 4.1, A.3): the MNIST convnet and Wide ResNet
40-k, each as a plain flax module and as a hyper variant (`Hypernetized` around the plain one).

All models follow DESIGN.md's image-model contract: `model.init({'params': rng}, x, train=False)`,
`model.apply(variables, x, train=True, mutable=['batch_stats'])`, x float32 [B, H, W, C].
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from hyper.static import Hypernetized, Rule, conv_kernel_rule

__all__ = [
  'MNIST_BASIC_SHAPE',
  'WRN_BASIC_SHAPE',
  'HyperMNISTConvNet',
  'HyperWideResNet',
  'MNISTConvNet',
  'WRNBlock',
  'WideResNet',
  'mnist_hyper_rule',
  'wrn_hyper_rule',
]

# Basic kernels (f_h, f_w, N_in, N_out) and embedding sizes N_z of sec. 4.1.
MNIST_BASIC_SHAPE = (7, 7, 16, 16)
MNIST_EMBEDDING_SIZE = 4
WRN_BASIC_SHAPE = (3, 3, 16, 16)
WRN_EMBEDDING_SIZE = 64

_he_normal = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')


class MNISTConvNet(nn.Module):
  """The MNIST convnet of A.3.1: conv 7x7x1x16 -> 2x2 max pool -> conv 7x7x16x16 -> 2x2 max pool ->
  dense 784 -> 10 (ReLU after each conv, SAME padding, conv biases).

  The second kernel (`conv2/kernel`, 7x7x16x16 = 12,544 params) is the one the hypernetwork generates
  (`HyperMNISTConvNet`: 4,240 generator params + one N_z=4 embedding = 4,244).
  `hyper=True` (the DESIGN.md flag) runs `HyperMNISTConvNet()` as a submodule named 'hyper', so the
  variables read {'params': {'hyper': {'generator', 'embeddings', 'direct'}}}.
  """

  hyper: bool = False
  num_classes: int = 10
  features: int = 16
  kernel_size: int = 7

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.hyper:
      main = MNISTConvNet(
        num_classes=self.num_classes, features=self.features, kernel_size=self.kernel_size, parent=None
      )
      return Hypernetized(
        main=main,
        rule=mnist_hyper_rule(),
        basic_shape=(self.kernel_size, self.kernel_size, self.features, self.features),
        embedding_size=MNIST_EMBEDDING_SIZE,
        name='hyper',
      )(x, train=train)
    # no dropout / batch norm in this network: `train` changes nothing
    k = (self.kernel_size, self.kernel_size)
    x = nn.relu(nn.Conv(self.features, k, padding='SAME', kernel_init=_he_normal, name='conv1')(x))
    x = nn.max_pool(x, (2, 2), (2, 2))
    x = nn.relu(nn.Conv(self.features, k, padding='SAME', kernel_init=_he_normal, name='conv2')(x))
    x = nn.max_pool(x, (2, 2), (2, 2))
    x = x.reshape(x.shape[0], -1)  # [B, 7*7*16]
    return nn.Dense(self.num_classes, name='head')(x)


def mnist_hyper_rule() -> Rule:
  """Generate only the second conv kernel of the MNIST net (sec. 4.1)."""
  return conv_kernel_rule((7, 7), under=('conv2',))


# The hyper variants are factories (CamelCase like the modules they return): each returns a `Hypernetized`
# flax module wrapping the plain network, so the trainer builds and drives both kinds the same way.
def HyperMNISTConvNet(
  num_classes: int = 10,
  embedding_size: int = MNIST_EMBEDDING_SIZE,
  hidden_size: int | None = None,
  condition_size: int | None = None,
) -> Hypernetized:
  """MNIST convnet whose 7x7x16x16 second kernel comes from a static hypernetwork with N_z = d = 4.
  `condition_size=C` adds the conditioning path of `StaticHypernetwork` (apply with `condition=c`)."""
  return Hypernetized(
    main=MNISTConvNet(num_classes=num_classes),
    rule=mnist_hyper_rule(),
    basic_shape=MNIST_BASIC_SHAPE,
    embedding_size=embedding_size,
    hidden_size=hidden_size,
    condition_size=condition_size,
  )


def _zero_pad_shortcut(x: jax.Array, out_features: int, stride: int) -> jax.Array:
  """Parameter-free shortcut: strided average pool, then zero channels padded on both sides."""
  if stride > 1:
    x = nn.avg_pool(x, (stride, stride), (stride, stride))
  extra = out_features - x.shape[-1]
  return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))


class WRNBlock(nn.Module):
  """Pre-activation wide residual block (Zagoruyko & Komodakis): BN-ReLU-conv3x3-BN-ReLU-conv3x3 + shortcut.

  Shortcut when shapes change:
    'zero_pad' (default, reproduces Table 2): where the resolution changes (strided), a parameter-free
      strided average pool + zero-padded channels; where only the width changes (the first block of stage
      2 when k > 1, 16 -> 16k at stride 1), a 1x1 conv.
    'projection': a 1x1 (strided) conv on the pre-activated input at every shape change (standard WRN).
  """

  features: int
  stride: int = 1
  shortcut: str = 'zero_pad'
  conv_bias: bool = True
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    bn = lambda name: nn.BatchNorm(
      use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5, name=name
    )
    conv = lambda feats, k, stride, name: nn.Conv(
      feats,
      (k, k),
      (stride, stride),
      padding=((k // 2, k // 2), (k // 2, k // 2)),
      use_bias=self.conv_bias,
      kernel_init=_he_normal,
      name=name,
    )
    in_features = x.shape[-1]
    o = nn.relu(bn('bn_a')(x))
    y = conv(self.features, 3, self.stride, 'conv_a')(o)
    y = nn.relu(bn('bn_b')(y))
    y = conv(self.features, 3, 1, 'conv_b')(y)
    if in_features == self.features and self.stride == 1:
      return y + x
    if self.shortcut == 'projection' or (self.shortcut == 'zero_pad' and self.stride == 1):
      return y + conv(self.features, 1, self.stride, 'shortcut')(o)
    if self.shortcut == 'zero_pad':
      return y + _zero_pad_shortcut(o, self.features, self.stride)
    raise ValueError(f"shortcut must be 'zero_pad' or 'projection', got {self.shortcut!r}")


class WideResNet(nn.Module):
  """Wide ResNet depth-k for CIFAR (Zagoruyko & Komodakis), pre-activation blocks.

  conv1 (3x3, 3 -> 16) -> stage2 (16k, stride 1) -> stage3 (32k, stride 2) -> stage4 (64k, stride 2),
  each stage (depth-4)/6 `WRNBlock`s named `stage{s}_block{b}` -> BN-ReLU -> global average pool -> dense.
  Stages are numbered as the WRN paper's conv groups (conv1 is group 1), so "stages 2-4" are the three
  residual stages; depth 40 has 3 * 6 * 2 = 36 3x3 kernels there, all of which the hyper variant generates.

  Parameter counts (CIFAR-10, 10 classes; Table 2 of the HyperNetworks paper in brackets):
    shortcut='zero_pad', conv_bias=True (default):
      WRN 40-1 562,730 (0.563M) | hyper 96,570 (0.097M) | WRN 40-2 2,236,042 (2.236M) | hyper 148,122 (0.148M)
    shortcut='projection', conv_bias=False (the standard WRN):
      WRN 40-1 563,930 (0.564M) | hyper 97,770 (0.098M) | WRN 40-2 2,243,546 (2.244M) | hyper 155,626 (0.156M)
    shortcut='projection', conv_bias=True:
      WRN 40-1 565,386 | hyper 99,226 | WRN 40-2 2,246,474 | hyper 158,554
  Table 2 is matched only with conv biases (+16 + 1,344k params) and no projection at the strided stage
  changes; WRN 40-2's 2.236M also needs the 1x1 conv at stage 2's 16 -> 32 width change (without it the
  count is 2,235,498 = 2.235M), which is why 'zero_pad' keeps it there.
  """

  depth: int = 40
  width: int = 1
  num_classes: int = 10
  shortcut: str = 'zero_pad'
  conv_bias: bool = True
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if (self.depth - 4) % 6:
      raise ValueError(f'WRN depth must be 6n + 4, got {self.depth}')
    n = (self.depth - 4) // 6
    x = nn.Conv(
      16, (3, 3), padding=((1, 1), (1, 1)), use_bias=self.conv_bias, kernel_init=_he_normal, name='conv1'
    )(x)
    for s, (features, stride) in enumerate(
      [(16 * self.width, 1), (32 * self.width, 2), (64 * self.width, 2)], start=2
    ):
      for b in range(n):
        x = WRNBlock(
          features,
          stride if b == 0 else 1,
          self.shortcut,
          self.conv_bias,
          self.bn_momentum,
          name=f'stage{s}_block{b}',
        )(x, train=train)
    x = nn.relu(
      nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5, name='bn_final')(x)
    )
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name='head')(x)


def wrn_hyper_rule() -> Rule:
  """All 3x3 kernels of the residual stages 2-4 (not conv1, not 1x1 shortcuts)."""
  return conv_kernel_rule((3, 3), under=('stage2', 'stage3', 'stage4'))


def HyperWideResNet(
  depth: int = 40,
  width: int = 1,
  num_classes: int = 10,
  shortcut: str = 'zero_pad',
  conv_bias: bool = True,
  embedding_size: int = WRN_EMBEDDING_SIZE,
  hidden_size: int | None = None,
  bn_momentum: float = 0.9,
  condition_size: int | None = None,
) -> Hypernetized:
  """Wide ResNet whose residual-stage 3x3 kernels are tiled from 16x16x3x3 basic kernels, each from its own
  N_z = 64 embedding, all from one shared generator (sec. 4.1, Table 2). `condition_size=C` adds the
  conditioning path of `StaticHypernetwork` (C * N_z weights per tile; none by default)."""
  main = WideResNet(
    depth=depth,
    width=width,
    num_classes=num_classes,
    shortcut=shortcut,
    conv_bias=conv_bias,
    bn_momentum=bn_momentum,
  )
  return Hypernetized(
    main=main,
    rule=wrn_hyper_rule(),
    basic_shape=WRN_BASIC_SHAPE,
    embedding_size=embedding_size,
    hidden_size=hidden_size,
    condition_size=condition_size,
  )
