"""Parameter counts of the static-hypernetwork models against the paper (Table 2, sec. 4.1), by eval_shape."""

import jax
import jax.numpy as jnp
import pytest

from hyper.convnets import HyperMNISTConvNet, HyperWideResNet, MNISTConvNet, WideResNet
from hyper.static import count_params

CIFAR = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
MNIST = jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32)


def n_params(model, x):
  return count_params(
    jax.eval_shape(lambda x: model.init({'params': jax.random.key(0)}, x, train=False), x)['params']
  )


# (width, hyper, exact count, Table 2 in millions)
TABLE2 = [
  (1, False, 562_730, 0.563),
  (1, True, 96_570, 0.097),
  (2, False, 2_236_042, 2.236),
  (2, True, 148_122, 0.148),
]


@pytest.mark.parametrize('width,hyper,exact,paper', TABLE2)
def test_wrn_table2_default_block(width, hyper, exact, paper):
  model = (HyperWideResNet if hyper else WideResNet)(depth=40, width=width)
  n = n_params(model, CIFAR)
  assert n == exact
  assert round(n / 1e6, 3) == paper


# Standard WRN (1x1 projection shortcuts, no conv biases): 0.564 / 0.098 / 2.244 / 0.156M, not Table 2.
PROJECTION = [
  (1, False, False, 563_930),
  (1, True, False, 97_770),
  (2, False, False, 2_243_546),
  (2, True, False, 155_626),
  (1, False, True, 565_386),
  (2, True, True, 158_554),
]


@pytest.mark.parametrize('width,hyper,conv_bias,exact', PROJECTION)
def test_wrn_projection_shortcut_counts(width, hyper, conv_bias, exact):
  model = (HyperWideResNet if hyper else WideResNet)(
    depth=40, width=width, shortcut='projection', conv_bias=conv_bias
  )
  assert n_params(model, CIFAR) == exact


def test_hyper_wrn_breakdown():
  # Generator 75,920 (16x16x3x3 from N_z = d = 64) + 242 embeddings of 64 (WRN 40-1) + ordinary leaves.
  hn = HyperWideResNet(depth=40, width=1).hypernetwork(CIFAR.shape)
  hp = jax.eval_shape(hn.init, jax.random.key(0))
  assert count_params(hp['generator']) == 75_920
  assert count_params(hp['embeddings']) == 242 * 64
  plain = n_params(WideResNet(depth=40, width=1), CIFAR)
  generated = sum(9 * a * b * 256 for a, b in (hn.tile_grid(p) for p in hn.generated_paths))
  assert count_params(hp['direct']) == plain - generated


def test_mnist_second_kernel_12544_vs_4244():
  plain = jax.eval_shape(lambda x: MNISTConvNet().init({'params': jax.random.key(0)}, x), MNIST)
  assert count_params(plain['params']['conv2']['kernel']) == 12_544
  hyper = jax.eval_shape(lambda x: HyperMNISTConvNet().init({'params': jax.random.key(0)}, x), MNIST)
  hp = hyper['params']
  # Generator (eq. 1-2 with N_z = d = 4) + the one embedding of conv2's single 16x16 tile.
  assert count_params(hp['generator']) + count_params(hp['embeddings']) == 4_244
  assert count_params(hp['embeddings']) == 4
  assert n_params(MNISTConvNet(), MNIST) - n_params(HyperMNISTConvNet(), MNIST) == 12_544 - 4_244


def test_conditioning_adds_c_times_n_z_per_tile_and_nothing_by_default():
  # Conditioning off (the default) is Table 2's count; C = 8 adds W_c^j [N_z x C] for each of the 242 tiles.
  assert n_params(HyperWideResNet(depth=40, width=1, condition_size=None), CIFAR) == 96_570
  assert n_params(HyperWideResNet(depth=40, width=1, condition_size=8), CIFAR) == 96_570 + 242 * 64 * 8
  assert n_params(HyperMNISTConvNet(condition_size=3), MNIST) - n_params(HyperMNISTConvNet(), MNIST) == 4 * 3
