"""Layer kinds of the deployable artifact, on integers, with numpy only (no torch).

A spiking layer of an artifact is a chain ``ops`` (:class:`Flatten`, :class:`SumPool`) that
reshapes or sums the previous layer's integer activations k, then one synapse (:class:`Dense`
or :class:`Conv2d`, holding the integer weight mantissas q). Each kind can

- ``apply`` itself to integer-valued arrays of shape (B, *in_shape), in the type the caller picks
  (a float type only where every partial sum is provably exact: :func:`exact_dtype`),
- give its ``output_shape``, its ``gain`` (how many inputs one value may sum: a bound factor),
- map a per-output fan-out back to its inputs (``fan_out_in``), so that a spike's synaptic events
  are counted through pooling, and give per-output-channel fan-in and |q| sums for the worst case.

Layouts follow torch: (C, H, W) channel-major, flattened in that order. ``Conv2d`` is a
cross-correlation (torch ``conv2d``: no kernel flip) with zero padding and equal stride/padding
on both axes; ``SumPool`` sums k x k blocks with stride k and drops the remainder (floor mode).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Largest im2col matrix (bytes) a convolution builds at once; batches are cut to fit. Small enough
#: to stay in the L2/L3 cache and to be reused by the allocator instead of page-faulted in afresh.
IM2COL_BYTES = 4 * 2 ** 20
#: Float types whose matmul is exact on integers: (dtype, largest magnitude every intermediate may reach).
_EXACT_FLOATS = ((np.float32, 2 ** 24), (np.float64, 2 ** 53))


def exact_dtype(bound: int):
    """Cheapest dtype in which a matmul of integers is exact when ``bound`` dominates it.

    IEEE floats with a p-bit significand hold every integer of magnitude <= 2^p, and a sum or
    product of such integers is exact when its true value is again <= 2^p. A matmul (any
    blocking, any order, fused multiply-add or not) only forms products q_ij k_j and partial
    sums of them, each bounded by sum_j |q_ij| |k_j| <= ``bound``; so float32 (p = 24, BLAS) or
    float64 (p = 53) give the exact integer result. Beyond 2^53: int64 (numpy, no BLAS, slow).
    """
    for dtype, limit in _EXACT_FLOATS:
        if bound <= limit:
            return dtype
    return np.int64


class OpError(ValueError):
    """A layer that does not fit its input."""


# ---- shape-only ops ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Flatten:
    """(C, H, W) -> (C*H*W,), channel-major (torch's flatten)."""

    kind = "flatten"
    gain = 1

    def output_shape(self, in_shape: tuple) -> tuple:
        return (math.prod(in_shape),)

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1)

    def fan_out_in(self, fan_out: np.ndarray, in_shape: tuple) -> np.ndarray:
        return fan_out.reshape(in_shape)

    def to_json(self) -> dict:
        return {"kind": self.kind}


