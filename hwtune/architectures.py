"""Architectures as data: a list of layer dicts shared by the ReLU twin and the TTFS net (no torch).

Each dict is ``{"kind": NAME, ...}`` for a kind of hwtune.layers (dense {in, out}, conv2d {in, out,
kernel, padding, stride}, sumpool {kernel} (average pooling in the ReLU twin), maxpool {kernel},
flatten); the kind's class checks its keys and computes its output shape. Every weighted layer but
the last is followed by a ReLU (a spiking layer in the TTFS net); the last weighted layer is the
read-out. Older names (conv, avgpool: model files of format 1-2) are read as their kind.
"""
from __future__ import annotations

import math

from hwtune.layers import KINDS, WEIGHTED, ArchError, canonical, is_weighted, kind_of

__all__ = ["ArchError", "WEIGHTED", "fc", "vgg", "PRESETS", "PRESET_HELP", "preset", "validate", "output_shapes",
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


PRESETS = {
    "fc": lambda shape, classes: fc(shape, [340], classes),
    "fc-small": lambda shape, classes: fc(shape, [64], classes),
    "vgg": lambda shape, classes: vgg(shape, [32, 32, "P", 64, 64, "P"], [256], classes),
    "vgg-small": lambda shape, classes: vgg(shape, [8, "P", 16], [32], classes),
}
PRESET_HELP = "fc = one hidden layer of 340 (the paper's FC2), fc-small = 64 hidden, " \
              "vgg = conv32-conv32-avgpool-conv64-conv64-avgpool-fc256, vgg-small = conv8-avgpool-conv16-fc32"


def preset(name: str, input_shape: tuple[int, ...], classes: int) -> list[dict]:
    if name not in PRESETS:
        raise ArchError(f"unknown architecture preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name](tuple(input_shape), classes)


def _check_layer(i: int, layer) -> None:
    if not isinstance(layer, dict):
        raise ArchError(f"layer {i}: expected a mapping with a 'kind', got {layer!r}")
    try:
        cls = kind_of(layer)
    except (KeyError, TypeError):
        raise ArchError(f"layer {i}: unknown kind {layer.get('kind')!r}; known: {', '.join(KINDS)}") from None
    cls.check_spec(i, layer)


def validate(arch) -> None:
    """Check kinds and keys; the read-out must be the last weighted layer, after every pooling."""
    if not isinstance(arch, list):
        raise ArchError(f"an architecture is a list of layers, got {type(arch).__name__}")
    for i, layer in enumerate(arch):
        _check_layer(i, layer)
    weighted = [i for i, layer in enumerate(arch) if is_weighted(layer)]
    if not weighted:
        raise ArchError("architecture has no dense or conv layer")
    if weighted[-1] != max(i for i, layer in enumerate(arch) if not kind_of(layer).reshapes_only):
        raise ArchError("the last weighted layer (read-out) must come after every pooling layer")


def canonical_arch(arch: list[dict]) -> list[dict]:
    """A validated copy of ``arch`` with every kind under its name (older names renamed)."""
    validate(arch)
    return [canonical(layer) for layer in arch]


def n_hidden(arch: list[dict]) -> int:
    """Spiking (hidden) layers of a valid architecture: its weighted layers but the read-out."""
    return sum(is_weighted(layer) for layer in arch) - 1


def output_shapes(arch: list[dict], input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shape of one sample after each layer, checking that every layer fits its input."""
    validate(arch)
    shape, shapes = tuple(input_shape), []
    for i, layer in enumerate(arch):
        shape = kind_of(layer).spec_output_shape(i, layer, shape)
        shapes.append(shape)
    return shapes
