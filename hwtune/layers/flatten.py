"""Flatten: (C, H, W) -> (C*H*W,), channel-major (torch's flatten)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hwtune.layers.base import ShapeOp


@dataclass(frozen=True)
class Flatten(ShapeOp):
    """(C, H, W) -> (C*H*W,), channel-major (torch's flatten); torch: nn.Flatten, torch.flatten,
    Tensor.flatten / view / reshape to (B, -1)."""

    kind = "flatten"
    torch_types = ("Flatten",)
    torch_functions = ("flatten", "view", "reshape")
    keeps_map = False
    reshapes_only = True

    @classmethod
    def spec_output_shape(cls, i: int, layer: dict, shape: tuple) -> tuple:
        return (math.prod(shape),)

    def torch_apply(self, x, integer: bool = False):
        return x.flatten(1)

    def output_shape(self, in_shape: tuple) -> tuple:
        return (math.prod(in_shape),)

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1)

    def matrix(self, in_shape: tuple):
        return sp.identity(math.prod(in_shape), dtype=np.int64, format="csr")

    def fan_out_in(self, fan_out: np.ndarray, in_shape: tuple) -> list[np.ndarray]:
        return [fan_out.reshape(in_shape)]
