"""Exact integer products and convolutions for the fast emulator: torch's kernels when it can, numpy's otherwise.

The fast emulator holds integers in floats: a product or convolution of integer-valued float32
(float64) arrays is exact whatever the kernel's blocking and summation order when every partial
sum stays within 2^24 (2^53), which :func:`hwtune.layers.base.exact_dtype` guarantees by choosing
the type from the worst case. Three engines compute the same integers (tests/test_engine.py),
fastest first:

- ``"torch-int8"``: oneDNN's integer kernels through torch (``torch.ops.onednn``): u8 activations
  times s8 weights summed in int32, written as float32, wherever the operands fit (:func:`int8_fits`)
  and the layer is large enough to repay the kernels' fixed costs (:func:`int8_pays`);
  ``"torch"``'s kernels elsewhere. About 2x faster than float32 on the FC2 (AVX2; VNNI and AMX
  CPUs have faster integer units still). Used when ``"torch"`` is and a probe of both kernels
  against int64 results passes (:func:`int8_available`: the ops are torch internals, the probe
  keeps a torch whose ops differ on the float kernels).
- ``"torch"``: torch's BLAS (MKL) matmul and oneDNN's direct float convolution, on torch's
  intra-op threads (``torch.set_num_threads``). Its speed does not depend on numpy's BLAS
  recognising the CPU: numpy 1.26's OpenBLAS 0.3.23 takes an Intel Xeon of family 6, model 207
  for a ``Prescott`` and runs a generic kernel there, 3-5x slower (scripts/bench_emulator.py
  records the kernels of both sides). Used when torch is importable and computes float32 in IEEE
  arithmetic (:func:`torch_is_exact`).
- ``"numpy"``: numpy's matmul (its BLAS), a convolution as im2col + matmul
  (:meth:`hwtune.layers.Conv2d.apply`): what a torch-free install runs, and int64 (beyond 2^53).

Arrays come in and go out as numpy arrays (``torch.from_numpy`` and ``Tensor.numpy`` share memory).
:func:`dense_kernel` and :func:`conv2d_kernel` do once what depends only on the weights (the engine,
the weights converted or int8-prepacked, the int8 choice from a known bound of the inputs), for the
fast emulator's batches (hwtune.backends.emulator.FastEmulator); :func:`dense` and :func:`conv2d`
prepare them for one call, scanning that call's inputs for the bound.
"""
from __future__ import annotations

import functools
import math
from contextlib import contextmanager

import numpy as np

ENGINES = ("torch-int8", "torch", "numpy")
#: The float types torch computes here, by torch's name (int64 stays in numpy: beyond 2^53, no BLAS is exact).
_TORCH_FLOATS = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}
#: Values of torch's ``fp32_precision`` settings that keep oneDNN's float32 kernels IEEE ("bf16", "tf32" do not).
_EXACT_PRECISIONS = ("none", "ieee")
#: Largest |x_a q_a + x_b q_b| the int8 kernels may form: x86 CPUs without VNNI add two u8 x s8
#: products into int16 with saturation (vpmaddubsw) before widening to int32.
INT8_PAIR_LIMIT = 2 ** 15 - 1
#: The int8 kernels repay their fixed costs (weight prepacking, u8 copies, range checks) only on
#: sums of at least this many terms (C_in / g K K, or n_in) into at least this many outputs per
#: sample. Measured (AMD EPYC, AVX2, 1 thread, 500 samples), int8 / float32 time: 3x3 convolutions
#: of 1-8 input channels (9-72 terms) 1.0-1.5, of 16-32 channels 0.6-0.65; dense 256 -> 10-64 and
#: 784 -> 10-32 about 2, 32 -> 340 2.1, 64 -> 340 1.1, 784 -> 340 0.5, 3136 -> 256 0.85.
INT8_MIN_TERMS = INT8_MIN_OUTPUTS = 128

_forced: str | None = None


