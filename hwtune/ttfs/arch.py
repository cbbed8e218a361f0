"""Torch modules of an architecture (hwtune.architectures): synapses, the ReLU twin, initialisation."""
from __future__ import annotations

import torch
import torch.nn as nn

from hwtune import graph
from hwtune.layers import kind_of


def make_synapse(layer: dict) -> nn.Module:
    """The torch module holding (W, b) of a weighted layer (its kind's ``torch_synapse``)."""
    return kind_of(layer).torch_synapse(layer)


class ReLUNet(nn.Module):
    """The ReLU network of an architecture: the same graph (hwtune.graph) and the same ``synapses`` as
    its TTFS twin, with a ReLU where the TTFS net has spiking neurons, so that forward and gradients
    are equal to the TTFS net's (docs/design.md "Float TTFS model")."""

    def __init__(self, arch: list[dict], input_shape: tuple[int, ...] | None = None):
        super().__init__()
        self.arch = list(arch)
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.graph = graph.read(self.arch, self.input_shape)
        self.synapses = nn.ModuleList(make_synapse(self.arch[i]) for i in self.graph.synapses)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        values = [u]
        for layer in self.graph.layers:
            z = None
            for branch in layer.branches:
                xs = [values[p] for p in branch.sources]
                for op in branch.ops:
                    xs = [op.torch_apply(*xs)]
                if branch.synapse is None:
                    term = xs[0]
                else:
                    module = self.synapses[branch.synapse]
                    term = kind_of(self.arch[self.graph.synapses[branch.synapse]]).torch_apply(
                        module, xs[0], module.weight, module.bias)
                z = term if z is None else z + term
            if layer is self.graph.layers[-1]:
                return z
            values.append(torch.relu(z))
        raise AssertionError("unreachable: the last layer is the read-out")


def relu_twin(arch: list[dict], input_shape: tuple[int, ...] | None = None) -> ReLUNet:
    """The ReLU network computing the same function as the TTFS net built from ``arch``."""
    return ReLUNet(arch, input_shape)


def glorot_init(synapses) -> None:
    """Glorot-uniform weights and zero biases (the reference code's Keras defaults)."""
    for syn in synapses:
        nn.init.xavier_uniform_(syn.weight)
        nn.init.zeros_(syn.bias)
