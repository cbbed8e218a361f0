"""Identity synapse: V_i = w_c x_i, one weight per channel (1 in a net: an activation entering a join directly)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hwtune.layers.base import OpError, Synapse, is_count


@dataclass
class Identity(Synapse):
    """A direct connection: neuron i of channel c gets w_c x_i from the same position of its input
    (weight w (C,), integer; a residual net's skip without projection has w = 1). It is how an
    activation enters a join of potentials (hwtune.graph); in an artifact its weights are stored like
    any synapse's, so device mismatch draws one factor per connection. in_shape: (C,) or (C, H, W)."""

    weight: np.ndarray
    in_shape: tuple
    kind = "identity"
    weighted = False
    in_architecture = False
    shares_kernels = True
    name_prefix = "identity"

    def __post_init__(self):
        self.in_shape = tuple(int(n) for n in self.in_shape)
        if self.weight.ndim != 1 or not self.in_shape or not all(is_count(n, 1) for n in self.in_shape) \
                or self.weight.shape[0] != self.in_shape[0]:
            raise OpError(f"identity weight must be one per channel of its input {self.in_shape}, got shape "
                          f"{self.weight.shape}")

    @classmethod
    def spec_output_shape(cls, i: int, layer: dict, shape: tuple) -> tuple:
        return shape

    @classmethod
    def torch_apply(cls, module, x, weight, bias):
        """x times one weight per channel (C,), or per neuron (C, *positions) for a device instance."""
        w = weight if weight.ndim == x.ndim - 1 else weight.reshape(len(weight), *(1,) * (x.ndim - 2))
        out = x * w
        return out if bias is None else out + bias.reshape(1, -1, *(1,) * (x.ndim - 2))

    @property
    def out_channels(self) -> int:
        return self.in_shape[0]

    def input_shape(self) -> tuple:
        return self.in_shape

    def output_shape(self, in_shape: tuple | None = None) -> tuple:
        if in_shape is not None and tuple(in_shape) != self.in_shape:
            raise OpError(f"identity takes input shape {self.in_shape}, gets {tuple(in_shape)}")
        return self.in_shape

    def _per_neuron(self, weight) -> np.ndarray:
        """(C, *positions) weights: the channel's weight at every position, or a device instance's."""
        weight = self.weight if weight is None else weight
        return weight.reshape(len(weight), *(1,) * (len(self.in_shape) - 1)) if weight.ndim == 1 else weight

    def apply(self, x: np.ndarray, dtype, weight=None) -> np.ndarray:
        return x.astype(dtype, copy=False) * self._per_neuron(weight).astype(dtype)

    def abs_sums(self, weight=None) -> np.ndarray:
        w = np.abs(self._per_neuron(weight)).reshape(self.out_channels, -1)
        return w.max(axis=1).astype(np.int64)

    def fan_in(self) -> np.ndarray:
        return (self.weight != 0).astype(np.int64)

    def fan_out(self) -> np.ndarray:
        return np.broadcast_to(self._per_neuron(None) != 0, self.in_shape).astype(np.int64)

    def matrix(self) -> sp.csr_matrix:
        """The diagonal (n, n): neuron i reads input i."""
        diagonal = np.broadcast_to(self._per_neuron(None), self.in_shape).reshape(-1).astype(np.int64)
        m = sp.diags(diagonal, format="csr")
        m.eliminate_zeros()
        return m

    def kernel_bits(self, weight_bits: int) -> int:
        return weight_bits

    def tile_inputs(self, positions: int, channels: int, n_in: int) -> int:
        return min(n_in, positions * channels)

    def core_inputs(self, neurons: int, n_in: int) -> int:
        return min(n_in, neurons)

    def to_json(self) -> dict:
        return {"kind": self.kind, "in_shape": list(self.in_shape)}

    @classmethod
    def from_json(cls, d: dict, take) -> "Identity":
        in_shape = d.get("in_shape")
        if set(d) != {"kind", "in_shape"} or not isinstance(in_shape, list) or not in_shape:
            raise OpError(f"identity takes exactly in_shape, got {str(d)[:80]}")
        return cls(weight=take(), in_shape=tuple(in_shape))

    @classmethod
    def of(cls, shape: tuple) -> "Identity":
        """The identity of weight 1 on inputs of ``shape``."""
        return cls(weight=np.ones(shape[0], dtype=np.int64), in_shape=tuple(shape))

