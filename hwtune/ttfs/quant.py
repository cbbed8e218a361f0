"""Quantization state of a TTFS net: brevitas weight quantizers and the integer time grid.

The integer rules themselves live in :mod:`hwtune.numerics`; this module only connects them
to torch parameters with straight-through gradients (QAT).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import logging

import torch
import torch.nn as nn

# brevitas imports torch.utils.cpp_extension, which warns "No CUDA runtime is found" on every
# CPU-only machine where /usr/local exists; that warning says nothing about hwtune's work.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

from hwtune.interrupts import sigint_deferred  # noqa: E402
from hwtune.layers import kind_of  # noqa: E402
from hwtune.numerics import DEFAULT_SCALE_EXPONENTS, WeightFormat  # noqa: E402

with sigint_deferred():   # a Ctrl-C during brevitas' import would vanish in its bare except: delivered after
    import brevitas.nn
    from brevitas.quant import Int8WeightPerTensorFixedPoint
    from brevitas.quant.fixed_point import Int8WeightPerChannelFixedPoint


@dataclass
class QuantSpec:
    """Time grid [T_0 (input), T_1..T_N (hidden)] in steps, the weight format (None = float)
    and the synaptic delay d in steps (latency = sum_n (T_n + d))."""

    steps: list[int]
    weights: WeightFormat | None = None
    delay: int = 1

    def to_dict(self) -> dict:
        return {"steps": list(self.steps), "weights": None if self.weights is None else asdict(self.weights),
                "delay": self.delay}

    @classmethod
    def from_dict(cls, d: dict) -> "QuantSpec":
        w = d.get("weights")
        if w is not None:
            w = WeightFormat(**{**w, "exp_range": tuple(w.get("exp_range", DEFAULT_SCALE_EXPONENTS))})
        return cls(steps=[int(s) for s in d["steps"]], weights=w, delay=int(d.get("delay", 1)))


def quant_synapse(layer: dict, syn: nn.Module, fmt: WeightFormat, per_layer: bool) -> nn.Module:
    """The brevitas module (QuantLinear, QuantConv2d: the kind's ``brevitas_type``) with power-of-two
    scale holding the same (W, b) as ``syn``, the synapse of architecture layer ``layer``.

    ``per_layer``: one scale per layer whatever the format says: the read-out's (its logits are
    compared across neurons) and a join's branches' (their units must be powers of two apart in
    every channel alike, hwtune.ttfs.net).
    """
    per_channel = fmt.scale == "per-channel" and not per_layer
    quantizer = Int8WeightPerChannelFixedPoint if per_channel else Int8WeightPerTensorFixedPoint
    kind = kind_of(layer)
    new = kind.torch_synapse(layer, getattr(brevitas.nn, kind.brevitas_type), bias=True, weight_quant=quantizer,
                             weight_bit_width=fmt.bits, weight_narrow_range=fmt.narrow, dtype=syn.weight.dtype)
    new.load_state_dict({"weight": syn.weight.detach(), "bias": syn.bias.detach()})
    return new


def float_synapse(layer: dict, syn: nn.Module) -> nn.Module:
    """The plain torch module of ``layer`` with the same (W, b) as ``syn`` (undo :func:`quant_synapse`)."""
    new = kind_of(layer).torch_synapse(layer, dtype=syn.weight.dtype)
    new.load_state_dict({"weight": syn.weight.detach(), "bias": syn.bias.detach()})
    return new


def weight_mantissa(syn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, s): integer-valued weight mantissas (straight-through gradient 1/s) and scales.

    q = W_q / s is exact because s is a power of two; s has shape (out, 1[, 1, 1]) or ().
    """
    qt = syn.quant_weight()
    scale = qt.scale.detach()
    return qt.value / scale, scale


def scale_per_neuron(scale: torch.Tensor, out: int) -> torch.Tensor:
    """Weight scale as one value per output channel, shape (out,)."""
    return scale.reshape(-1).expand(out) if scale.numel() == 1 else scale.reshape(out)