@functools.lru_cache(maxsize=1)
def _import_torch():
    """torch, or None on an install without it (the artifact and this module need only numpy)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_is_exact(torch) -> bool:
    """Whether torch's float32 CPU kernels compute in IEEE float32 as the exactness argument needs:
    oneDNN enabled (disabled, a 3x3 convolution may fall to NNPACK's Winograd transform, which
    rounds) and no reduced precision asked of its matmul or convolution (``torch.backends.mkldnn
    .{matmul,conv}.fp32_precision`` "bf16"/"tf32", or ``torch.set_float32_matmul_precision("medium")``:
    bfloat16 products on CPUs that have them)."""
    mkldnn = torch.backends.mkldnn
    if not (mkldnn.is_available() and mkldnn.enabled):
        return False
    if hasattr(mkldnn, "conv"):            # torch >= 2.9: per-operation precisions, inherited from the parents
        return mkldnn.matmul.fp32_precision in _EXACT_PRECISIONS and mkldnn.conv.fp32_precision in _EXACT_PRECISIONS
    return torch.get_float32_matmul_precision() == "highest"


@functools.lru_cache(maxsize=1)
def int8_available() -> bool:
    """Whether this torch's oneDNN integer kernels give exact products here: a dense product and a
    grouped, strided, padded convolution at the limits :func:`int8_fits` allows (x = 255 with
    |q| = 64, x = 16 with q = -128 and 127) equal their float64 results, and no op is missing or
    called differently (torch.ops.onednn is internal to torch and changes between versions)."""
    torch = _import_torch()
    if torch is None or not hasattr(torch.ops, "onednn"):
        return False
    rng = np.random.default_rng(0)
    cases = []
    for x_max, q_lo, q_hi in ((255, -64, 64), (16, -128, 127)):
        x, q = rng.integers(0, x_max + 1, (3, 4, 6, 6)), rng.integers(q_lo, q_hi + 1, (4, 2, 3, 3))
        x[:, :, 0, 0], q[:2, :, 1, 1], q[2:, :, 1, 1] = x_max, q_lo, q_hi    # centre taps meet the corner
        cases.append((x, q))
    try:
        for x, q in cases:
            rows, kernels = x.reshape(3, -1)[:, :18], q.reshape(4, -1)
            reference = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(q).double(),
                                                   stride=2, padding=1, groups=2).numpy()
            if not (np.array_equal(Int8Dense(kernels)(rows), rows @ kernels.T)
                    and np.array_equal(Int8Conv(q, 2, 1, 2)(x), reference)):
                return False
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return False
    return True


def natural() -> str:
    """The fastest engine that is exact here (see the module docstring)."""
    torch = _import_torch()
    if torch is None or not torch_is_exact(torch):
        return "numpy"
    return "torch-int8" if int8_available() else "torch"


def active() -> str:
    """The engine integer products run on now: the forced one (:func:`forced`), else :func:`natural`."""
    return _forced or natural()


@contextmanager
def forced(name: str):
    """Run the block on engine ``name`` (process-wide; tests and benchmarks compare them). An engine
    faster than :func:`natural` is refused: it is not exact here."""
    global _forced
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {name!r}")
    if ENGINES.index(name) < ENGINES.index(natural()):
        raise ValueError(f"engine {name!r} is not exact here (torch missing, its float32 not IEEE: "
                         f"hwtune.layers.engine.torch_is_exact, or its int8 kernels failing their probe); "
                         f"the fastest exact one is {natural()!r}")
    before, _forced = _forced, name
    try:
        yield
    finally:
        _forced = before


def on_torch(dtype) -> bool:
    """Whether a product computed in ``dtype`` runs on torch's kernels (``"torch"`` or ``"torch-int8"``)."""
    return np.dtype(dtype) in _TORCH_FLOATS and active() != "numpy"


def _shared(a: np.ndarray):
    """``a`` as a torch tensor sharing its memory; torch.from_numpy takes only writable,
    native-order arrays with non-negative strides: anything else is copied first."""
    if not (a.flags.writeable and a.dtype.isnative and min(a.strides, default=0) >= 0):
        a = np.array(a, dtype=a.dtype.newbyteorder("="))
    return _import_torch().from_numpy(a)


