"""Pooling kinds over k x k blocks: sum pooling (hwtune's average pooling) and max pooling (float nets only)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hwtune.layers.base import ArchError, OpError, ShapeOp, is_count


def block_sum_matrix(in_shape: tuple, kernel, out_hw: tuple[int, int]) -> sp.csr_matrix:
    """CSR (C H_o W_o, C H W) summing each output's block of kernel = k or (k_h, k_w) (stride = kernel,
    top-left aligned; rows and columns beyond H_o k_h, W_o k_w feed nothing)."""
    c, h, w = in_shape
    ho, wo = out_hw
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    ch, y, x = np.meshgrid(np.arange(c), np.arange(ho * kh), np.arange(wo * kw), indexing="ij")
    rows = (ch * ho + y // kh) * wo + x // kw
    cols = (ch * h + y) * w + x
    m = sp.csr_matrix((np.ones(rows.size, dtype=np.int64), (rows.ravel(), cols.ravel())), shape=(c * ho * wo, c * h * w))
    m.sort_indices()
    return m


def block_fan_out(fan_out: np.ndarray, in_shape: tuple, kernel) -> list[np.ndarray]:
    """Each input of a block (kernel = k or (k_h, k_w)) feeds its block's output; rows and columns left
    over feed nothing."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    up = np.repeat(np.repeat(fan_out, kh, axis=1), kw, axis=2)
    full = np.zeros(in_shape, dtype=fan_out.dtype)
    full[:, :up.shape[1], :up.shape[2]] = up
    return [full]


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
    def spec_from_torch(cls, module, where: str) -> dict:
        return cls._spec(f"{where} ({type(module).__name__})", module.kernel_size, module.stride, module.padding,
                         getattr(module, "ceil_mode", False))

    @classmethod
    def spec_from_function(cls, where: str, args: tuple, kwargs: dict) -> dict:
        """F.avg_pool2d / F.max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False)."""
        named = dict(zip(("kernel_size", "stride", "padding", "ceil_mode"), args[1:]), **kwargs)
        return cls._spec(where, named.get("kernel_size"), named.get("stride"), named.get("padding", 0),
                         named.get("ceil_mode", False))

    @classmethod
    def _spec(cls, where: str, kernel_size, stride, padding, ceil_mode) -> dict:
        def single(v):
            if isinstance(v, (tuple, list)):
                if len(set(v)) != 1:
                    raise ArchError(f"{where}: only square pooling is supported, got {v}")
                return v[0]
            return v
        kernel, stride, padding = single(kernel_size), single(stride or kernel_size), single(padding)
        if not isinstance(kernel, int) or kernel != stride or padding != 0 or ceil_mode:
            raise ArchError(f"{where}: pooling needs an integer kernel, stride = kernel, no padding, floor mode")
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
    layer's connectivity. The float TTFS net and its ReLU twin average the activations."""

    kernel: int
    kind = "sumpool"
    aliases = ("avgpool",)
    torch_types = ("AvgPool2d",)
    torch_functions = ("avg_pool2d",)

    def gain_on(self, in_shape: tuple) -> int:
        return self.kernel ** 2

    def torch_apply(self, x, integer: bool = False):
        import torch.nn.functional as F
        return F.avg_pool2d(x, self.kernel, divisor_override=1 if integer else None)

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

    def matrix(self, in_shape: tuple):
        return block_sum_matrix(in_shape, self.kernel, self.output_shape(in_shape)[1:])

    def fan_out_in(self, fan_out: np.ndarray, in_shape: tuple) -> list[np.ndarray]:
        return block_fan_out(fan_out, in_shape, self.kernel)


@dataclass(frozen=True)
class MaxPool(_Pool):
    """Max of k x k blocks: in the float TTFS net the largest activation (the first spike) wins. No
    single-spike integer mapping on these targets: an artifact cannot hold it."""

    kernel: int
    kind = "maxpool"
    torch_types = ("MaxPool2d",)
    torch_functions = ("max_pool2d",)
    not_in_artifact = "max pooling has no single-spike integer mapping on these targets; use average pooling"

    def torch_apply(self, x, integer: bool = False):
        import torch.nn.functional as F
        return F.max_pool2d(x, self.kernel)

    def apply(self, x: np.ndarray) -> np.ndarray:
        raise OpError(self.not_in_artifact)

    def matrix(self, in_shape: tuple):
        raise OpError(self.not_in_artifact)

    def fan_out_in(self, fan_out: np.ndarray, in_shape: tuple) -> list[np.ndarray]:
        raise OpError(self.not_in_artifact)
