"""Architectures as data: a list of node dicts shared by the ReLU twin and the TTFS net (no torch).

Each dict is ``{"kind": NAME, ...}`` for a kind of hwtune.layers (dense {in, out}, conv2d {in, out,
kernel, padding, stride, groups}, sumpool {kernel} (average pooling in the ReLU twin), maxpool
{kernel}, flatten, and the graph kinds), with an optional ``name`` and ``inputs`` (default: the node
before); the kind's class checks its keys and computes its output shape, hwtune.graph reads the
graph and the spiking layers it makes. The presets are chains: every weighted layer but the last is
followed by a ReLU (a spiking layer in the TTFS net); the last weighted layer is the read-out. Older
names (conv, avgpool: model files of format 1-2) are read as their kind.
"""
from __future__ import annotations

import math

from hwtune import graph
from hwtune.layers import WEIGHTED, ArchError, canonical

__all__ = ["ArchError", "WEIGHTED", "fc", "vgg", "resnet", "PRESETS", "PRESET_HELP", "preset", "validate", "output_shapes",
           "canonical_arch", "n_hidden"]


def fc(input_shape: tuple[int, ...], hidden: list[int], classes: int) -> list[dict]:
    """Fully connected net, e.g. the paper's FC2: fc((1, 28, 28), [340], 10) = 784-340-10."""
    sizes = [math.prod(input_shape), *hidden, classes]
    return [{"kind": "flatten"}] + [{"kind": "dense", "in": a, "out": b} for a, b in zip(sizes, sizes[1:])]


def vgg(input_shape: tuple[int, ...], channels: list, dense: list[int], classes: int) -> list[dict]:
    """VGG-style net: 3x3 'same' convs, 'P' = 2x2 average pooling, then dense layers."""
    arch, c, h, w = [], *input_shape
    for item in channels:
        if item == "P":
            arch.append({"kind": "sumpool", "kernel": 2})
            h, w = h // 2, w // 2
        else:
            arch.append({"kind": "conv2d", "in": c, "out": int(item), "kernel": 3, "padding": 1, "stride": 1})
            c = int(item)
    return arch + fc((c, h, w), dense, classes)


def resnet(input_shape: tuple[int, ...], widths: list[int], blocks: int, classes: int) -> list[dict]:
    """A residual net for small images (He et al. 2016, the CIFAR ResNets' shape): a 3x3 stem of
    widths[0] channels, then one stage per width of ``blocks`` basic blocks (two 3x3 convolutions and
    a skip: the identity, or a 1x1 projection where the width or the map changes; each stage after
    the first halves the map with stride 2), global average pooling, a dense read-out. Every add
    spikes (the ReLU after the sum)."""
    c = input_shape[0]
    arch = [{"kind": "conv2d", "in": c, "out": widths[0], "kernel": 3, "padding": 1, "name": "stem"}]
    previous, channels = "stem", widths[0]
    for s, width in enumerate(widths):
        for b in range(blocks):
            stride, name = (2 if s and not b else 1), f"stage{s + 1}.block{b + 1}"
            arch += [{"kind": "conv2d", "in": channels, "out": width, "kernel": 3, "padding": 1, "stride": stride,
                      "name": f"{name}.conv1", "inputs": [previous]},
                     {"kind": "conv2d", "in": width, "out": width, "kernel": 3, "padding": 1, "name": f"{name}.conv2"}]
            skip = previous
            if stride != 1 or channels != width:
                arch.append({"kind": "conv2d", "in": channels, "out": width, "kernel": 1, "stride": stride,
                             "name": f"{name}.proj", "inputs": [previous]})
                skip = f"{name}.proj"
            arch.append({"kind": "add", "name": name, "inputs": [f"{name}.conv2", skip]})
            previous, channels = name, width
    return arch + [{"kind": "globalpool", "name": "pool", "inputs": [previous]}, {"kind": "flatten", "name": "flat"},
                   {"kind": "dense", "in": channels, "out": classes, "name": "fc"}]


PRESETS = {
    "fc": lambda shape, classes: fc(shape, [340], classes),
    "fc-small": lambda shape, classes: fc(shape, [64], classes),
    "vgg": lambda shape, classes: vgg(shape, [32, 32, "P", 64, 64, "P"], [256], classes),
    "vgg-small": lambda shape, classes: vgg(shape, [8, "P", 16], [32], classes),
    "resnet": lambda shape, classes: resnet(shape, [16, 32, 64], 2, classes),
    "resnet-small": lambda shape, classes: resnet(shape, [4, 8], 1, classes),
}
PRESET_HELP = "fc = one hidden layer of 340 (the paper's FC2), fc-small = 64 hidden, " \
              "vgg = conv32-conv32-avgpool-conv64-conv64-avgpool-fc256, vgg-small = conv8-avgpool-conv16-fc32, " \
              "resnet = conv16 then 3 stages (16, 32, 64 channels) of 2 residual blocks, global average pooling, " \
              "fc; resnet-small = conv4, 2 stages (4, 8) of 1 block"


def preset(name: str, input_shape: tuple[int, ...], classes: int) -> list[dict]:
    if name not in PRESETS:
        raise ArchError(f"unknown architecture preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name](tuple(input_shape), classes)


def validate(arch) -> None:
    """Check kinds, keys, names, inputs and the graph's rules (hwtune.graph; ArchError names the node)."""
    graph.read(arch)


def canonical_arch(arch: list[dict]) -> list[dict]:
    """A validated copy of ``arch`` with every kind under its name (older names renamed)."""
    validate(arch)
    return [canonical(layer) for layer in arch]


def n_hidden(arch: list[dict]) -> int:
    """Spiking (hidden) layers of a valid architecture: its layers but the read-out (hwtune.graph)."""
    return graph.n_hidden(arch)


def output_shapes(arch: list[dict], input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shape of one sample after each node, checking that every node fits its inputs."""
    return graph.read(arch, input_shape).shapes()
