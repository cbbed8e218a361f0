"""Torch modules of an architecture (hwtune.architectures): synapses, the ReLU twin, initialisation."""
from __future__ import annotations

import torch.nn as nn

from hwtune.architectures import validate
from hwtune.layers import kind_of


def make_synapse(layer: dict) -> nn.Module:
    """The torch module holding (W, b) of a weighted layer (its kind's ``torch_synapse``)."""
    return kind_of(layer).torch_synapse(layer)


def relu_twin(arch: list[dict]) -> nn.Sequential:
    """The ReLU network computing the same function as the TTFS net built from ``arch``."""
    validate(arch)
    kinds = [kind_of(layer) for layer in arch]
    last = max(i for i, cls in enumerate(kinds) if cls.weighted)
    mods: list[nn.Module] = []
    for i, (layer, cls) in enumerate(zip(arch, kinds)):
        if cls.weighted:
            mods.append(cls.torch_synapse(layer))
            if i != last:
                mods.append(nn.ReLU())
        else:
            mods.append(cls.from_spec(layer).relu_module())
    return nn.Sequential(*mods)


def glorot_init(synapses) -> None:
    """Glorot-uniform weights and zero biases (the reference code's Keras defaults)."""
    for syn in synapses:
        nn.init.xavier_uniform_(syn.weight)
        nn.init.zeros_(syn.bias)
