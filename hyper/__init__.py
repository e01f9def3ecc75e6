"""HyperNetworks (Ha, Dai & Le, arXiv 1609.09106) in JAX/Flax.

Dynamic hypernetworks: `HyperLSTMCell` (appendix A.2.2) and the baselines, run over sequences by
`RecurrentStack(cell=...)` (one `jax.lax.scan` per layer) and `CharLM`. Static hypernetworks:
`StaticHypernetwork` / `Hypernetized` (section 3.1) emit the parameter pytree of an ordinary Flax main
network. `hyper.partitioning` maps the modules' logical axis names to mesh axes; `hyper.nnx` makes the
modules usable from `flax.nnx`. `HandwritingModel` (section 4.3, with the mixture density of `hyper.mdn`)
and `Seq2Seq` (section 4.4, GNMT with any cell) take cells as values.
"""

from hyper import mdn, partitioning
from hyper.cells import HyperLSTMCell, HyperRNNCell, LayerNormLSTMCell, LSTMCell
from hyper.char_lm import CharLM
from hyper.convnets import (
  HyperMNISTConvNet,
  HyperWideResNet,
  MNISTConvNet,
  WideResNet,
  WRNBlock,
  mnist_hyper_rule,
  wrn_hyper_rule,
)
from hyper.handwriting import HandwritingModel
from hyper.seq2seq import Seq2Seq, beam_search_decode, greedy_decode
from hyper.sequence import RecurrentStack
from hyper.static import (
  ConvKernelRule,
  Hypernetized,
  KernelGenerator,
  StaticHypernetwork,
  conv_kernel_rule,
  count_params,
  generate_kernels,
  init_generator,
  tile_kernels,
)

__version__ = '0.1.0'

__all__ = [
  'CharLM',
  'ConvKernelRule',
  'HandwritingModel',
  'HyperLSTMCell',
  'HyperMNISTConvNet',
  'HyperRNNCell',
  'HyperWideResNet',
  'Hypernetized',
  'KernelGenerator',
  'LSTMCell',
  'LayerNormLSTMCell',
  'MNISTConvNet',
  'RecurrentStack',
  'Seq2Seq',
  'StaticHypernetwork',
  'WRNBlock',
  'WideResNet',
  'conv_kernel_rule',
  'count_params',
  'generate_kernels',
  'init_generator',
  'mnist_hyper_rule',
  'tile_kernels',
  'wrn_hyper_rule',
  'beam_search_decode',
  'greedy_decode',
  'mdn',
  'partitioning',
]
