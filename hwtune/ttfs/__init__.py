"""The TTFS network model (B1, Stanojevic et al. 2024): float closed form and integer-exact."""
from hwtune.architectures import ArchError, fc, preset, vgg
from hwtune.ttfs.arch import relu_twin
from hwtune.ttfs.convert import from_relu, to_relu
from hwtune.ttfs.net import DEFAULT_WINDOW, TTFSNet
from hwtune.ttfs.quant import QuantSpec

__all__ = ["ArchError", "DEFAULT_WINDOW", "QuantSpec", "TTFSNet", "fc", "from_relu", "preset",
           "relu_twin", "to_relu", "vgg"]
