"""Which synapses Lava's stock ``Conv`` process holds, and its weights (docs/design.md, "Loihi 2 mapping").

``lava.proc.conv.process.Conv`` stores a kernel once (the layout Loihi 2's convolution cores use) and
its fixed-point model (``PyConvModelFixed``) computes, every step, the exact integer convolution of
the step's spikes, sent one step later like Dense:

- in Lava's layout: input (W, H, C), output (W_o, H_o, C_out), weight (C_out, K_W, K_H, C_in / g);
- a true convolution (scipy's ``convolve2d``: the kernel flipped), where hwtune's conv2d is torch's
  cross-correlation, so the build passes the kernel flipped on both axes;
- ``weight_exp`` and ``num_weight_bits`` are ignored: the weights are the integers as given, which
  on the chip hold 8 signed bits;
- a_out is clamped to 24 signed bits (``utils.signed_clamp``).

A stage's input becomes a Conv when its synapse is a conv2d, its ops are sum poolings the kernel can
absorb (a p x p sum pool before a conv of kernel K, stride s, padding P is the conv of kernel K p
(each weight repeated p x p), stride s p, padding P p on the unpooled map, exactly when p divides the
map's height and width: a floor-mode remainder the pooling drops would otherwise enter the padded
border), its weights times the branch's 2^shift fit 8 signed bits, and its delay is one step (Conv
has none). Everything else stays a Sparse synapse (:func:`conv_kernel` says why).
"""
# No "from __future__ import annotations": Lava executes the modules of this directory outside the package.

import typing as ty
from dataclasses import dataclass

import numpy as np

from hwtune import numerics
from hwtune.layers import Conv2d, SumPool

#: Lava's Conv model clamps its a_out to this many signed bits (lava/proc/conv/models.py).
CONV_A_OUT_BITS = 24


@dataclass
class ConvKernel:
    """One input's convolution as Lava's Conv takes it: ``weight`` (C_out, K_W, K_H, C_in / g), the
    integer kernel (2^shift and any folded pooling in it) flipped on both axes; ``in_shape`` (C, H, W)
    of the source's activations (hwtune's channel-major order); stride, padding, groups; ``pool``:
    the sum pooling folded into the kernel (1: none)."""

    weight: np.ndarray
    in_shape: ty.Tuple[int, int, int]
    stride: int
    padding: int
    groups: int
    pool: int

    @property
    def lava_in_shape(self) -> ty.Tuple[int, int, int]:
        c, h, w = self.in_shape
        return (w, h, c)


def conv_kernel(stage, delay: int) -> ty.Tuple[ty.Optional[ConvKernel], str]:
    """(the ConvKernel of ``stage``, "") when Lava's Conv can hold it with ``delay`` steps from a spike
    to its arrival, else (None, why not)."""
    synapse = stage.synapse
    if not isinstance(synapse, Conv2d):
        return None, f"a {synapse.kind} synapse is no convolution"
    if delay != 1:
        return None, f"it needs a delay of {delay} steps and Conv delivers in 1"
    c, h, w = stage.in_shapes[0]
    pool = 1
    for op in stage.ops:
        if not isinstance(op, SumPool):
            return None, f"a {op.kind} before the convolution"
        if h % op.kernel or w % op.kernel:
            return None, f"a {op.kernel}x{op.kernel} sum pooling drops the remainder of a {h}x{w} map"
        h, w, pool = h // op.kernel, w // op.kernel, pool * op.kernel
    q = np.asarray(synapse.weight, dtype=np.int64) * stage.factor
    lo, hi = numerics.signed_range(numerics.LAVA_WEIGHT_BITS)
    if q.size and (q.min() < lo or q.max() > hi):
        return None, (f"its weights times 2^{stage.shift} reach [{q.min()}, {q.max()}], beyond "
                      f"{numerics.LAVA_WEIGHT_BITS} bits (Conv ignores weight_exp)")
    q = np.repeat(np.repeat(q, pool, axis=2), pool, axis=3)
    return ConvKernel(weight=np.ascontiguousarray(q[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)).astype(np.int32),
                      in_shape=stage.in_shapes[0], stride=synapse.stride * pool, padding=synapse.padding * pool,
                      groups=synapse.groups, pool=pool), ""


def a_out_violations(where: str, pos: np.ndarray, neg: np.ndarray) -> ty.List[str]:
    """The neurons whose Conv a_out, at most ``pos`` (sum of positive weights) and at least ``-neg``
    in one step, leaves the 24 signed bits Lava's Conv clamps it to (at most 3 named)."""
    lo, hi = numerics.signed_range(CONV_A_OUT_BITS)
    return [f"{where} neuron {i}: Conv a_out reaches [{-neg[i]}, {pos[i]}] in one step, outside its "
            f"{CONV_A_OUT_BITS}-bit register [{lo}, {hi}]" for i in np.flatnonzero((pos > hi) | (-neg < lo))[:3]]


def conv_process(kernel: ConvKernel, source_port, target_port):
    """Lava's Conv for ``kernel``, reading the flat channel-major spikes of ``source_port`` and adding
    its flat channel-major a_out into ``target_port`` (ports reshaped and transposed to Lava's (W, H, C))."""
    from lava.proc.conv.process import Conv

    conv = Conv(weight=kernel.weight, input_shape=kernel.lava_in_shape, padding=kernel.padding,
                stride=kernel.stride, groups=kernel.groups, num_weight_bits=numerics.LAVA_WEIGHT_BITS)
    source_port.reshape(kernel.in_shape).transpose((2, 1, 0)).connect(conv.s_in)
    w_o, h_o, c_o = conv.output_shape
    conv.a_out.transpose((2, 1, 0)).reshape((c_o * h_o * w_o,)).connect(target_port)
    return conv
