"""HyperNetworks (Ha, Dai & Le, arXiv 1609.09106) in JAX/Flax.

Dynamic hypernetworks: `HyperLSTMCell` (appendix A.2.2) and the baselines, run over sequences by
`RecurrentStack` (a `jax.lax.scan`). Static hypernetworks: `StaticHypernetwork` / `Hypernetized`
(section 3.1) emit the parameter pytree of an ordinary Flax main network.
"""

from hyper.cells import HyperLSTMCell, HyperRNNCell, LayerNormLSTMCell, LSTMCell
from hyper.char_lm import CharLM
from hyper.convnets import (HyperMNISTConvNet, HyperWideResNet, MNISTConvNet, WideResNet, WRNBlock,
                            mnist_hyper_rule, wrn_hyper_rule)
from hyper.sequence import RecurrentStack, make_cell
from hyper.static import (ConvKernelRule, Hypernetized, KernelGenerator, init_generator, StaticHypernetwork, conv_kernel_rule,
                          count_params, generate_kernels, tile_kernels)

__version__ = "0.1.0"

__all__ = [
    "CharLM", "ConvKernelRule", "WRNBlock", "init_generator", "mnist_hyper_rule", "wrn_hyper_rule", "HyperLSTMCell", "HyperMNISTConvNet", "HyperRNNCell", "HyperWideResNet", "Hypernetized",
    "KernelGenerator", "LSTMCell", "LayerNormLSTMCell", "MNISTConvNet", "RecurrentStack",
    "StaticHypernetwork", "WideResNet", "conv_kernel_rule", "count_params", "generate_kernels",
    "make_cell", "tile_kernels",
]
