"""2-D convolution synapse: cross-correlation with q (C_out, C_in, K, K), stride s, zero padding p."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hwtune.layers import engine
from hwtune.layers.base import ArchError, OpError, Synapse, is_count

#: Largest im2col matrix (bytes) a convolution builds at once; batches are cut to fit. Small enough
#: to stay in the L2/L3 cache and to be reused by the allocator instead of page-faulted in afresh.
IM2COL_BYTES = 4 * 2 ** 20


@dataclass
class Conv2d(Synapse):
    """Cross-correlation of (B, C_in, H, W) with q (C_out, C_in / g, K, K), stride s, zero padding p
    (torch conv2d, no kernel flip, equal stride/padding on both axes) in g groups: output channel o
    of group o // (C_out / g) reads only that group's C_in / g input channels (g = C_in: depthwise);
    output (B, C_out, (H + 2p - K) // s + 1, (W + 2p - K) // s + 1). Architecture dict: {kind:
    conv2d, in, out, kernel, padding, stride, groups}; torch: nn.Conv2d."""

    weight: np.ndarray
    in_shape: tuple
    stride: int = 1
    padding: int = 0
    groups: int = 1
    kind = "conv2d"
    aliases = ("conv",)
    keys = {"in": (1, None), "out": (1, None), "kernel": (1, None), "padding": (0, 0), "stride": (1, 1), "groups": (1, 1)}
    torch_types = ("Conv2d",)
    shares_kernels = True
    name_prefix = "conv"
    brevitas_type = "QuantConv2d"

    def __post_init__(self):
        self.in_shape = tuple(int(n) for n in self.in_shape)
        if self.weight.ndim != 4 or self.weight.shape[2] != self.weight.shape[3]:
            raise OpError(f"conv2d weight must be (C_out, C_in, K, K), got shape {self.weight.shape}")
        for name, value, lo in (("stride", self.stride, 1), ("padding", self.padding, 0), ("groups", self.groups, 1)):
            if not is_count(value, lo):
                raise OpError(f"conv2d {name} must be an integer >= {lo}, got {value!r}")
        self.stride, self.padding, self.groups = int(self.stride), int(self.padding), int(self.groups)
        if len(self.in_shape) != 3 or self.in_shape[0] != self.weight.shape[1] * self.groups:
            raise OpError(f"conv2d with {self.weight.shape[1]} input channels per group, {self.groups} groups cannot "
                          f"take input shape {self.in_shape}")
        if self.out_channels % self.groups:
            raise OpError(f"conv2d: {self.out_channels} output channels do not split into {self.groups} groups")
        c, h, w = self.in_shape
        if h + 2 * self.padding < self.kernel or w + 2 * self.padding < self.kernel:
            raise OpError(f"conv2d kernel {self.kernel} does not fit a {h}x{w} input with padding {self.padding}")

    # ---- architecture and torch
    @classmethod
    def spec_output_shape(cls, i: int, layer: dict, shape: tuple) -> tuple:
        c, h, w = cls.needs_map(i, shape)
        if c != layer["in"]:
            raise ArchError(f"layer {i} ({cls.kind}): takes {layer['in']} channels, gets {c}")
        g = cls.spec(layer, "groups")
        if layer["in"] % g or layer["out"] % g:
            raise ArchError(f"layer {i} ({cls.kind}): {g} groups do not divide {layer['in']} input and {layer['out']} "
                            "output channels")
        k, p, s = layer["kernel"], cls.spec(layer, "padding"), cls.spec(layer, "stride")
        h_o, w_o = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if h_o < 1 or w_o < 1:
            raise ArchError(f"layer {i} ({cls.kind}): kernel {k} does not fit its {h}x{w} input")
        return (layer["out"], h_o, w_o)

    @classmethod
    def spec_weights(cls, layer: dict) -> int:
        return layer["in"] // cls.spec(layer, "groups") * layer["out"] * layer["kernel"] ** 2

    @classmethod
    def spec_from_torch(cls, module, where: str) -> dict:
        m = module
        if isinstance(m.padding, str):
            raise ArchError(f"{where} (Conv2d): padding={m.padding!r} is not supported: give the padding as an "
                            "integer (padding='same' is kernel_size // 2 for an odd kernel and stride 1)")
        if m.dilation not in ((1, 1), 1) or len(set(m.stride)) != 1 or len(set(m.padding)) != 1 \
                or len(set(m.kernel_size)) != 1 or m.padding_mode != "zeros":
            raise ArchError(f"{where} (Conv2d): only square kernels, dilation=1, square stride/padding and zero "
                            "padding are supported")
        return {"kind": cls.kind, "in": m.in_channels, "out": m.out_channels, "kernel": m.kernel_size[0],
                "padding": m.padding[0], "stride": m.stride[0], **({"groups": m.groups} if m.groups != 1 else {})}

    @classmethod
    def torch_synapse(cls, layer: dict, module_type=None, **kwargs):
        import torch.nn as nn
        return (module_type or nn.Conv2d)(layer["in"], layer["out"], layer["kernel"], stride=cls.spec(layer, "stride"),
                                          padding=cls.spec(layer, "padding"), groups=cls.spec(layer, "groups"), **kwargs)

    @classmethod
    def torch_apply(cls, module, x, weight, bias):
        """torch conv2d; ``weight`` (C_out, C_in, K, K, H_o, W_o): every output position has its
        own kernel (a device instance's mismatch), as im2col columns and one einsum."""
        import torch
        import torch.nn.functional as F
        g = module.groups
        if weight.ndim == 4:
            return F.conv2d(x, weight, bias, stride=module.stride, padding=module.padding, groups=g)
        c_out, h_o, w_o = weight.shape[0], weight.shape[4], weight.shape[5]
        columns = F.unfold(x, module.kernel_size, padding=module.padding, stride=module.stride)   # (B, Cin K K, L)
        columns = columns.reshape(len(x), g, -1, h_o * w_o)                                     # (B, g, Cin/g K K, L)
        out = torch.einsum("bgkl,gokl->bgol", columns, weight.reshape(g, c_out // g, -1, h_o * w_o))
        out = out.reshape(len(x), c_out, h_o, w_o)
        return out if bias is None else out + bias.reshape(1, -1, 1, 1)

    @classmethod
    def from_spec(cls, layer: dict, weight: np.ndarray, in_shape: tuple) -> "Conv2d":
        return cls(weight=weight, in_shape=in_shape, stride=cls.spec(layer, "stride"),
                   padding=cls.spec(layer, "padding"), groups=cls.spec(layer, "groups"))

    # ---- integers
    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def kernel(self) -> int:
        return self.weight.shape[2]

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
        :func:`exact_dtype` of the worst case (:meth:`abs_sums` x max |x|) chose it, on
        hwtune.layers.engine's kernels: torch's (oneDNN int8 or float) where they run, else im2col columns
        (C_in K K, H_o W_o) per sample and one numpy matmul per sample, whose result is already
        channel-major; samples in chunks whose columns fit IM2COL_BYTES. ``weight`` (C_out, C_in,
        K, K, H_o, W_o): one kernel per output position instead of the shared one (a device
        instance's mismatched synapses): im2col, and one engine matmul per position, on chunks of
        at least C_out samples on torch."""
        weight = self.weight if weight is None else weight
        if weight.ndim == 4 and engine.on_torch(dtype):
            return engine.conv2d(x, weight, self.stride, self.padding, self.groups, dtype)
        c_out, h_o, w_o = self.output_shape()
        g, taps, positions = self.groups, self.weight[0].size, h_o * w_o                      # taps: C_in/g K K
        out = np.empty((len(x), g, c_out // g, positions), dtype)
        chunk = max(1, IM2COL_BYTES // (g * taps * positions * np.dtype(dtype).itemsize))
        if weight.ndim == 4:
            kernel = weight.reshape(g, c_out // g, taps).astype(dtype)                        # (g, C_out/g, taps)
            for i in range(0, len(x), chunk):
                np.matmul(kernel, self._columns(x[i:i + chunk], dtype), out=out[i:i + chunk])
        else:                                                                                 # a kernel per position
            kernel = weight.reshape(g, c_out // g, taps, positions).transpose(3, 0, 1, 2).astype(dtype)  # (L, g, ., taps)
            if engine.on_torch(dtype):     # its batched matmul reads the whole kernel per chunk: columns as large
                chunk = max(chunk, c_out)  # (C_out samples) make that read cheap (4x faster than 4 MiB chunks)
            for i in range(0, len(x), chunk):
                columns = self._columns(x[i:i + chunk], dtype).transpose(3, 1, 2, 0)         # (L, g, taps, B)
                out[i:i + chunk] = engine.matmul(kernel, columns, dtype).transpose(3, 1, 2, 0)
        return out.reshape(len(x), c_out, h_o, w_o)

    def prepare(self, dtype, x_max: int | None, weight: np.ndarray | None = None):
        """:meth:`apply` prepared once for inputs 0 <= x <= ``x_max`` where it runs on torch's kernels
        with a shared kernel (hwtune.layers.engine.conv2d_kernel)."""
        weight = self.weight if weight is None else weight
        if x_max is None or weight.ndim != 4 or not engine.on_torch(dtype):
            return super().prepare(dtype, x_max, weight)
        positions = math.prod(self.output_shape()[1:])
        return engine.conv2d_kernel(weight, self.stride, self.padding, self.groups, dtype, positions, x_max)

    def _columns(self, x: np.ndarray, dtype) -> np.ndarray:
        """im2col (B, g, C_in/g K K, H_o W_o): row (c, dy, dx) of group j holds input channel
        j C_in/g + c at (s y + dy - p, s x + dx - p) for output (y, x), zero outside the image; built
        by K^2 strided block copies."""
        b, c, h, w = x.shape
        k, s, p = self.kernel, self.stride, self.padding
        _, h_o, w_o = self.output_shape()
        padded = np.zeros((b, c, h + 2 * p, w + 2 * p), dtype)
        padded[:, :, p:p + h, p:p + w] = x
        columns = np.empty((b, c, k, k, h_o, w_o), dtype)
        for dy in range(k):
            for dx in range(k):
                columns[:, :, dy, dx] = padded[:, :, dy:dy + s * (h_o - 1) + 1:s, dx:dx + s * (w_o - 1) + 1:s]
        return columns.reshape(b, self.groups, c // self.groups * k * k, h_o * w_o)

    def fan_out(self) -> np.ndarray:
        """Nonzero weights leaving each input (C_in, H, W) (border inputs reach fewer outputs)."""
        c_in, h, w = self.in_shape
        _, h_o, w_o = self.output_shape()
        k, s, p = self.kernel, self.stride, self.padding
        g = self.groups
        per_tap = np.count_nonzero(self.weight.reshape(g, -1, *self.weight.shape[1:]), axis=1).reshape(c_in, k, k)
        fan = np.zeros((c_in, h + 2 * p, w + 2 * p), dtype=np.int64)
        for dy in range(k):
            for dx in range(k):
                fan[:, dy:dy + s * (h_o - 1) + 1:s, dx:dx + s * (w_o - 1) + 1:s] += per_tap[:, dy, dx][:, None, None]
        return fan[:, p:p + h, p:p + w]

    # ---- connectivity and mapper cost
    def matrix(self) -> sp.csr_matrix:
        """The synapse matrix (C_out H_o W_o, C H W), the convolution unrolled (Lava Sparse)."""
        if self.groups == 1:
            return conv_csr(self.weight, self.in_shape, self.stride, self.padding)
        c, h, w = self.in_shape
        g = self.groups
        blocks = [conv_csr(q, (c // g, h, w), self.stride, self.padding)
                  for q in self.weight.reshape(g, -1, *self.weight.shape[1:])]
        return sp.block_diag(blocks, format="csr")

    def kernel_bits(self, weight_bits: int) -> int:
        """Bits of one output channel's kernel stored once: C_in / g K^2 weights."""
        return self.weight[0].size * weight_bits

    def _groups_read(self, channels: int) -> int:
        """Groups that ``channels`` consecutive output channels belong to: at most
        ceil((channels - 1) / (C_out / g)) + 1, wherever they start."""
        return min(self.groups, -(-(channels - 1) // (self.out_channels // self.groups)) + 1)

    def _inputs(self, groups: int, rows: int, columns: int, n_in: int) -> int:
        """Inputs in ``rows`` x ``columns`` of the input map of the C_in / g input channels of ``groups``
        groups (rows summed over the groups where they differ); at most ``n_in``."""
        return min(n_in, groups * (self.in_shape[0] // self.groups) * rows * columns)

    def _span(self, outputs: int) -> int:
        """Input rows (or columns) that ``outputs`` adjacent output rows (or columns) read: (n - 1) s + K."""
        return (outputs - 1) * self.stride + self.kernel

    def tile_inputs(self, positions: int, channels: int, n_in: int) -> int:
        """Inputs read by a core holding a tile of ``positions`` output positions of ``channels``
        consecutive output channels, kernels shared: th x tw >= positions (th = isqrt(p), tw = ceil(p / th),
        clipped to the map, th grown to ceil(p / tw))."""
        _, h_o, w_o = self.output_shape()
        th = min(h_o, max(1, math.isqrt(positions)))
        tw = min(w_o, -(-positions // th))
        th = min(h_o, -(-positions // tw))
        _, h, w = self.in_shape
        return self._inputs(self._groups_read(channels), min(h, self._span(th)), min(w, self._span(tw)), n_in)

    def core_inputs(self, neurons: int, n_in: int) -> int:
        """Inputs read by a core holding ``neurons`` consecutive neurons in channel-major order
        (explicit synapses), wherever the block starts. n >= H_o W_o neurons cover whole maps of the
        ceil((n - 1) / (H_o W_o)) + 1 channels they touch. Fewer are whole-width strips of output
        rows: r = ceil((n - 1) / W_o) + 1 rows in one channel, (r - 1) s + K input rows; or split over
        two channels, r + 1 rows in two strips, at most (r - 1) s + 2 K input rows of one group's input
        channels, or of two groups' (each strip at most the H rows of its group's map)."""
        c_out, h_o, w_o = self.output_shape()
        _, h, w = self.in_shape
        per_channel = h_o * w_o
        channels = min(c_out, -(-(neurons - 1) // per_channel) + 1)
        if neurons >= per_channel:
            return self._inputs(self._groups_read(channels), h, w, n_in)
        rows = -(-(neurons - 1) // w_o) + 1
        if channels == 1:
            return self._inputs(1, min(h, self._span(rows)), w, n_in)
        return self._inputs(1, min(self._span(rows) + self.kernel, self._groups_read(2) * h), w, n_in)

    # ---- JSON
    def to_json(self) -> dict:
        return {"kind": self.kind, "in_shape": list(self.in_shape), "out_channels": int(self.out_channels),
                "kernel": int(self.kernel), "stride": self.stride, "padding": self.padding,
                **({"groups": self.groups} if self.groups != 1 else {})}

    @classmethod
    def from_json(cls, d: dict, take) -> "Conv2d":
        weight = take()
        in_shape = d.get("in_shape")
        if not (isinstance(in_shape, list) and len(in_shape) == 3
                and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in in_shape)):
            raise OpError(f"conv2d in_shape must be three positive integers, got {str(in_shape)[:80]}")
        conv = cls(weight=weight, in_shape=tuple(in_shape), stride=d.get("stride"), padding=d.get("padding"),
                   groups=d.get("groups", 1))
        if [d.get("out_channels"), d.get("kernel")] != [conv.out_channels, conv.kernel]:
            raise OpError(f"conv2d out_channels/kernel {d.get('out_channels')}/{d.get('kernel')} do not match the "
                          f"weight shape {weight.shape}")
        return conv


# ---- explicit connectivity (scipy CSR) ------------------------------------------------------------

def _axis_taps(n_in: int, k: int, stride: int, pad: int):
    """One spatial axis: for each output o and tap j in [0, k), the input coordinate, the tap and
    whether it is valid. Returns n_out, idx (n_out, k), tap (k,), valid (n_out, k); for fixed o the
    valid input coordinates increase with j."""
    n_out = (n_in + 2 * pad - k) // stride + 1
    idx = np.arange(n_out)[:, None] * stride - pad + np.arange(k)[None, :]
    return n_out, idx, np.arange(k), (idx >= 0) & (idx < n_in)


def _ragged_arange(counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(c) for c in counts, vectorised."""
    counts = np.asarray(counts, dtype=np.int64)
    ends = np.cumsum(counts)
    return np.arange(counts.sum(), dtype=np.int64) - np.repeat(ends - counts, counts)


def conv_csr(q: np.ndarray, in_shape: tuple, stride: int = 1, padding: int = 0) -> sp.csr_matrix:
    """CSR (C_out*H_o*W_o, C_in*H*W) of the cross-correlation with q (C_out, C_in, K, K), stride, zero
    padding (torch conv2d). Zero weights are left out. Rows are the layer's neurons, columns the previous layer's, both channel-major,
    so that ``matrix @ k.ravel()`` equals the layer on k; built vectorised (no Python loop over
    output positions) and directly in canonical CSR order."""
    q = np.asarray(q)
    cout, cin, kh, kw = q.shape
    _, h, w = in_shape
    ho, yy, ty, vy = _axis_taps(h, kh, stride, padding)
    wo, xx, tx, vx = _axis_taps(w, kw, stride, padding)
    valid = vy[:, None, :, None] & vx[None, :, None, :]                        # (Ho, Wo, Ly, Lx)
    pix = np.broadcast_to(yy[:, None, :, None] * w + xx[None, :, None, :], valid.shape)[valid]
    tap = np.broadcast_to((ty[:, None] * kw + tx[None, :])[None, None], valid.shape)[valid]
    per_pos = valid.reshape(ho * wo, -1).sum(axis=1)                           # taps per output position
    start = np.concatenate([[0], np.cumsum(per_pos)])[:-1]
    # one output row (c_out, pos) holds, for c_in = 0..C_in-1, the taps of pos (columns ascending)
    counts = np.repeat(per_pos, cin)
    ci_idx = np.repeat(np.tile(np.arange(cin), ho * wo), counts)
    s_idx = np.repeat(np.repeat(start, cin), counts) + _ragged_arange(counts)
    cols = ci_idx * (h * w) + pix[s_idx]
    vals = q.reshape(cout, cin, kh * kw)[:, ci_idx, tap[s_idx]]                # (C_out, nnz per channel)
    indptr = np.concatenate([[0], np.cumsum(np.tile(cin * per_pos, cout))])
    idx_dtype = np.int32 if max(indptr[-1], cin * h * w) < 2 ** 31 else np.int64
    m = sp.csr_matrix((vals.ravel().astype(np.int64), np.tile(cols, cout).astype(idx_dtype),
                       indptr.astype(idx_dtype)), shape=(cout * ho * wo, cin * h * w))
    m.has_sorted_indices = True
    m.eliminate_zeros()
    return m
