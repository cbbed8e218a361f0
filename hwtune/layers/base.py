"""The contract every layer kind fulfils (abstract bases), the errors, the exact-dtype rule.

A layer kind is one class in one module of this package that owns everything hwtune does with
that kind of node; hwtune.layers finds it by itself, so adding a kind means adding one module and
its tests. Nodes of an architecture graph (hwtune.architectures) are dicts ``{"kind": NAME, ...}``
with optional ``name`` and ``inputs``; a kind declares how many inputs it takes (``arity``: 1, or
None for two or more) and what it does:

- :class:`ShapeOp` (flatten, pooling, concat): activations -> activations, no weights, no neurons;
  in an artifact they are the ops of a :class:`~hwtune.layers.stage.Stage`, folded into the synapse
  after them (``gain``, ``matrix``, ``fan_out_in``).
- :class:`Synapse` (dense, conv2d): activations -> potential, integer weight mantissas q. A synapse
  node of the architecture is followed by spiking neurons (ReLU in the twin) unless it feeds a
  potential join or is the read-out.
- a **potential join** (``sums_potentials``, e.g. add): potentials of its inputs -> their sum; an
  input that is an activation enters through an identity synapse. In an artifact it is a Synapse
  whose branches are stages.

Every kind has, as class methods on its architecture dict: ``check_spec`` (keys and ranges),
``spec_output_shape`` (shape of one sample after it, given its inputs' shapes), ``spec_from_torch``
(the dict of a torch module or function, for conversion); and as instance methods, the torch
forward (``torch_apply``), the integer rule (``apply``), connectivity (``matrix``), mapper costs and
JSON (``to_json`` / ``from_json``). Layouts follow torch: (C, H, W) channel-major, flattened in that order.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

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
    """An architecture that cannot be built."""


def is_count(value, lo: int) -> bool:
    """An integer (not a bool) >= ``lo``."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= lo


class LayerKind(ABC):
    """Base of the layer kinds (see the module docstring for the contract).

    kind: the one name of the kind (architecture dicts, artifact JSON, mapper tables); aliases:
    older names still read (hwtune model files of format 1-2); arity: inputs a node takes (None: two
    or more); weighted: a synapse node holding a torch weight module; sums_potentials: a join of
    potentials (add); keys: integer keys of the architecture dict -> (smallest value, default or
    None when required); torch_types: names of the ``torch.nn`` modules conversion reads as this
    kind; torch_functions: the callables (``operator.add``, ``torch.cat``...) and tensor methods
    conversion reads as this kind, by name; not_in_artifact: why an integer artifact cannot hold
    this kind ("" when it can); reshapes_only: the kind moves no value (flatten), so it may follow
    the read-out; name_prefix: how artifact layers made by a node of this kind are named.
    """

    kind: str = ""
    aliases: tuple[str, ...] = ()
    arity: int | None = 1
    weighted = False
    sums_potentials = False
    keys: dict[str, tuple[int, int | None]] = {}
    torch_types: tuple[str, ...] = ()
    torch_functions: tuple[str, ...] = ()
    not_in_artifact = ""
    reshapes_only = False
    name_prefix = ""
    #: Whether an architecture may hold the kind as a node (an identity synapse is made by a join).
    in_architecture = True

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
    @abstractmethod
    def spec_output_shape(cls, i: int, layer: dict, *shapes: tuple) -> tuple:
        """Shape of one sample after layer ``i`` given its inputs' ``shapes`` (ArchError when it does not fit)."""

    @classmethod
    def join(cls, stages: list) -> "Synapse":
        """The artifact synapse of a join of potentials (``sums_potentials``) adding ``stages``."""
        raise OpError(f"{cls.kind} is not a join of potentials")

    @classmethod
    def spec_from_torch(cls, module, where: str) -> dict:
        """The architecture dict of a torch module of one of ``torch_types`` (conversion; ``where``
        names the traced op in errors)."""
        return {"kind": cls.kind}

    @classmethod
    def spec_from_function(cls, where: str, args: tuple, kwargs: dict) -> dict:
        """The architecture dict of a traced call of one of ``torch_functions`` with ``args`` (the
        tensors among them are torch.fx nodes) and ``kwargs`` (conversion; ArchError naming ``where``)."""
        return {"kind": cls.kind}

    @classmethod
    def needs_map(cls, i: int, shape: tuple) -> tuple[int, int, int]:
        """(C, H, W) of a kind that takes a feature map (ArchError on a flat input)."""
        if len(shape) != 3:
            raise ArchError(f"layer {i} ({cls.kind}): needs (channels, height, width) input, gets shape {shape}")
        return shape


