"""What every layer kind shares: the class contract, the errors, the exact-dtype rule.

A layer kind (:class:`LayerKind`) is one class that owns everything hwtune does with that kind of
layer, so that adding a kind means adding one module (and its registration, hwtune.layers):

- **architecture** (class methods on the layer's dict, e.g. ``{"kind": "conv2d", "in": 1, ...}``):
  ``check_spec`` (keys and ranges), ``spec_output_shape`` (shape of one sample after it),
  ``relu_module`` (the torch module of the ReLU twin), ``spec_from_torch`` (the dict of a torch
  module, for conversion);
- **torch forward** of the TTFS net: ``torch_apply`` (a synapse on float or integer-valued
  activations; a shape op on spike times or on integer activations);
- **integers** (instances, numpy only: the deployable artifact never imports torch): ``apply``,
  ``output_shape``, ``gain``; a synapse also its fan-in / fan-out / |q| sums;
- **connectivity** (``matrix``: the explicit synapse matrix, what hwtune.backends.lava builds its
  Dense / Sparse process from; a shape op's ``folded_pool`` and ``keeps_map``), **mapper cost** (``shares_kernels``,
  ``tile_inputs``, ``core_inputs``, ``kernel_bits``: hwtune.mapper) and **JSON** (``to_json`` / ``from_json``).

Layouts follow torch: (C, H, W) channel-major, flattened in that order.
"""
from __future__ import annotations

import numpy as np

from hwtune.errors import HwtuneError

#: Float types whose matmul is exact on integers: (dtype, largest magnitude every intermediate may reach).
_EXACT_FLOATS = ((np.float32, 2 ** 24), (np.float64, 2 ** 53))


def exact_dtype(bound: int):
    """Cheapest dtype in which a matmul of integers is exact when ``bound`` dominates it.

    IEEE floats with a p-bit significand hold every integer of magnitude <= 2^p, and a sum or
    product of such integers is exact when its true value is again <= 2^p. A matmul (any
    blocking, any order, fused multiply-add or not) only forms products q_ij k_j and partial
    sums of them, each bounded by sum_j |q_ij| |k_j| <= ``bound``; so float32 (p = 24, BLAS) or
    float64 (p = 53) give the exact integer result. Beyond 2^53: int64 (numpy, no BLAS, slow).
    """
    for dtype, limit in _EXACT_FLOATS:
        if bound <= limit:
            return dtype
    return np.int64


class OpError(ValueError):
    """A layer that does not fit its input."""


class ArchError(HwtuneError, ValueError):
    """An architecture list that cannot be built."""


