"""A stage: what one synapse sees, the one place where shape ops are folded into a synapse.

A :class:`Stage` takes the activations of its inputs (one, or several when its first op joins them,
e.g. a concat), passes them through shape ops (flatten, pooling), then through one synapse, and
scales the result by a power of two:

    V = 2^shift * synapse(op_m(... op_1(x_1, ..., x_n)))

Every consumer of a synapse asks the stage, never the synapse alone: the integer rule
(:meth:`apply`), worst-case bounds (:meth:`abs_sums`, counting an input that sums g presynaptic
activations g times), synaptic events (:meth:`fan_out`, through the ops), the explicit synapse
matrix (:meth:`matrix`: the synapse's matrix times the ops' matrices, what Lava's Dense / Sparse
take) and the mapper's input counts (:meth:`inputs_read`). A synapse kind therefore never knows
which ops come before it. ``shift`` (>= 0) is how a join brings branches with different potential
units to one unit (hwtune.layers.add, docs/design.md "Graphs").
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hwtune.layers.base import OpError, ShapeOp, Synapse, is_count


def _shape(value, what: str) -> tuple:
    if not (isinstance(value, (tuple, list)) and value and all(is_count(n, 1) for n in value)):
        raise OpError(f"{what} must be a non-empty list of positive integers, got {str(value)[:80]}")
    return tuple(int(n) for n in value)


@dataclass
class Stage:
    """Shape ops then one synapse, times 2^shift (see the module docstring).

    synapse: a Synapse (dense, conv2d, or a join of stages); ops: ShapeOp instances, of which only the
    first may take several inputs; in_shapes: the shape of each input (default: the synapse's own
    input, for a stage without ops); shift: a non-negative power of two the potentials are scaled by.
    """

    synapse: Synapse
    ops: tuple = ()
    in_shapes: tuple | None = None
    shift: int = 0

    def __post_init__(self):
        if not isinstance(self.synapse, Synapse):
            raise OpError("a stage's synapse must be a hwtune.layers Synapse")
        self.ops = tuple(self.ops)
        if not all(isinstance(op, ShapeOp) and not op.not_in_artifact for op in self.ops):
            raise OpError("ops must be shape ops an artifact holds (e.g. flatten, sumpool)")
        if any(op.arity != 1 for op in self.ops[1:]):
            raise OpError("only the first op of a stage may join several inputs")
        if self.in_shapes is None:
            self.in_shapes = (self.synapse.input_shape(),) if self.synapse.n_inputs == 1 else None
        if not isinstance(self.in_shapes, (tuple, list)) or not self.in_shapes:
            raise OpError(f"in_shapes must list the shape of each input, got {str(self.in_shapes)[:80]}")
        self.in_shapes = tuple(_shape(s, "an input shape") for s in self.in_shapes)
        if not is_count(self.shift, 0):
            raise OpError(f"shift must be an integer >= 0, got {self.shift!r}")
        self.shift = int(self.shift)
        takes = self.ops[0].arity if self.ops else self.synapse.n_inputs
        if takes is None and len(self.in_shapes) < 2 or takes is not None and takes != len(self.in_shapes):
            first = self.ops[0] if self.ops else self.synapse
            raise OpError(f"{first.kind} takes {takes or 'two or more'} input(s), the stage has {len(self.in_shapes)}")
        shapes = list(self.in_shapes)
        for op in self.ops:
            shapes = [op.output_shape(*shapes)]
        if self.synapse.n_inputs == 1:
            self.synapse.output_shape(shapes[0])
        elif self.ops:
            raise OpError(f"a {self.synapse.kind} takes its inputs directly: its branches hold their own ops")
        else:
            self.synapse.output_shape(*shapes)

    # ---- shapes
    @property
    def arity(self) -> int:
        return len(self.in_shapes)

    @property
    def n_in(self) -> tuple[int, ...]:
        """Inputs of each input (flattened sizes)."""
        return tuple(math.prod(s) for s in self.in_shapes)

    @property
    def out_shape(self) -> tuple:
        return self.synapse.output_shape()

    @property
    def out_channels(self) -> int:
        return self.synapse.out_channels

    def op_shapes(self) -> list[list[tuple]]:
        """The input shapes of every op, then the synapse's: [[in_shapes], [after op 1], ...]."""
        shapes = [list(self.in_shapes)]
        for op in self.ops:
            shapes.append([op.output_shape(*shapes[-1])])
        return shapes

    @property
    def gain(self) -> int:
        """How many presynaptic activation units one synapse input may hold (sum pooling: k^2; hwtune.layers.base)."""
        return math.prod(op.gain_on(*shapes) for op, shapes in zip(self.ops, self.op_shapes()))

    @property
    def factor(self) -> int:
        return 1 << self.shift

    def leaves(self) -> list[Synapse]:
        """The synapses holding weights, in order (device noise draws and the artifact's arrays follow it)."""
        return self.synapse.leaves()

    # ---- integers
    def abs_sums(self, weights=None) -> np.ndarray:
        """sum |q| over each output channel's presynaptic activations (C_out,), int64, pooled inputs
        counted ``gain`` times, times 2^shift; ``weights``: a device instance's weights per leaf."""
        return self.synapse.abs_sums(_one(weights, self.synapse)) * (self.gain * self.factor)

    def fan_in(self) -> np.ndarray:
        """Presynaptic activations of an interior neuron of each output channel (C_out,)."""
        return self.synapse.fan_in() * self.gain

    def fan_out(self) -> list[np.ndarray]:
        """Synaptic events of one spike of each presynaptic neuron, one flat array per input."""
        if self.synapse.n_inputs != 1:
            return self.synapse.fan_out()
        fans = [self.synapse.fan_out()]
        shapes = self.op_shapes()
        for op, op_in in zip(reversed(self.ops), reversed(shapes[:-1])):
            fans = op.fan_out_in(fans[0], *op_in)
        return [f.reshape(-1) for f in fans]

    def apply(self, xs: list, dtype, weights=None) -> np.ndarray:
        """V (B, *out_shape) in ``dtype`` of the inputs ``xs`` (each (B, n) or (B, *in_shape)), exact when
        :func:`hwtune.layers.exact_dtype` of the worst case (:meth:`abs_sums` x the largest input) chose it."""
        return self.prepare(dtype, None, weights)(xs)

    def prepare(self, dtype, x_max: int | None, weights=None):
        """xs -> :meth:`apply` (xs, dtype, weights) for inputs 0 <= x <= ``x_max`` (None: unknown), the
        synapse's kernel prepared once (:meth:`Synapse.prepare`) for its inputs' bound, ``gain`` x_max.
        The ops compute in ``dtype``; without ops, or with ops that only reshape (flatten), the synapse
        reads xs in their own type (a kernel converts once, to the type it multiplies in: u8 for the
        int8 kernels; a conversion to ``dtype`` first cost the FC2 a tenth of its time)."""
        one = self.synapse.n_inputs == 1
        synapse = self.synapse.prepare(dtype, None if x_max is None else x_max * self.gain,
                                      _one(weights, self.synapse) if one else weights)
        moves_values = not all(op.reshapes_only for op in self.ops)

        def apply(xs: list) -> np.ndarray:
            xs = [x.reshape(len(x), *shape) for x, shape in zip(xs, self.in_shapes)]
            if moves_values:
                xs = [x.astype(dtype, copy=False) for x in xs]
            for op in self.ops:
                xs = [op.apply(*xs)]
            V = synapse(xs[0] if one else xs)
            if self.shift:
                V *= self.factor
            return V
        return apply

    # ---- connectivity and mapper cost
    def ops_matrix(self):
        """The ops as one sparse matrix (synapse inputs, inputs of every input stacked), or None when
        they only reshape (the synapse then reads the inputs as they are)."""
        if all(op.reshapes_only for op in self.ops):
            return None
        m = None
        for op, shapes in zip(self.ops, self.op_shapes()):
            step = op.matrix(*shapes)
            m = step if m is None else step @ m
        return m.tocsr()

    def matrix(self):
        """The explicit synapse matrix (n_out, sum of n_in) with the ops folded in (their matrices
        multiplied into the synapse's) and 2^shift: a dense array where the synapse gives one and the
        ops only reshape (Lava Dense), else a CSR without zeros (Lava Sparse)."""
        m, ops = self.synapse.matrix(), self.ops_matrix()
        if ops is not None:
            m = (sp.csr_matrix(m) @ ops).tocsr()
            m.eliminate_zeros()
            m.sort_indices()
        return m * self.factor if self.shift else m

    def kernel_bits(self, weight_bits: int) -> int:
        """Bits of one output channel's kernel stored once, a pooling p folded in (K p per side)."""
        return self.synapse.kernel_bits(weight_bits) * self.gain

    def _inputs_read(self, synapse_inputs: int) -> int:
        """Presynaptic neurons behind ``synapse_inputs`` of the synapse's inputs (each sums ``gain``), at
        most all of them."""
        return min(sum(self.n_in), synapse_inputs * self.gain)

    def _synapse_n_in(self) -> int:
        return math.prod(self.synapse.input_shape()) if self.synapse.n_inputs == 1 else sum(self.n_in)

    def tile_inputs(self, positions: int, channels: int) -> int:
        """Presynaptic neurons read by a core holding ``positions`` output positions of ``channels``
        output channels stored as shared kernels (hwtune.mapper; the synapse's ``tile_inputs``)."""
        return self._inputs_read(self.synapse.tile_inputs(positions, channels, self._synapse_n_in()))

    def core_inputs(self, neurons: int) -> int:
        """Presynaptic neurons read by a core holding ``neurons`` consecutive neurons stored as explicit
        synapses (hwtune.mapper; the synapse's ``core_inputs``)."""
        return self._inputs_read(self.synapse.core_inputs(neurons, self._synapse_n_in()))

    # ---- JSON
    def to_json(self) -> dict:
        shapes = {"in_shape": list(self.in_shapes[0])} if self.arity == 1 else \
            {"in_shapes": [list(s) for s in self.in_shapes]}
        return {**shapes, "ops": [op.to_json() for op in self.ops], "synapse": self.synapse.to_json(),
                **({"shift": self.shift} if self.shift else {})}

    @classmethod
    def from_json(cls, d: dict, take) -> "Stage":
        """The stage of a JSON object written by :meth:`to_json`; ``take()`` gives the next weight array."""
        from hwtune.layers import op_from_json, synapse_from_json

        if not isinstance(d, dict):
            raise OpError(f"a stage is a JSON object, got {str(d)[:80]}")
        if ("in_shape" in d) == ("in_shapes" in d):
            raise OpError("a stage gives in_shape (one input) or in_shapes (several)")
        in_shapes = [d["in_shape"]] if "in_shape" in d else d["in_shapes"]
        if not isinstance(in_shapes, list) or not isinstance(d.get("ops"), list):
            raise OpError(f"a stage's in_shapes and ops must be lists, got {str(d)[:80]}")
        return cls(synapse=synapse_from_json(d.get("synapse"), take), ops=tuple(op_from_json(op) for op in d["ops"]),
                   in_shapes=tuple(_shape(s, "in_shape") for s in in_shapes), shift=d.get("shift", 0))


def _one(weights, synapse: Synapse):
    """A single-leaf synapse's device weights out of a per-leaf list (or None)."""
    if weights is None or synapse.n_inputs != 1:
        return weights
    return weights[0] if isinstance(weights, list) else weights
