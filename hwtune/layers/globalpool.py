"""Global average pooling: the mean over every position of a map, one value per channel."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwtune.layers.base import ArchError, OpError, ShapeOp
from hwtune.layers.pool import block_fan_out, block_sum_matrix


@dataclass(frozen=True)
class GlobalPool(ShapeOp):
    """(C, H, W) -> (C, 1, 1): the sum over all H W positions of each channel (integers), hwtune's
    global average pooling: as for a sum pooling, the 1/(H W) is folded into the next synapse's scale,
    so the chip never divides, and on a chip the pooling is folded into the next layer's
    connectivity. The float TTFS net and its ReLU twin average. torch: nn.AdaptiveAvgPool2d(1),
    F.adaptive_avg_pool2d(x, 1); nn.AvgPool2d(H) over a square H x H map is the same sum (a sumpool)."""

    kind = "globalpool"
    torch_types = ("AdaptiveAvgPool2d",)
    torch_functions = ("adaptive_avg_pool2d",)

    @classmethod
    def spec_output_shape(cls, i: int, layer: dict, shape: tuple) -> tuple:
        return (cls.needs_map(i, shape)[0], 1, 1)

    @classmethod
    def spec_from_torch(cls, module, where: str) -> dict:
        if module.output_size not in (1, (1, 1), [1, 1]):
            raise ArchError(f"{where} (AdaptiveAvgPool2d): only output_size 1 (global average pooling) is supported, "
                            f"got {module.output_size}")
        return {"kind": cls.kind}

    @classmethod
    def spec_from_function(cls, where: str, args: tuple, kwargs: dict) -> dict:
        size = args[1] if len(args) > 1 else kwargs.get("output_size")
        if size not in (1, (1, 1), [1, 1]):
            raise ArchError(f"{where}: only output_size 1 (global average pooling) is supported, got {size}")
        return {"kind": cls.kind}

    def output_shape(self, in_shape: tuple) -> tuple:
        if len(in_shape) != 3:
            raise OpError(f"{self.kind} needs a (C, H, W) input, got shape {in_shape}")
        return (in_shape[0], 1, 1)

    def torch_apply(self, x, integer: bool = False):
        return x.sum(dim=(2, 3), keepdim=True) if integer else x.mean(dim=(2, 3), keepdim=True)

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x.sum(axis=(2, 3), keepdims=True)

    def gain_on(self, in_shape: tuple) -> int:
        return in_shape[1] * in_shape[2]

    def matrix(self, in_shape: tuple):
        return block_sum_matrix(in_shape, (in_shape[1], in_shape[2]), (1, 1))

    def fan_out_in(self, fan_out: np.ndarray, in_shape: tuple) -> list[np.ndarray]:
        return block_fan_out(fan_out, in_shape, (in_shape[1], in_shape[2]))
