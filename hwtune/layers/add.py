"""Residual add: a join of potentials, V = sum over its branches of 2^shift_b synapse_b(ops_b(x_b))."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hwtune.layers.base import ArchError, OpError, Synapse


@dataclass
class Add(Synapse):
    """The sum of the potentials of two or more branches (a residual net's ``out = relu(conv(h) + skip(x))``).

    Architecture: ``{"kind": "add", "inputs": [a, b, ...]}``; an input that is a synapse's potential
    (conv, dense: a projection) is summed before any ReLU, one that is an activation (a layer's, or the
    sample's) enters through an identity of weight 1; the add itself spikes unless it is the read-out
    (hwtune.graph). torch: ``a + b``, ``torch.add(a, b)``, ``a.add(b)``, ``a += b``.

    In an artifact, ``branches`` are stages (hwtune.layers.stage), each with its own inputs, ops,
    synapse and power of two: the branches' potential units (weight scale x 1 / pooled area x the
    input's tau_c per step) are powers of two apart on an aligned time grid (TTFSNet.align_windows), so
    integers add them exactly (docs/design.md "Graphs")."""

    branches: tuple
    kind = "add"
    arity = None
    weighted = False
    sums_potentials = True
    torch_functions = ("add", "iadd")
    name_prefix = "add"

    def __post_init__(self):
        self.branches = tuple(self.branches)
        if len(self.branches) < 2:
            raise OpError(f"add sums two or more branches, got {len(self.branches)}")
        shapes = {b.out_shape for b in self.branches}
        if len(shapes) != 1:
            raise OpError(f"add's branches give different shapes {sorted(shapes)}")

    # ---- architecture
    @classmethod
    def spec_output_shape(cls, i: int, layer: dict, *shapes: tuple) -> tuple:
        if len(set(shapes)) != 1:
            raise ArchError(f"layer {i} (add): its inputs have different shapes {list(shapes)}")
        return shapes[0]

    @classmethod
    def spec_from_function(cls, where: str, args: tuple, kwargs: dict) -> dict:
        tensors = [a for a in args if hasattr(a, "op")]
        if len(tensors) != len(args) or len(tensors) < 2 or kwargs:
            raise ArchError(f"{where}: an add of two layers' outputs is supported (no constants, no alpha), got "
                            f"{len(tensors)} tensor(s) of {len(args)} argument(s){' and ' + str(sorted(kwargs)) if kwargs else ''}")
        return {"kind": cls.kind}

    @classmethod
    def join(cls, stages: list) -> "Add":
        return cls(branches=tuple(stages))

    # ---- integers
    @property
    def n_inputs(self) -> int:
        return sum(b.arity for b in self.branches)

    @property
    def out_channels(self) -> int:
        return self.branches[0].out_channels

    @property
    def shares_kernels(self) -> bool:
        return all(b.synapse.shares_kernels for b in self.branches)

    def input_shape(self) -> tuple:
        """The shapes of all its inputs, branch by branch."""
        return tuple(shape for b in self.branches for shape in b.in_shapes)

    def output_shape(self, *in_shapes: tuple) -> tuple:
        if in_shapes and tuple(tuple(s) for s in in_shapes) != self.input_shape():
            raise OpError(f"add takes inputs of shapes {list(self.input_shape())}, gets {list(in_shapes)}")
        return self.branches[0].out_shape

    def _split(self, items: list) -> list[list]:
        """``items`` (one per input) cut into one list per branch."""
        out, start = [], 0
        for b in self.branches:
            out.append(items[start:start + b.arity])
            start += b.arity
        return out

    def _leaf_weights(self, weights) -> list:
        """Per branch, its leaves' device weights (None for all without weight noise)."""
        if weights is None:
            return [None] * len(self.branches)
        out, start = [], 0
        for b in self.branches:
            count = len(b.leaves())
            out.append(weights[start:start + count])
            start += count
        return out

    def apply(self, xs: list, dtype, weight=None) -> np.ndarray:
        return self.prepare(dtype, None, weight)(xs)

    def prepare(self, dtype, x_max: int | None, weight=None):
        """The sum of the branches' prepared stages (hwtune.layers.stage.Stage.prepare)."""
        kernels = [branch.prepare(dtype, x_max, weights)
                   for branch, weights in zip(self.branches, self._leaf_weights(weight))]

        def apply(xs: list) -> np.ndarray:
            total = None
            for kernel, inputs in zip(kernels, self._split(list(xs))):
                V = kernel(inputs)
                total = V if total is None else total + V
            return total
        return apply

    def abs_sums(self, weight=None) -> np.ndarray:
        return sum(b.abs_sums(w) for b, w in zip(self.branches, self._leaf_weights(weight)))

    def fan_in(self) -> np.ndarray:
        return sum(b.fan_in() for b in self.branches)

    def fan_out(self) -> list[np.ndarray]:
        """One flat array per input, branch by branch."""
        return [fan for b in self.branches for fan in b.fan_out()]

    def matrix(self):
        """The branches' matrices side by side (n_out, all inputs): a dense array when all are, else CSR."""
        parts = [b.matrix() for b in self.branches]
        if all(isinstance(m, np.ndarray) for m in parts):
            return np.hstack(parts)
        m = sp.hstack([sp.csr_matrix(p) for p in parts], format="csr")
        m.sort_indices()
        return m

    def leaves(self) -> list:
        return [leaf for b in self.branches for leaf in b.leaves()]

    # ---- mapper cost
    def kernel_bits(self, weight_bits: int) -> int:
        return sum(b.kernel_bits(weight_bits) for b in self.branches)

    def tile_inputs(self, positions: int, channels: int, n_in: int) -> int:
        return min(n_in, sum(b.tile_inputs(positions, channels) for b in self.branches))

    def core_inputs(self, neurons: int, n_in: int) -> int:
        return min(n_in, sum(b.core_inputs(neurons) for b in self.branches))

    # ---- JSON
    def to_json(self) -> dict:
        return {"kind": self.kind, "branches": [b.to_json() for b in self.branches]}

    @classmethod
    def from_json(cls, d: dict, take) -> "Add":
        from hwtune.layers.stage import Stage

        if set(d) != {"kind", "branches"} or not isinstance(d["branches"], list):
            raise OpError(f"add takes exactly a list of branches, got {str(d)[:80]}")
        return cls(branches=tuple(Stage.from_json(b, take) for b in d["branches"]))
