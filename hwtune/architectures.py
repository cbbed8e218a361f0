"""Architectures as data: a list of layer dicts shared by the ReLU twin and the TTFS net (no torch).

Kinds: ``dense`` {in, out}, ``conv`` {in, out, kernel, padding, stride}, ``avgpool`` {kernel},
``maxpool`` {kernel}, ``flatten``. Every weighted layer but the last is followed by a ReLU
(a spiking layer in the TTFS net); the last weighted layer is the read-out.
"""
from __future__ import annotations

import math

from hwtune.errors import HwtuneError

WEIGHTED = ("dense", "conv")
KINDS = WEIGHTED + ("avgpool", "maxpool", "flatten")
#: integer keys of each kind -> smallest allowed value
_KEYS = {"dense": {"in": 1, "out": 1}, "conv": {"in": 1, "out": 1, "kernel": 1, "padding": 0, "stride": 1},
         "avgpool": {"kernel": 1}, "maxpool": {"kernel": 1}, "flatten": {}}


class ArchError(HwtuneError, ValueError):
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
PRESET_HELP = "fc = one hidden layer of 340 (the paper's FC2), fc-small = 64 hidden, " \
              "vgg = conv32-conv32-avgpool-conv64-conv64-avgpool-fc256, vgg-small = conv8-avgpool-conv16-fc32"


def preset(name: str, input_shape: tuple[int, ...], classes: int) -> list[dict]:
    if name not in PRESETS:
        raise ArchError(f"unknown architecture preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name](tuple(input_shape), classes)


def _check_layer(i: int, layer) -> None:
    if not isinstance(layer, dict):
        raise ArchError(f"layer {i}: expected a mapping with a 'kind', got {layer!r}")
    kind = layer.get("kind")
    if kind not in KINDS:
        raise ArchError(f"layer {i}: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    for key, lo in _KEYS[kind].items():
        value = layer.get(key, {"padding": 0, "stride": 1}.get(key))
        if not isinstance(value, int) or isinstance(value, bool) or value < lo:
            raise ArchError(f"layer {i} ({kind}): {key} = {value!r} must be an integer >= {lo}")


def validate(arch) -> None:
    """Check kinds and keys; the read-out must be the last weighted layer, after every pooling."""
    if not isinstance(arch, list):
        raise ArchError(f"an architecture is a list of layers, got {type(arch).__name__}")
    for i, layer in enumerate(arch):
        _check_layer(i, layer)
    weighted = [i for i, layer in enumerate(arch) if layer["kind"] in WEIGHTED]
    if not weighted:
        raise ArchError("architecture has no dense or conv layer")
    if weighted[-1] != max(i for i, layer in enumerate(arch) if layer["kind"] != "flatten"):
        raise ArchError("the last weighted layer (read-out) must come after every pooling layer")


def output_shapes(arch: list[dict], input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shape of one sample after each layer, checking that every layer fits its input."""
    validate(arch)
    shape, shapes = tuple(input_shape), []
    for i, layer in enumerate(arch):
        kind = layer["kind"]
        if kind == "flatten":
            shape = (math.prod(shape),)
        elif kind == "dense":
            if len(shape) != 1 or shape[0] != layer["in"]:
                raise ArchError(f"layer {i} (dense): takes {layer['in']} inputs, gets shape {shape}"
                                + (" (a flatten layer is missing)" if len(shape) != 1 else ""))
            shape = (layer["out"],)
        else:
            if len(shape) != 3:
                raise ArchError(f"layer {i} ({kind}): needs (channels, height, width) input, gets shape {shape}")
            c, h, w = shape
            k = layer["kernel"]
            if kind == "conv":
                if c != layer["in"]:
                    raise ArchError(f"layer {i} (conv): takes {layer['in']} channels, gets {c}")
                p, s = layer.get("padding", 0), layer.get("stride", 1)
                h, w, c = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1, layer["out"]
            else:
                h, w = h // k, w // k
            if h < 1 or w < 1:
                raise ArchError(f"layer {i} ({kind}): kernel {k} does not fit its {shape[1]}x{shape[2]} input")
            shape = (c, h, w)
        shapes.append(shape)
    return shapes
