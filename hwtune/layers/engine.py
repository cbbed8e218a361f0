"""Exact integer matrix products and convolutions in float kernels: torch's when it can, numpy's otherwise.

The fast emulator holds integers in floats: a product or convolution of integer-valued float32
(float64) arrays is exact whatever the kernel's blocking and summation order when every partial
sum stays within 2^24 (2^53), which :func:`hwtune.layers.base.exact_dtype` guarantees by choosing
the type from the worst case. Two engines compute the same integers (tests/test_engine.py):

- ``"torch"``: torch's BLAS (MKL) matmul and oneDNN's direct convolution, on torch's intra-op
  threads (``torch.set_num_threads``). Their speed does not depend on numpy's BLAS recognising
  the CPU: numpy 1.26's OpenBLAS 0.3.23 takes an Intel Xeon of family 6, model 207 for a
  ``Prescott`` and runs a generic kernel there, 3-5x slower (scripts/bench_emulator.py records
  the kernels of both sides). Used when torch is importable and computes float32 in IEEE
  arithmetic (:func:`torch_is_exact`).
- ``"numpy"``: numpy's matmul (its BLAS), a convolution as im2col + matmul
  (:meth:`hwtune.layers.Conv2d.apply`): what a torch-free install runs, and int64 (beyond 2^53).

Arrays come in and go out as numpy arrays (``torch.from_numpy`` and ``Tensor.numpy`` share memory).
"""
from __future__ import annotations

import functools
from contextlib import contextmanager

import numpy as np

ENGINES = ("torch", "numpy")
#: The float types torch computes here (int64 stays in numpy: beyond 2^53, no BLAS does it exactly).
_TORCH_FLOATS = ("float32", "float64")
#: Values of torch's ``fp32_precision`` settings that keep oneDNN's float32 kernels IEEE ("bf16", "tf32" do not).
_EXACT_PRECISIONS = ("none", "ieee")

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


def active() -> str:
    """The engine float products run on now: "torch" or "numpy" (see the module docstring)."""
    if _forced is not None:
        return _forced
    torch = _import_torch()
    return "torch" if torch is not None and torch_is_exact(torch) else "numpy"


@contextmanager
def forced(name: str):
    """Run the block on engine ``name`` (process-wide; tests and benchmarks compare the two).
    Forcing "torch" where :func:`active` would not choose it is refused: its integers could be wrong."""
    global _forced
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {name!r}")
    if name == "torch" and (_import_torch() is None or not torch_is_exact(_import_torch())):
        raise ValueError("engine 'torch' needs torch with IEEE float32 kernels (hwtune.layers.engine.torch_is_exact)")
    before, _forced = _forced, name
    try:
        yield
    finally:
        _forced = before


def on_torch(dtype) -> bool:
    """Whether a product computed in ``dtype`` runs on torch's kernels."""
    return np.dtype(dtype).name in _TORCH_FLOATS and active() == "torch"


def _tensor(a: np.ndarray, dtype):
    """``a`` as a torch tensor of ``dtype``, sharing its memory where the types agree. torch.from_numpy
    takes only writable, native-order arrays with non-negative strides: anything else is copied first."""
    torch = _import_torch()
    if not (a.flags.writeable and a.dtype.isnative and min(a.strides, default=0) >= 0):
        a = np.array(a, dtype=dtype)
    return torch.from_numpy(a).to(getattr(torch, np.dtype(dtype).name))


def matmul(a: np.ndarray, b: np.ndarray, dtype) -> np.ndarray:
    """a @ b (numpy's broadcasting rules) of integer-valued arrays, computed and returned in
    ``dtype``; exact when :func:`~hwtune.layers.base.exact_dtype` of the worst partial sum chose ``dtype``."""
    if not on_torch(dtype):
        return np.matmul(a.astype(dtype, copy=False), b.astype(dtype, copy=False))
    return _import_torch().matmul(_tensor(a, dtype), _tensor(b, dtype)).numpy()


def conv2d(x: np.ndarray, weight: np.ndarray, stride: int, padding: int, groups: int, dtype) -> np.ndarray:
    """torch's conv2d (cross-correlation, zero padding) of x (B, C_in, H, W) with ``weight``
    (C_out, C_in / g, K, K), computed and returned in ``dtype`` (B, C_out, H_o, W_o); only where
    :func:`on_torch` (numpy's is :meth:`hwtune.layers.Conv2d.apply`'s im2col)."""
    if not on_torch(dtype):
        raise ValueError(f"conv2d runs on torch's kernels, not available for {np.dtype(dtype).name} here")
    torch = _import_torch()
    return torch.nn.functional.conv2d(_tensor(x, dtype), _tensor(weight, dtype), stride=stride, padding=padding,
                                      groups=groups).numpy()