def _tensor(a: np.ndarray, dtype):
    """``a`` as a torch tensor of ``dtype`` (sharing its memory where the types agree)."""
    return _shared(a).to(getattr(_import_torch(), _TORCH_FLOATS[np.dtype(dtype)]))


def input_max(x: np.ndarray) -> float | None:
    """The largest entry of ``x`` when it is non-empty and none is negative, else None: the bound
    :func:`int8_fits` needs of inputs it has not been given one for (a scan of x)."""
    if not x.size:
        return None
    lo, hi = (float(v) for v in _import_torch().aminmax(_shared(x)))
    return hi if lo >= 0 else None


def int8_fits(x_max: float | None, weight: np.ndarray, dtype) -> bool:
    """Whether the int8 kernels compute x * weight exactly in ``dtype`` for every integer x in
    [0, x_max] (None: x may be negative, or is empty): float32 (|V| < 2^24, so the int32 sums and
    their float32 copies are exact), x_max <= 255 (u8), weights in [-128, 127] (s8), and
    2 x_max max |q| <= INT8_PAIR_LIMIT (no int16 saturation without VNNI)."""
    if np.dtype(dtype) != np.float32 or x_max is None or not weight.size:
        return False
    q_lo, q_hi = (int(v) for v in _import_torch().aminmax(_shared(weight)))
    return x_max <= 255 and q_lo >= -128 and q_hi <= 127 and 2 * x_max * max(-q_lo, q_hi) <= INT8_PAIR_LIMIT


def int8_pays(terms: int, outputs: int) -> bool:
    """Whether the int8 kernels are faster than float32 on sums of ``terms`` terms into ``outputs``
    outputs per sample (INT8_MIN_TERMS, INT8_MIN_OUTPUTS)."""
    return terms >= INT8_MIN_TERMS and outputs >= INT8_MIN_OUTPUTS


def _u8(x: np.ndarray):
    """x (integers in [0, 255], any numeric type) as a contiguous uint8 tensor."""
    return _shared(x).to(_import_torch().uint8).contiguous()


class Int8Dense:
    """x (B, n_in) @ weight.T (n_out, n_in) on oneDNN's u8 x s8 kernel, float32 (B, n_out), the
    weights prepacked once (:func:`int8_fits` operands)."""

    def __init__(self, weight: np.ndarray):
        torch = _import_torch()
        n = len(weight)
        self.packed = torch.ops.onednn.qlinear_prepack(_shared(weight).to(torch.int8).contiguous(), None)
        self.scales, self.zero_points = torch.ones(n), torch.zeros(n, dtype=torch.int64)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _import_torch().ops.onednn.qlinear_pointwise(
            _u8(x), 1.0, 0, self.packed, self.scales, self.zero_points, None, 1.0, 0,
            _import_torch().float32, "none", [], "").numpy()


class Int8Conv:
    """conv2d of x (B, C_in, H, W) with weight (C_out, C_in / g, K, K) on oneDNN's u8 x s8 kernel,
    float32 (B, C_out, H_o, W_o) in C order, the weights prepacked once (:func:`int8_fits` operands)."""

    def __init__(self, weight: np.ndarray, stride: int, padding: int, groups: int):
        torch = _import_torch()
        n = len(weight)
        self.geometry = ([stride] * 2, [padding] * 2, [1, 1], groups)
        self.scales, self.zero_points = torch.ones(n), torch.zeros(n, dtype=torch.int64)
        self.packed = torch.ops.onednn.qconv_prepack(_shared(weight).to(torch.int8).contiguous(), self.scales, 1.0, 0,
                                                     *self.geometry, None)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = _import_torch()
        out = torch.ops.onednn.qconv2d_pointwise(_u8(x), 1.0, 0, self.packed, self.scales, self.zero_points, None,
                                                 *self.geometry, 1.0, 0, torch.float32, "none", [], "")
        return out.contiguous().numpy()


