"""Exact ReLU -> TTFS conversion (B1: SNN weights = ReLU weights).

Accepted: an ``nn.Sequential`` (nested Sequentials are flattened) of Linear / Conv2d /
BatchNorm (directly after a Linear or Conv2d, folded: W' = kappa W, b' = kappa (b - mu) + beta,
kappa = gamma / sqrt(var + eps)) / ReLU / AvgPool2d (kernel = stride, no padding) / Flatten /
Dropout (dropped) (:data:`ACCEPTED`). MaxPool2d is refused: no target's integer artifact has max
pooling (export would refuse the net), so it is refused here, before any work. The ReLU net must take pixel intensities u in [0, 1] (hwtune.data).
Windows: L_n = margin x X_n, X_n = largest activation of layer n on the calibration data.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from hwtune.layers import KINDS, ArchError, is_weighted
from hwtune.ttfs.arch import relu_twin
from hwtune.ttfs.net import TTFSNet
from hwtune.ttfs.windows import layer_maxima, set_windows


ACCEPTED = ("an nn.Sequential of Linear, Conv2d (integer padding), BatchNorm1d/2d after a Linear or Conv2d, ReLU, "
            "AvgPool2d (kernel = stride), Flatten and Dropout")


def _modules(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        return [m for child in model for m in _modules(child)]
    return [model]


def _kind_of_module(m: nn.Module):
    """The layer kind (hwtune.layers) that reads torch module ``m`` (its ``torch_types``), or None."""
    for cls in KINDS.values():
        if any(isinstance(m, getattr(nn, name)) for name in cls.torch_types):
            return cls
    return None


def _fold_bn(weight: torch.Tensor, bias: torch.Tensor, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    kappa = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shape = (-1,) + (1,) * (weight.ndim - 1)
    return weight * kappa.reshape(shape), kappa * (bias - bn.running_mean) + bn.bias


def parse_sequential(model: nn.Module) -> tuple[list[dict], list[tuple[torch.Tensor, torch.Tensor]]]:
    """(arch, [(W, b)]) of a ReLU nn.Sequential, with batch norms folded; clear errors otherwise."""
    if not isinstance(model, nn.Sequential):
        raise ArchError(f"a {type(model).__name__} cannot be converted: convert takes {ACCEPTED} (write the net "
                        "as an nn.Sequential)")
    arch, params = [], []
    mods = [m for m in _modules(model) if not isinstance(m, nn.Dropout)]
    prev, after_synapse = None, False    # after_synapse: prev is a synapse or its batch norm
    for i, m in enumerate(mods):
        kind = _kind_of_module(m)
        if kind is not None and kind.not_in_artifact:
            raise ArchError(f"module {i} ({type(m).__name__}): {kind.not_in_artifact} (export would refuse it); "
                            f"retrain without it. Accepted: {ACCEPTED}")
        is_bn = isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))
        if kind is not None:
            arch.append(kind.spec_from_torch(m, i))
            if kind.weighted:
                bias = m.bias if m.bias is not None else torch.zeros(m.weight.shape[0], dtype=m.weight.dtype)
                params.append((m.weight.detach().clone(), bias.detach().clone()))
        elif is_bn:
            if not (after_synapse and not isinstance(prev, (nn.BatchNorm1d, nn.BatchNorm2d))):
                raise ArchError(f"module {i} ({type(m).__name__}): batch norm must directly follow a Linear or "
                                f"Conv2d (before its ReLU); found it after {type(prev).__name__}")
            params[-1] = _fold_bn(*params[-1], m)
        elif isinstance(m, nn.ReLU):
            if not after_synapse:
                raise ArchError(f"module {i} (ReLU): must follow a Linear/Conv2d (or its batch norm)")
            arch[-1]["relu"] = True
        else:
            raise ArchError(f"module {i} ({type(m).__name__}) cannot be converted to TTFS; accepted: {ACCEPTED}")
        after_synapse = (kind is not None and kind.weighted) or is_bn
        prev = m
    weighted = [layer for layer in arch if is_weighted(layer)]
    for j, layer in enumerate(weighted):
        has_relu = layer.pop("relu", False)
        if has_relu != (j < len(weighted) - 1):
            where = "the read-out (last) layer must not" if has_relu else f"weighted layer {j} must"
            raise ArchError(f"{where} be followed by a ReLU")
    return arch, params


def from_relu(model: nn.Module, calibration_data: torch.Tensor, margin: float = 1.5,
              batch_size: int | None = None) -> TTFSNet:
    """Exact TTFS twin of a trained ReLU net; windows L_n = margin x layer maxima on the data."""
    arch, params = parse_sequential(model)
    dtype = params[0][0].dtype
    net = TTFSNet(arch, tuple(calibration_data.shape[1:]), dtype=dtype)
    with torch.no_grad():
        for syn, (w, b) in zip(net.synapses, params):
            syn.weight.copy_(w)
            syn.bias.copy_(b)
    set_windows(net, [margin * x for x in layer_maxima(net, calibration_data, batch_size)])
    return net


def to_relu(net: TTFSNet) -> nn.Sequential:
    """The ReLU twin of a float TTFS net, with the same (W, b)."""
    model = relu_twin(net.arch).to(net.dtype)
    synapses = [m for m in model if getattr(_kind_of_module(m), "weighted", False)]
    with torch.no_grad():
        for syn, src in zip(synapses, net.synapses):
            syn.weight.copy_(src.weight)
            syn.bias.copy_(src.bias)
    return model
