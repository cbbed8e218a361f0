"""Torch modules of an architecture (hwtune.architectures): synapses, the ReLU twin, initialisation."""
from __future__ import annotations

import torch.nn as nn

from hwtune.architectures import WEIGHTED, validate


def make_synapse(layer: dict) -> nn.Module:
    """The nn.Linear / nn.Conv2d holding (W, b) of a weighted layer."""
    if layer["kind"] == "dense":
        return nn.Linear(layer["in"], layer["out"])
    return nn.Conv2d(layer["in"], layer["out"], layer["kernel"], stride=layer.get("stride", 1),
                     padding=layer.get("padding", 0))


def relu_twin(arch: list[dict]) -> nn.Sequential:
    """The ReLU network computing the same function as the TTFS net built from ``arch``."""
    validate(arch)
    last = max(i for i, layer in enumerate(arch) if layer["kind"] in WEIGHTED)
    mods: list[nn.Module] = []
    for i, layer in enumerate(arch):
        kind = layer["kind"]
        if kind in WEIGHTED:
            mods.append(make_synapse(layer))
            if i != last:
                mods.append(nn.ReLU())
        elif kind == "avgpool":
            mods.append(nn.AvgPool2d(layer["kernel"]))
        elif kind == "maxpool":
            mods.append(nn.MaxPool2d(layer["kernel"]))
        else:
            mods.append(nn.Flatten())
    return nn.Sequential(*mods)


def glorot_init(synapses) -> None:
    """Glorot-uniform weights and zero biases (the reference code's Keras defaults)."""
    for syn in synapses:
        nn.init.xavier_uniform_(syn.weight)
        nn.init.zeros_(syn.bias)