class ShapeOp(LayerKind):
    """A kind without weights between spiking layers and synapses (pooling, flatten, concat):
    instances are the ops of a stage, built by :meth:`from_spec`."""

    #: Whether the op's output is still a (C, H, W) map (what a convolution takes).
    keeps_map = True

    @classmethod
    def from_spec(cls, layer: dict) -> "ShapeOp":
        return cls(**{key: cls.spec(layer, key) for key in cls.keys})

    @abstractmethod
    def output_shape(self, *in_shapes: tuple) -> tuple:
        """Shape of one sample after the op (OpError when its inputs do not fit)."""

    def gain_on(self, *in_shapes: tuple) -> int:
        """The most input activation units one output value holds on these inputs (a sum pooling: the
        k^2 it sums; the factor every worst-case bound is multiplied by)."""
        return 1

    @abstractmethod
    def apply(self, *xs: np.ndarray) -> np.ndarray:
        """The op on integer activations (B, *in_shape) in their type."""

    @abstractmethod
    def torch_apply(self, *xs, integer: bool = False):
        """The op in torch on float activations (the TTFS net and its ReLU twin) or, ``integer``, on
        integer activations k (the quantized net; a pooling then sums instead of averaging)."""

    @abstractmethod
    def matrix(self, *in_shapes: tuple):
        """The op as a scipy sparse matrix (outputs, inputs of every input stacked): what it folds
        into the synapse after it (hwtune.layers.stage)."""

    @abstractmethod
    def fan_out_in(self, fan_out: np.ndarray, *in_shapes: tuple) -> list[np.ndarray]:
        """A per-output fan-out (out_shape) mapped back to each input (one array per input)."""

    def with_shifts(self, shifts: list[int]) -> "ShapeOp":
        """A join op that scales input p by 2^shifts[p] (its inputs' time grids differ by powers of two)."""
        raise OpError(f"{self.kind} joins no inputs")

    def to_json(self) -> dict:
        return {"kind": self.kind, **{key: int(getattr(self, key)) for key in self.keys}}

    @classmethod
    def from_json(cls, d: dict) -> "ShapeOp":
        if set(d) != {"kind", *cls.keys}:
            raise OpError(f"{cls.kind} takes exactly {sorted(cls.keys) or 'no settings'}, got {sorted(set(d) - {'kind'})}")
        return cls(**{key: d[key] for key in cls.keys})


