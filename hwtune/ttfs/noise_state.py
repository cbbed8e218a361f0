"""The noise a TTFSNet's forward applies: hwtune.device_noise draws (numpy) turned into tensors.

A :class:`NoiseState` holds the levels (NoiseSpec), the net's geometry, the device instance and
a trial generator. The forward calls :meth:`NoiseState.begin` for every batch: it draws that
batch's trial-to-trial noise and, when training (``device_rng``), a new device instance every
``device_every`` batches, so the net learns to work across devices rather than on one draw. For
evaluation a fixed :class:`~hwtune.device_noise.Device` is given, and the emulator, fed the same device
and the same trial generator, sees exactly the same numbers (tests/test_noise.py).
"""
from __future__ import annotations

import numpy as np
import torch

from hwtune.device_noise import Device, Geometry, NoiseSpec, Trial


class NoiseState:
    def __init__(self, spec: NoiseSpec, geometry: list[Geometry], trial_rng: np.random.Generator,
                 device: Device | None = None, device_rng: np.random.Generator | None = None, device_every: int = 1):
        if spec.fixed_pattern and device is None and device_rng is None:
            raise ValueError("fixed-pattern noise needs a device instance or a generator of them")
        self.spec, self.geometry, self.trial_rng = spec, geometry, trial_rng
        self.device, self.device_rng, self.device_every = device, device_rng, max(1, int(device_every))
        self.trial: Trial | None = None
        self._batches = 0
        self._tensors: dict = {}

    def begin(self, batch: int) -> None:
        """Draw the noise of the next batch of ``batch`` samples (and a new device when due)."""
        if self.device_rng is not None and self._batches % self.device_every == 0 and self.spec.fixed_pattern:
            self.device = Device.draw(self.spec, self.geometry, self.device_rng)
            self._tensors.clear()
        self._batches += 1
        self.trial = Trial.draw(self.spec, self.geometry, batch, self.trial_rng) if self.spec.trial_to_trial else None

    def _tensor(self, key, array, like: torch.Tensor):
        if key not in self._tensors:
            self._tensors[key] = torch.as_tensor(array, dtype=torch.float64, device=like.device)
        return self._tensors[key]

    def weight_factor(self, n: int, b: int, like: torch.Tensor) -> torch.Tensor | None:
        """1 + weight_mismatch x eps of branch b of layer n (unshared weight shape), or None."""
        if self.device is None or self.device.weight_eps[n] is None:
            return None
        return 1 + self.spec.weight_mismatch * self._tensor(("w", n, b), self.device.weight_eps[n][b], like)

    def threshold_shift(self, h: int, like: torch.Tensor) -> torch.Tensor | None:
        """Spike shift (fractions of the window) from the threshold offsets of hidden layer h:
        mismatch (fixed) + noise (this batch), shaped (B or 1, neurons); None without either."""
        shift = None
        if self.device is not None and self.device.threshold_eps[h] is not None:
            shift = self.spec.threshold_mismatch * self._tensor(("t", h), self.device.threshold_eps[h], like)[None]
        if self.trial is not None and self.trial.threshold_eps[h] is not None:
            trial = self.spec.threshold_noise * torch.as_tensor(self.trial.threshold_eps[h], dtype=torch.float64,
                                                                 device=like.device)
            shift = trial if shift is None else shift + trial
        return shift

    def jitter_eps(self, h: int, like: torch.Tensor) -> torch.Tensor | None:
        if self.trial is None or self.trial.jitter_eps[h] is None:
            return None
        return torch.as_tensor(self.trial.jitter_eps[h], dtype=torch.float64, device=like.device)

    def deletion_u(self, h: int, like: torch.Tensor) -> torch.Tensor | None:
        if self.trial is None or self.trial.deletion_u[h] is None:
            return None
        return torch.as_tensor(self.trial.deletion_u[h], dtype=torch.float64, device=like.device)
