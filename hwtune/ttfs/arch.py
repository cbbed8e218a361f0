"""Architectures as data: a list of layer dicts shared by the ReLU twin and the TTFS net.

Kinds: ``dense`` {in, out}, ``conv`` {in, out, kernel, padding, stride}, ``avgpool`` {kernel},
``maxpool`` {kernel}, ``flatten``. Every weighted layer but the last is followed by a ReLU
(a spiking layer in the TTFS net); the last weighted layer is the read-out.
"""
from __future__ import annotations

import math

import torch.nn as nn

WEIGHTED = ("dense", "conv")
KINDS = WEIGHTED + ("avgpool", "maxpool", "flatten")


class ArchError(ValueError):
    """An architecture list that cannot be built."""


def fc(input_shape: tuple[int, ...], hidden: list[int], classes: int) -> list[dict]:
    """Fully connected net, e.g. the paper's FC2: fc((1, 28, 28), [340], 10) = 784-340-10."""
    sizes = [math.prod(input_shape), *hidden, classes]
    return [{"kind": "flatten"}] + [{"kind": "dense", "in": a, "out": b} for a, b in zip(sizes, sizes[1:])]


def vgg(input_shape: tuple[int, ...], channels: list, dense: list[int], classes: int) -> list[dict]:
    """VGG-style net: 3x3 'same' convs, 'P' = 2x2 average pooling, then dense layers."""
    arch, c, h, w = [], *input_shape
    for item in channels:
        if item == "P":
            arch.append({"kind": "avgpool", "kernel": 2})
            h, w = h // 2, w // 2
        else:
            arch.append({"kind": "conv", "in": c, "out": int(item), "kernel": 3, "padding": 1, "stride": 1})
            c = int(item)
    return arch + fc((c, h, w), dense, classes)


PRESETS = {
    "fc": lambda shape, classes: fc(shape, [340], classes),
    "fc-small": lambda shape, classes: fc(shape, [64], classes),
    "vgg": lambda shape, classes: vgg(shape, [32, 32, "P", 64, 64, "P"], [256], classes),
    "vgg-small": lambda shape, classes: vgg(shape, [8, "P", 16], [32], classes),
}


def preset(name: str, input_shape: tuple[int, ...], classes: int) -> list[dict]:
    if name not in PRESETS:
        raise ArchError(f"unknown architecture preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name](tuple(input_shape), classes)


def validate(arch: list[dict]) -> None:
    """Check kinds and required keys; the read-out must be the last weighted layer."""
    weighted = [i for i, layer in enumerate(arch) if layer.get("kind") in WEIGHTED]
    for i, layer in enumerate(arch):
        if layer.get("kind") not in KINDS:
            raise ArchError(f"layer {i}: unknown kind {layer.get('kind')!r}; known: {', '.join(KINDS)}")
    if not weighted:
        raise ArchError("architecture has no dense or conv layer")
    if weighted[-1] != max(i for i, layer in enumerate(arch) if layer["kind"] != "flatten"):
        raise ArchError("the last weighted layer (read-out) must come after every pooling layer")


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
