"""Hardware noise models applied inside the TTFS forward pass (training and evaluation).

All draws come from one seeded torch.Generator, so a run is reproducible by seed.
Units: ``jitter`` and ``threshold`` are standard deviations in units of the layer's window
(float nets: L_n tau_c; quantized nets: T_n steps, rounded to whole steps) unless
``units == "steps"`` (quantized nets only: sigma in time steps). ``weight_mult`` is relative,
``weight_add`` is relative to max|W| (or to the largest mantissa for integer weights).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch


@dataclass
class NoiseModel:
    jitter: float = 0.0
    weight_mult: float = 0.0
    weight_add: float = 0.0
    threshold: float = 0.0
    units: str = "window"
    seed: int = 0
    generator: torch.Generator = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.units not in ("window", "steps"):
            raise ValueError(f"noise units must be 'window' or 'steps', got {self.units!r}")
        for name in ("jitter", "weight_mult", "weight_add", "threshold"):
            if getattr(self, name) < 0:
                raise ValueError(f"noise {name} must be >= 0, got {getattr(self, name)}")
        self.generator = torch.Generator().manual_seed(self.seed)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("generator", None)
        return d

    def normal(self, like: torch.Tensor, std: float) -> torch.Tensor:
        """std * N(0, 1) of like's shape/dtype (zeros without a draw when std == 0)."""
        if std == 0:
            return torch.zeros_like(like)
        return std * torch.randn(like.shape, generator=self.generator, dtype=like.dtype)

    def perturb_weight(self, w: torch.Tensor, w_max: float) -> torch.Tensor:
        """W' = W (1 + m eps) + a w_max eps' (straight-through: noise is not differentiated)."""
        if self.weight_mult == 0 and self.weight_add == 0:
            return w
        noise = w.detach() * self.normal(w, self.weight_mult) + self.normal(w, self.weight_add * w_max)
        return w + noise