class Synapse(LayerKind):
    """A kind whose instances turn activations into potentials with integer weight mantissas q.

    shares_kernels: the mapper may store its weights once per kernel (a convolution);
    brevitas_type: the name of its quantized torch module in ``brevitas.nn``.
    """

    weighted = True
    shares_kernels = False
    brevitas_type = ""
    #: Inputs an instance takes (a join of stages: all of its branches' inputs).
    n_inputs = 1

    # ---- architecture and torch
    @classmethod
    def torch_synapse(cls, layer: dict, module_type=None, **kwargs):
        """The torch module holding (W, b) of this layer: ``module_type`` (default the plain torch
        one; hwtune.ttfs.quant passes the brevitas one) built with the layer's sizes and ``kwargs``."""
        raise NotImplementedError(f"{cls.kind} holds no torch weights")

    @classmethod
    def spec_weights(cls, layer: dict) -> int:
        """How many weights the architecture layer ``layer`` holds (size checks before allocation)."""
        return 0

    @classmethod
    def torch_apply(cls, module, x, weight, bias):
        """The synapse on x in torch with ``weight`` (the module's, its mantissas, or a device
        instance's: a convolution may get one kernel per output position)."""
        raise NotImplementedError(f"{cls.kind} has no torch forward of its own")

    @classmethod
    def from_spec(cls, layer: dict, weight: np.ndarray, in_shape: tuple) -> "Synapse":
        """The integer synapse of architecture layer ``layer`` with mantissas ``weight`` on input ``in_shape``."""
        raise NotImplementedError(f"{cls.kind} is not built from an architecture layer")

    # ---- integers
    @property
    @abstractmethod
    def out_channels(self) -> int:
        """Output channels (dense: neurons); bias and slope are one per channel."""

    @abstractmethod
    def input_shape(self) -> tuple:
        """The shape of one sample it takes."""

    @abstractmethod
    def output_shape(self, in_shape: tuple | None = None) -> tuple:
        """The shape of one sample it gives (OpError when ``in_shape`` is not its input)."""

    @abstractmethod
    def apply(self, x: np.ndarray, dtype, weight=None) -> np.ndarray:
        """The potentials (B, *out_shape) in ``dtype``, exact when :func:`exact_dtype` of the worst
        case (:meth:`abs_sums` x max |x|) chose it; ``weight``: a device instance's weights."""

    def prepare(self, dtype, x_max: int | None, weight=None):
        """x -> :meth:`apply` (x, dtype, weight) for inputs 0 <= x <= ``x_max`` (None: unknown), with
        what depends only on the weights done once, for many batches (hwtune.layers.engine's kernels:
        converted or prepacked weights, the kernel chosen from the bound); here nothing is."""
        return lambda x: self.apply(x, dtype, weight)

    @abstractmethod
    def abs_sums(self, weight=None) -> np.ndarray:
        """sum |q| over each output channel's inputs (C_out,), int64: the bound of every neuron of it."""

    @abstractmethod
    def fan_in(self) -> np.ndarray:
        """Nonzero weights of an interior neuron of each output channel (C_out,)."""

    @abstractmethod
    def fan_out(self) -> np.ndarray:
        """Nonzero weights leaving each input (input_shape): synaptic events per input spike."""

    @abstractmethod
    def matrix(self):
        """The explicit synapse matrix (n_out, n_in), dense array or scipy CSR: what hwtune.backends.lava
        builds its Dense / Sparse process from."""

    def leaves(self) -> list["Synapse"]:
        """The synapses holding weights (a join: its branches'; else itself)."""
        return [self]

    # ---- mapper cost (hwtune.mapper)
    def kernel_bits(self, weight_bits: int) -> int:
        """Bits of one output channel's weights stored once (kinds with ``shares_kernels``)."""
        raise NotImplementedError(f"{self.kind} is not stored as shared kernels")

    def tile_inputs(self, positions: int, channels: int, n_in: int) -> int:
        """Inputs (axons) read by a core holding ``positions`` output positions of ``channels``
        output channels, stored as shared kernels (kinds with ``shares_kernels``); at most ``n_in``."""
        raise NotImplementedError(f"{self.kind} is not stored as shared kernels")

    def core_inputs(self, neurons: int, n_in: int) -> int:
        """Inputs read by a core holding ``neurons`` consecutive neurons stored as explicit synapses;
        here every input of the synapse (``n_in``)."""
        return n_in

    # ---- JSON
    @abstractmethod
    def to_json(self) -> dict:
        """The synapse's settings (its weights go to the artifact's arrays, one per leaf)."""

    @classmethod
    @abstractmethod
    def from_json(cls, d: dict, take) -> "Synapse":
        """The synapse of :meth:`to_json`'s object, ``take()`` giving its next weight array (leaf order)."""
