"""Pooling kinds: sum pooling (hwtune's average pooling) and max pooling (float nets only)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwtune.layers.base import ArchError, OpError, ShapeOp, is_count


class _Pool(ShapeOp):
    """k x k blocks of (C, H, W) with stride k, remainder rows/columns dropped (floor mode);
    torch: a pooling module with kernel = stride and no padding."""

    kernel: int
    keys = {"kernel": (1, None)}

    def __post_init__(self):
        if not is_count(self.kernel, 1):
            raise OpError(f"{self.kind} kernel must be an integer >= 1, got {self.kernel!r}")

    @classmethod
    def spec_output_shape(cls, i: int, layer: dict, shape: tuple) -> tuple:
        c, h, w = cls.needs_map(i, shape)
        k = layer["kernel"]
        if h // k < 1 or w // k < 1:
            raise ArchError(f"layer {i} ({cls.kind}): kernel {k} does not fit its {h}x{w} input")
        return (c, h // k, w // k)

    @classmethod
    def spec_from_torch(cls, module, i: int) -> dict:
        def single(v):
            if isinstance(v, (tuple, list)):
                if len(set(v)) != 1:
                    raise ArchError(f"module {i} ({type(module).__name__}): only square pooling is supported, got {v}")
                return int(v[0])
            return int(v)
        m = module
        kernel, stride, padding = single(m.kernel_size), single(m.stride or m.kernel_size), single(m.padding)
        if kernel != stride or padding != 0:
            raise ArchError(f"module {i} ({type(m).__name__}): pooling needs stride = kernel and no padding")
        return {"kind": cls.kind, "kernel": kernel}

    def output_shape(self, in_shape: tuple) -> tuple:
        if len(in_shape) != 3:
            raise OpError(f"{self.kind} needs a (C, H, W) input, got shape {in_shape}")
        c, h, w = in_shape
        if h < self.kernel or w < self.kernel:
            raise OpError(f"{self.kind} kernel {self.kernel} does not fit a {h}x{w} input")
        return (c, h // self.kernel, w // self.kernel)


@dataclass(frozen=True)
class SumPool(_Pool):
    """Sum of k x k blocks (integers): hwtune's average pooling. The 1/k^2 is folded into the next
    synapse's scale, so the chip never divides; on a chip the pooling is folded into the next
    layer's connectivity. The float TTFS net averages spike times (the ReLU twin: nn.AvgPool2d)."""

    kernel: int
    kind = "sumpool"
    aliases = ("avgpool",)
    torch_types = ("AvgPool2d",)

    @property
    def gain(self) -> int:
        return self.kernel ** 2

    @property
    def folded_pool(self) -> int:
        return self.kernel

    def relu_module(self):
        import torch.nn as nn
        return nn.AvgPool2d(self.kernel)

    def torch_apply(self, t, on_times: bool):
        import torch.nn.functional as F
        return F.avg_pool2d(t, self.kernel) if on_times else F.avg_pool2d(t, self.kernel, divisor_override=1)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(B, C, H, W) -> (B, C, H // k, W // k), in x's type: the sum of the k^2 strided slices
        x[:, :, dy::k, dx::k] (about 5x faster in numpy than a reduction over reshaped block axes)."""
        k = self.kernel
        ho, wo = x.shape[2] // k, x.shape[3] // k
        out = x[:, :, :ho * k:k, :wo * k:k].copy()
        for dy in range(k):
            for dx in range(k):
                if dy or dx:
                    out += x[:, :, dy:ho * k:k, dx:wo * k:k]
        return out

    def fan_out_in(self, fan_out: np.ndarray, in_shape: tuple) -> np.ndarray:
        """Each input of a block feeds its block's output; dropped rows/columns feed nothing."""
        k = self.kernel
        up = np.repeat(np.repeat(fan_out, k, axis=1), k, axis=2)
        full = np.zeros(in_shape, dtype=fan_out.dtype)
        full[:, :up.shape[1], :up.shape[2]] = up
        return full


@dataclass(frozen=True)
class MaxPool(_Pool):
    """Max of k x k blocks: in the float TTFS net the min of spike times (first spike wins). No
    single-spike integer mapping on these targets: an artifact cannot hold it."""

    kernel: int
    kind = "maxpool"
    torch_types = ("MaxPool2d",)
    not_in_artifact = "max pooling has no single-spike integer mapping on these targets; use average pooling"

    def relu_module(self):
        import torch.nn as nn
        return nn.MaxPool2d(self.kernel)

    def torch_apply(self, t, on_times: bool):
        import torch.nn.functional as F
        return -F.max_pool2d(-t, self.kernel) if on_times else F.max_pool2d(t, self.kernel)
