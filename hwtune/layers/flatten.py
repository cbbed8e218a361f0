"""Flatten: (C, H, W) -> (C*H*W,), channel-major (torch's flatten)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwtune.layers.base import ShapeOp


@dataclass(frozen=True)
class Flatten(ShapeOp):
    """(C, H, W) -> (C*H*W,), channel-major (torch's flatten); torch: nn.Flatten."""

    kind = "flatten"
    torch_types = ("Flatten",)
    keeps_map = False
    reshapes_only = True

    @classmethod
    def spec_output_shape(cls, i: int, layer: dict, shape: tuple) -> tuple:
        return (math.prod(shape),)

    @classmethod
    def spec_from_torch(cls, module, i: int) -> dict:
        return {"kind": cls.kind}

    def relu_module(self):
        import torch.nn as nn
        return nn.Flatten()

    def torch_apply(self, t, on_times: bool):
        return t.flatten(1)

    def output_shape(self, in_shape: tuple) -> tuple:
        return (math.prod(in_shape),)

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1)

    def fan_out_in(self, fan_out: np.ndarray, in_shape: tuple) -> np.ndarray:
        return fan_out.reshape(in_shape)