@dataclass(frozen=True)
class SumPool:
    """Sum of k x k blocks of (C, H, W) with stride k, remainder rows/columns dropped.

    hwtune's average pooling: the 1/k^2 is folded into the next synapse's scale, so the chip
    never divides; on a chip the pooling is folded into the next layer's connectivity.
    """

    kernel: int
    kind = "sumpool"

    def __post_init__(self):
        if not (isinstance(self.kernel, (int, np.integer)) and not isinstance(self.kernel, bool) and self.kernel >= 1):
            raise OpError(f"sumpool kernel must be an integer >= 1, got {self.kernel!r}")

    @property
    def gain(self) -> int:
        return self.kernel ** 2

    def output_shape(self, in_shape: tuple) -> tuple:
        if len(in_shape) != 3:
            raise OpError(f"sumpool needs a (C, H, W) input, got shape {in_shape}")
        c, h, w = in_shape
        if h < self.kernel or w < self.kernel:
            raise OpError(f"sumpool kernel {self.kernel} does not fit a {h}x{w} input")
        return (c, h // self.kernel, w // self.kernel)

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

    def to_json(self) -> dict:
        return {"kind": self.kind, "kernel": int(self.kernel)}


# ---- synapses ---------------------------------------------------------------------------------------

@dataclass
class Dense:
    """V_i = sum_j q_ij x_j for (B, n_in) inputs; weight q: (n_out, n_in) signed integers."""

    weight: np.ndarray
    kind = "dense"

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def input_shape(self) -> tuple:
        return (self.weight.shape[1],)

    def output_shape(self, in_shape: tuple) -> tuple:
        if tuple(in_shape) != self.input_shape():
            raise OpError(f"dense layer takes {self.weight.shape[1]} inputs, gets shape {tuple(in_shape)}")
        return (self.out_channels,)

    def apply(self, x: np.ndarray, dtype, weight: np.ndarray | None = None) -> np.ndarray:
        """sum_j q_ij x_j (B, n_out) computed and returned in ``dtype``, exact when :func:`exact_dtype`
        of the worst case (:meth:`abs_sums` x max |x|) chose it; ``weight``: a device instance's matrix."""
        weight = self.weight if weight is None else weight
        return x.astype(dtype, copy=False) @ weight.T.astype(dtype)

    def abs_sums(self, weight: np.ndarray | None = None) -> np.ndarray:
        """sum_j |q_ij| per output neuron (out,) (``weight``: a device instance's matrix instead of q)."""
        return np.abs(self.weight if weight is None else weight).sum(axis=1, dtype=np.int64)

    def fan_in(self) -> np.ndarray:
        """Nonzero weights per output neuron (out,)."""
        return np.count_nonzero(self.weight, axis=1)

    def fan_out(self) -> np.ndarray:
        """Nonzero weights leaving each input (n_in,): synaptic events per input spike."""
        return np.count_nonzero(self.weight, axis=0)

    def to_json(self) -> dict:
        return {"kind": self.kind, "in": int(self.weight.shape[1]), "out": int(self.weight.shape[0])}


@dataclass
class Conv2d:
    """Cross-correlation of (B, C_in, H, W) with q (C_out, C_in, K, K), stride s, zero padding p
    (torch conv2d); output (B, C_out, (H + 2p - K) // s + 1, (W + 2p - K) // s + 1)."""

    weight: np.ndarray
    in_shape: tuple
    stride: int = 1
    padding: int = 0
    kind = "conv2d"

    def __post_init__(self):
        self.in_shape = tuple(int(n) for n in self.in_shape)
        if self.weight.ndim != 4 or self.weight.shape[2] != self.weight.shape[3]:
            raise OpError(f"conv2d weight must be (C_out, C_in, K, K), got shape {self.weight.shape}")
        if len(self.in_shape) != 3 or self.in_shape[0] != self.weight.shape[1]:
            raise OpError(f"conv2d with {self.weight.shape[1]} input channels cannot take input shape {self.in_shape}")
        for name, value, lo in (("stride", self.stride, 1), ("padding", self.padding, 0)):
            if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= lo):
                raise OpError(f"conv2d {name} must be an integer >= {lo}, got {value!r}")
        self.stride, self.padding = int(self.stride), int(self.padding)
        c, h, w = self.in_shape
        if h + 2 * self.padding < self.kernel or w + 2 * self.padding < self.kernel:
            raise OpError(f"conv2d kernel {self.kernel} does not fit a {h}x{w} input with padding {self.padding}")

    @property
    def kernel(self) -> int:
        return self.weight.shape[2]

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def input_shape(self) -> tuple:
        return self.in_shape

    def output_shape(self, in_shape: tuple | None = None) -> tuple:
        if in_shape is not None and tuple(in_shape) != self.in_shape:
            raise OpError(f"conv2d takes input shape {self.in_shape}, gets {tuple(in_shape)}")
        _, h, w = self.in_shape
        k, s, p = self.kernel, self.stride, self.padding
        return (self.out_channels, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)

    def abs_sums(self, weight: np.ndarray | None = None) -> np.ndarray:
        """sum |q| over (C_in, K, K) per output channel (C_out,): bounds every neuron of the channel
        (``weight`` (C_out, C_in, K, K, H_o, W_o): one kernel per position, the largest sum of each channel)."""
        weight = self.weight if weight is None else weight
        per_output = np.abs(weight).reshape(self.out_channels, self.weight[0].size, -1).sum(axis=1, dtype=np.int64)
        return per_output.max(axis=1)

    def fan_in(self) -> np.ndarray:
        """Nonzero kernel weights per output channel (C_out,): the fan-in of an interior neuron."""
        return np.count_nonzero(self.weight.reshape(self.out_channels, -1), axis=1)

    def apply(self, x: np.ndarray, dtype, weight: np.ndarray | None = None) -> np.ndarray:
        """The convolution (B, C_out, H_o, W_o) computed and returned in ``dtype``, exact when
        :func:`exact_dtype` of the worst case (:meth:`abs_sums` x max |x|) chose it: im2col columns (C_in K K, H_o W_o) per sample
        and one matmul per sample, whose result is already channel-major; samples in chunks whose
        columns fit IM2COL_BYTES. ``weight`` (C_out, C_in, K, K, H_o, W_o): one kernel per output
        position instead of the shared one (a device instance's mismatched synapses)."""
        weight = self.weight if weight is None else weight
        c_out, h_o, w_o = self.output_shape()
        taps, positions = self.weight[0].size, h_o * w_o
        out = np.empty((len(x), c_out, positions), dtype)
        chunk = max(1, IM2COL_BYTES // (taps * positions * np.dtype(dtype).itemsize))
        if weight.ndim == 4:
            kernel = weight.reshape(c_out, taps).astype(dtype)                                # (C_out, C_in K K)
            for i in range(0, len(x), chunk):
                np.matmul(kernel, self._columns(x[i:i + chunk], dtype), out=out[i:i + chunk])
        else:                                                                                 # a kernel per position
            kernel = weight.reshape(c_out, taps, positions).transpose(2, 0, 1).astype(dtype)  # (L, C_out, C_in K K)
            for i in range(0, len(x), chunk):
                columns = self._columns(x[i:i + chunk], dtype).transpose(2, 1, 0)            # (L, C_in K K, B)
                out[i:i + chunk] = np.matmul(kernel, columns).transpose(2, 1, 0)
        return out.reshape(len(x), c_out, h_o, w_o)

    def _columns(self, x: np.ndarray, dtype) -> np.ndarray:
        """im2col (B, C_in K K, H_o W_o): row (c, dy, dx) holds input channel c at (s y + dy - p,
        s x + dx - p) for output (y, x), zero outside the image; built by K^2 strided block copies."""
        b, c, h, w = x.shape
        k, s, p = self.kernel, self.stride, self.padding
        _, h_o, w_o = self.output_shape()
        padded = np.zeros((b, c, h + 2 * p, w + 2 * p), dtype)
        padded[:, :, p:p + h, p:p + w] = x
        columns = np.empty((b, c, k, k, h_o, w_o), dtype)
        for dy in range(k):
            for dx in range(k):
                columns[:, :, dy, dx] = padded[:, :, dy:dy + s * (h_o - 1) + 1:s, dx:dx + s * (w_o - 1) + 1:s]
        return columns.reshape(b, c * k * k, h_o * w_o)

    def fan_out(self) -> np.ndarray:
        """Nonzero weights leaving each input (C_in, H, W) (border inputs reach fewer outputs)."""
        c_in, h, w = self.in_shape
        _, h_o, w_o = self.output_shape()
        k, s, p = self.kernel, self.stride, self.padding
        per_tap = np.count_nonzero(self.weight, axis=0)                 # (C_in, K, K)
        fan = np.zeros((c_in, h + 2 * p, w + 2 * p), dtype=np.int64)
        for dy in range(k):
            for dx in range(k):
                fan[:, dy:dy + s * (h_o - 1) + 1:s, dx:dx + s * (w_o - 1) + 1:s] += per_tap[:, dy, dx][:, None, None]
        return fan[:, p:p + h, p:p + w]

    def to_json(self) -> dict:
        return {"kind": self.kind, "in_shape": list(self.in_shape), "out_channels": int(self.out_channels),
                "kernel": int(self.kernel), "stride": self.stride, "padding": self.padding}


OPS = {"flatten": Flatten, "sumpool": SumPool}
SYNAPSES = {"dense": Dense, "conv2d": Conv2d}


def op_from_json(d: dict):
    """A Flatten or SumPool from its JSON description (OpError on anything else)."""
    if not isinstance(d, dict) or not isinstance(d.get("kind"), str) or d["kind"] not in OPS:
        raise OpError(f"an op is {{kind: flatten | sumpool, ...}}, got {str(d)[:80]}")
    if d["kind"] == "flatten":
        if set(d) != {"kind"}:
            raise OpError(f"flatten takes no settings, got {sorted(set(d) - {'kind'})}")
        return Flatten()
    if set(d) != {"kind", "kernel"}:
        raise OpError(f"sumpool takes exactly a kernel, got {sorted(d)}")
    return SumPool(kernel=d["kernel"])


def synapse_from_json(d: dict, weight: np.ndarray):
    """A Dense or Conv2d from its JSON description and weight array, checked against each other."""
    if not isinstance(d, dict) or not isinstance(d.get("kind"), str) or d["kind"] not in SYNAPSES:
        raise OpError(f"a synapse is {{kind: dense | conv2d, ...}}, got {str(d)[:80]}")
    if d["kind"] == "dense":
        if weight.ndim != 2 or [d.get("out"), d.get("in")] != list(weight.shape):
            raise OpError(f"dense {{in: {d.get('in')}, out: {d.get('out')}}} does not match the weight shape "
                          f"{weight.shape}")
        return Dense(weight=weight)
    in_shape = d.get("in_shape")
    if not (isinstance(in_shape, list) and len(in_shape) == 3
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in in_shape)):
        raise OpError(f"conv2d in_shape must be three positive integers, got {str(in_shape)[:80]}")
    conv = Conv2d(weight=weight, in_shape=tuple(in_shape), stride=d.get("stride"), padding=d.get("padding"))
    if [d.get("out_channels"), d.get("kernel")] != [conv.out_channels, conv.kernel]:
        raise OpError(f"conv2d out_channels/kernel {d.get('out_channels')}/{d.get('kernel')} do not match the "
                      f"weight shape {weight.shape}")
    return conv
