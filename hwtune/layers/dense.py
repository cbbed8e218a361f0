"""Dense (fully connected) synapse: V_i = sum_j q_ij x_j."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwtune.layers import engine
from hwtune.layers.base import ArchError, OpError, Synapse


@dataclass
class Dense(Synapse):
    """V_i = sum_j q_ij x_j for (B, n_in) inputs; weight q: (n_out, n_in) signed integers.
    Architecture dict: {kind: dense, in, out}; torch: nn.Linear."""

    weight: np.ndarray
    kind = "dense"
    keys = {"in": (1, None), "out": (1, None)}
    torch_types = ("Linear",)
    name_prefix = "dense"
    brevitas_type = "QuantLinear"

    # ---- architecture and torch
    @classmethod
    def spec_output_shape(cls, i: int, layer: dict, shape: tuple) -> tuple:
        if len(shape) != 1 or shape[0] != layer["in"]:
            raise ArchError(f"layer {i} (dense): takes {layer['in']} inputs, gets shape {shape}"
                            + (" (a flatten layer is missing)" if len(shape) != 1 else ""))
        return (layer["out"],)

    @classmethod
    def spec_weights(cls, layer: dict) -> int:
        return layer["in"] * layer["out"]

    @classmethod
    def spec_from_torch(cls, module, where: str) -> dict:
        return {"kind": cls.kind, "in": module.in_features, "out": module.out_features}

    @classmethod
    def torch_synapse(cls, layer: dict, module_type=None, **kwargs):
        import torch.nn as nn
        return (module_type or nn.Linear)(layer["in"], layer["out"], **kwargs)

    @classmethod
    def torch_apply(cls, module, x, weight, bias):
        import torch.nn.functional as F
        return F.linear(x, weight, bias)

    @classmethod
    def from_spec(cls, layer: dict, weight: np.ndarray, in_shape: tuple) -> "Dense":
        return cls(weight=weight)

    # ---- integers
    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def input_shape(self) -> tuple:
        return (self.weight.shape[1],)

    def output_shape(self, in_shape: tuple | None = None) -> tuple:
        if in_shape is not None and tuple(in_shape) != self.input_shape():
            raise OpError(f"dense layer takes {self.weight.shape[1]} inputs, gets shape {tuple(in_shape)}")
        return (self.out_channels,)

    def apply(self, x: np.ndarray, dtype, weight: np.ndarray | None = None) -> np.ndarray:
        """sum_j q_ij x_j (B, n_out) computed and returned in ``dtype``, exact when :func:`exact_dtype`
        of the worst case (:meth:`abs_sums` x max |x|) chose it (on hwtune.layers.engine's kernels);
        ``weight``: a device instance's matrix."""
        return engine.dense(x, self.weight if weight is None else weight, dtype)

    def prepare(self, dtype, x_max: int | None, weight: np.ndarray | None = None):
        """:meth:`apply` prepared once for inputs 0 <= x <= ``x_max`` (hwtune.layers.engine.dense_kernel)."""
        if x_max is None:
            return super().prepare(dtype, x_max, weight)
        return engine.dense_kernel(self.weight if weight is None else weight, dtype, x_max)

    def abs_sums(self, weight: np.ndarray | None = None) -> np.ndarray:
        """sum_j |q_ij| per output neuron (out,) (``weight``: a device instance's matrix instead of q)."""
        return np.abs(self.weight if weight is None else weight).sum(axis=1, dtype=np.int64)

    def fan_in(self) -> np.ndarray:
        """Nonzero weights per output neuron (out,)."""
        return np.count_nonzero(self.weight, axis=1)

    def fan_out(self) -> np.ndarray:
        """Nonzero weights leaving each input (n_in,): synaptic events per input spike."""
        return np.count_nonzero(self.weight, axis=0)

    # ---- connectivity and mapper cost
    def matrix(self) -> np.ndarray:
        """The synapse matrix (n_out, n_in): q itself (Lava Dense)."""
        return self.weight

    # ---- JSON
    def to_json(self) -> dict:
        return {"kind": self.kind, "in": int(self.weight.shape[1]), "out": int(self.weight.shape[0])}

    @classmethod
    def from_json(cls, d: dict, take) -> "Dense":
        weight = take()
        if weight.ndim != 2 or [d.get("out"), d.get("in")] != list(weight.shape):
            raise OpError(f"dense {{in: {d.get('in')}, out: {d.get('out')}}} does not match the weight shape "
                          f"{weight.shape}")
        return cls(weight=weight)
