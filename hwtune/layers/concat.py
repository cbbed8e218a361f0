"""Channel concatenation: the activations of two or more layers side by side, each scaled by a power of two."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hwtune.layers.base import ArchError, OpError, ShapeOp, is_count


@dataclass(frozen=True)
class Concat(ShapeOp):
    """(C_1, H, W), (C_2, H, W), ... -> (C_1 + C_2 + ..., H, W) (or flat vectors end to end), in input
    order: the activations of two or more layers (or the sample) read by one synapse, a DenseNet's or
    an Inception block's join. torch: ``torch.cat([a, b], dim=1)``.

    In an artifact each input p is scaled by 2^shifts[p]: the inputs' time grids (tau_c per step) are
    powers of two apart on an aligned grid (TTFSNet.align_windows), and the synapse after the concat
    counts every input in the finest of them, so k_p steps of input p are worth k_p 2^shifts[p]
    (docs/design.md "Graphs"). An architecture's concat has no shifts: the export sets them."""

    shifts: tuple = ()
    kind = "concat"
    arity = None
    torch_functions = ("cat", "concat")

    def __post_init__(self):
        if not isinstance(self.shifts, tuple) or not all(is_count(s, 0) for s in self.shifts):
            raise OpError(f"concat shifts must be integers >= 0, got {self.shifts!r}")

    @classmethod
    def spec_output_shape(cls, i: int, layer: dict, *shapes: tuple) -> tuple:
        if len({len(s) for s in shapes}) != 1 or len({tuple(s[1:]) for s in shapes}) != 1:
            raise ArchError(f"layer {i} (concat): joins maps of one height and width (or vectors), got {list(shapes)}")
        return (sum(s[0] for s in shapes), *shapes[0][1:])

    @classmethod
    def spec_from_function(cls, where: str, args: tuple, kwargs: dict) -> dict:
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if dim != 1:
            raise ArchError(f"{where}: only concatenation along the channels (dim=1) is supported, got dim={dim}")
        return {"kind": cls.kind}

    def _shifts(self, n: int) -> tuple:
        if self.shifts and len(self.shifts) != n:
            raise OpError(f"concat has {len(self.shifts)} shifts for {n} inputs")
        return self.shifts or (0,) * n

    def output_shape(self, *in_shapes: tuple) -> tuple:
        if len(in_shapes) < 2:
            raise OpError(f"concat joins two or more inputs, got {len(in_shapes)}")
        self._shifts(len(in_shapes))
        try:
            return self.spec_output_shape(0, {}, *in_shapes)
        except ArchError as e:
            raise OpError(str(e).removeprefix("layer 0 (concat): ")) from None

    def gain_on(self, *in_shapes: tuple) -> int:
        return 1 << max(self._shifts(len(in_shapes)))

    def with_shifts(self, shifts: list[int]) -> "Concat":
        return Concat(tuple(int(s) for s in shifts))

    def torch_apply(self, *xs, integer: bool = False):
        import torch
        return torch.cat(xs, dim=1)

    def apply(self, *xs: np.ndarray) -> np.ndarray:
        shifts = self._shifts(len(xs))
        return np.concatenate([x * (1 << s) if s else x for x, s in zip(xs, shifts)], axis=1)

    def matrix(self, *in_shapes: tuple):
        """Block diagonal: output block p is input p times 2^shifts[p] (channel-major order keeps blocks whole)."""
        shifts = self._shifts(len(in_shapes))
        blocks = [sp.identity(int(np.prod(s)), dtype=np.int64, format="csr") * (1 << shift)
                  for s, shift in zip(in_shapes, shifts)]
        return sp.block_diag(blocks, format="csr")

    def fan_out_in(self, fan_out: np.ndarray, *in_shapes: tuple) -> list[np.ndarray]:
        edges = np.cumsum([0] + [s[0] for s in in_shapes])
        return [fan_out[a:b].reshape(s) for a, b, s in zip(edges[:-1], edges[1:], in_shapes)]

    def to_json(self) -> dict:
        return {"kind": self.kind, "shifts": list(self.shifts)}

    @classmethod
    def from_json(cls, d: dict) -> "Concat":
        if set(d) != {"kind", "shifts"} or not isinstance(d["shifts"], list):
            raise OpError(f"concat takes exactly its shifts, got {str(d)[:80]}")
        return cls(tuple(d["shifts"]))