def is_count(value, lo: int) -> bool:
    """An integer (not a bool) >= ``lo``."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= lo


class LayerKind:
    """Base of the layer kinds (see the module docstring for the contract).

    kind: the one name of the kind (architecture dicts, artifact JSON, mapper tables); aliases:
    older names still read (hwtune model files of format 1-2); weighted: a synapse (dense, conv),
    followed by a spiking layer or the read-out; keys: integer keys of the architecture dict ->
    (smallest value, default or None when required); torch_types: names of the ``torch.nn``
    modules conversion reads as this kind; not_in_artifact: why an integer artifact cannot hold
    this kind ("" when it can); reshapes_only: see below.
    """

    kind: str = ""
    aliases: tuple[str, ...] = ()
    weighted = False
    keys: dict[str, tuple[int, int | None]] = {}
    torch_types: tuple[str, ...] = ()
    not_in_artifact = ""
    #: The kind only reshapes (flatten): it moves no value, so it may follow the read-out.
    reshapes_only = False

    @classmethod
    def spec(cls, layer: dict, key: str) -> int:
        """The value of ``key`` in an architecture dict, its default when absent."""
        return layer.get(key, cls.keys[key][1])

    @classmethod
    def check_spec(cls, i: int, layer: dict) -> None:
        """Keys of layer ``i``'s dict: integers in range (ArchError naming the layer otherwise)."""
        for key, (lo, _) in cls.keys.items():
            value = cls.spec(layer, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ArchError(f"layer {i} ({cls.kind}): {key} = {value!r} must be an integer >= {lo}")

    @classmethod
    def spec_output_shape(cls, i: int, layer: dict, shape: tuple) -> tuple:
        """Shape of one sample after layer ``i`` given its input ``shape`` (ArchError when it does not fit)."""
        raise NotImplementedError

    @classmethod
    def needs_map(cls, i: int, shape: tuple) -> tuple[int, int, int]:
        """(C, H, W) of a kind that takes a feature map (ArchError on a flat input)."""
        if len(shape) != 3:
            raise ArchError(f"layer {i} ({cls.kind}): needs (channels, height, width) input, gets shape {shape}")
        return shape

    @classmethod
    def spec_from_torch(cls, module, i: int) -> dict:
        """The architecture dict of a torch module of one of ``torch_types`` (conversion)."""
        raise NotImplementedError


class ShapeOp(LayerKind):
    """A kind without weights between two synapses (pooling, flatten); instances are the ops of
    an artifact layer and of a TTFS net's segments, built by :meth:`from_spec`."""

    gain = 1
    #: Side p of the p x p block sum the op folds into the next synapse's connectivity (1: none).
    folded_pool = 1
    #: Whether the op's output is still a (C, H, W) map (what a convolution takes).
    keeps_map = True

    @classmethod
    def from_spec(cls, layer: dict) -> "ShapeOp":
        return cls(**{key: cls.spec(layer, key) for key in cls.keys})

    def relu_module(self):
        """The torch module of the ReLU twin."""
        raise NotImplementedError

    def torch_apply(self, t, on_times: bool):
        """The op in the TTFS net's torch forward: on spike times (float net) or on integer
        activations k (quantized net)."""
        raise NotImplementedError

    def fan_out_in(self, fan_out: np.ndarray, in_shape: tuple) -> np.ndarray:
        """A per-output fan-out mapped back to this op's inputs (in_shape)."""
        raise NotImplementedError

    def to_json(self) -> dict:
        return {"kind": self.kind, **{key: int(getattr(self, key)) for key in self.keys}}

    @classmethod
    def from_json(cls, d: dict) -> "ShapeOp":
        if set(d) != {"kind", *cls.keys}:
            raise OpError(f"{cls.kind} takes exactly {sorted(cls.keys) or 'no settings'}, got {sorted(set(d) - {'kind'})}")
        return cls(**{key: d[key] for key in cls.keys})


class Synapse(LayerKind):
    """A weighted kind: instances hold the integer weight mantissas q of an artifact layer.

    shares_kernels: the mapper may store its weights once per kernel (a convolution); name_prefix:
    how exported layers of this kind are named (``{prefix}{n}``); brevitas_type: the name of its
    quantized torch module in ``brevitas.nn``.
    """

    weighted = True
    shares_kernels = False
    name_prefix = ""
    brevitas_type = ""
    weight: np.ndarray

    @classmethod
    def torch_synapse(cls, layer: dict, module_type=None, **kwargs):
        """The torch module holding (W, b) of this layer: ``module_type`` (default the plain torch
        one; hwtune.ttfs.quant passes the brevitas one) built with the layer's sizes and ``kwargs``."""
        raise NotImplementedError

    @classmethod
    def spec_weights(cls, layer: dict) -> int:
        """How many weights the architecture layer ``layer`` holds (size checks before allocation)."""
        raise NotImplementedError

    @classmethod
    def torch_apply(cls, module, x, weight, bias):
        """The synapse on x in torch with ``weight`` (the module's, its mantissas, or a device
        instance's: a convolution may get one kernel per output position)."""
        raise NotImplementedError

    @classmethod
    def from_spec(cls, layer: dict, weight: np.ndarray, in_shape: tuple) -> "Synapse":
        """The integer synapse of architecture layer ``layer`` with mantissas ``weight`` on input ``in_shape``."""
        raise NotImplementedError

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def tile_inputs(self, positions: int, channels: int, pool: int, n_in: int) -> int:
        """Inputs (axons) read by a core holding ``positions`` output positions of ``channels``
        output channels, stored as shared kernels (hwtune.mapper; kinds with ``shares_kernels``)."""
        raise NotImplementedError

    def core_inputs(self, neurons: int, pool: int, n_in: int) -> int:
        """Inputs read by a core holding ``neurons`` consecutive neurons stored as explicit synapses
        (hwtune.mapper); here every input of the layer (``n_in``)."""
        return n_in