def dense_kernel(weight: np.ndarray, dtype, x_max: float | None):
    """x -> x @ weight.T (weight (n_out, n_in)) for integer-valued x (B, n_in) in [0, x_max] (None:
    any integers), computed and returned in ``dtype``, with everything about the weights done once:
    the engine chosen (the active one), the weights converted or prepacked, the int8 kernels chosen
    from the bound (no scan of x). Exact when :func:`~hwtune.layers.base.exact_dtype` of the worst
    partial sum chose ``dtype``."""
    engine = active() if np.dtype(dtype) in _TORCH_FLOATS else "numpy"
    if engine == "numpy":
        transposed = weight.T.astype(dtype)
        return lambda x: np.matmul(x.astype(dtype, copy=False), transposed)
    if engine == "torch-int8" and int8_pays(weight.shape[1], len(weight)) and int8_fits(x_max, weight, dtype):
        return Int8Dense(weight)
    transposed = _tensor(weight, dtype).T
    return lambda x: _import_torch().matmul(_tensor(x, dtype), transposed).numpy()


def dense(x: np.ndarray, weight: np.ndarray, dtype) -> np.ndarray:
    """x (B, n_in) @ weight.T (weight (n_out, n_in)) of integer-valued arrays, computed and returned
    in ``dtype``: :func:`dense_kernel` prepared for this one x (its range scanned)."""
    return dense_kernel(weight, dtype, input_max(x) if np.dtype(dtype) == np.float32 else None)(x)


def matmul(a: np.ndarray, b: np.ndarray, dtype) -> np.ndarray:
    """a @ b with numpy's broadcasting (a stack of products) of integer-valued arrays, computed and
    returned in ``dtype`` on float kernels; exact when ``exact_dtype`` of the worst partial sum chose it."""
    if not on_torch(dtype):
        return np.matmul(a.astype(dtype, copy=False), b.astype(dtype, copy=False))
    return _import_torch().matmul(_tensor(a, dtype), _tensor(b, dtype)).numpy()


def conv2d_kernel(weight: np.ndarray, stride: int, padding: int, groups: int, dtype, positions: int,
                  x_max: float | None):
    """x -> torch's conv2d (cross-correlation, zero padding) of integer-valued x (B, C_in, H, W) in
    [0, x_max] (None: any integers) with ``weight`` (C_out, C_in / g, K, K) over ``positions`` output
    positions, computed and returned in ``dtype`` (B, C_out, H_o, W_o), with everything about the
    weights done once (as :func:`dense_kernel`); only where :func:`on_torch` (numpy's is
    :meth:`hwtune.layers.Conv2d.apply`'s im2col)."""
    if not on_torch(dtype):
        raise ValueError(f"conv2d runs on torch's kernels, not available for {np.dtype(dtype).name} here")
    if active() == "torch-int8" and int8_pays(weight[0].size, len(weight) * positions) and \
            int8_fits(x_max, weight, dtype):
        return Int8Conv(weight, stride, padding, groups)
    kernel, conv2d = _tensor(weight, dtype), _import_torch().nn.functional.conv2d
    return lambda x: conv2d(_tensor(x, dtype), kernel, stride=stride, padding=padding, groups=groups).numpy()


def conv2d(x: np.ndarray, weight: np.ndarray, stride: int, padding: int, groups: int, dtype) -> np.ndarray:
    """torch's conv2d of integer-valued x (B, C_in, H, W) with ``weight`` (C_out, C_in / g, K, K) in
    ``dtype``: :func:`conv2d_kernel` prepared for this one x (its range scanned)."""
    positions = math.prod((n + 2 * padding - weight.shape[2]) // stride + 1 for n in x.shape[2:])
    x_max = input_max(x) if np.dtype(dtype) == np.float32 and on_torch(dtype) else None
    return conv2d_kernel(weight, stride, padding, groups, dtype, positions, x_max)(x)
