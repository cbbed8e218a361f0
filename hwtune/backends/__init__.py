"""Backends run an :class:`~hwtune.artifact.Artifact` on a batch of samples.

- :mod:`hwtune.backends.emulator`: bit-accurate numpy emulator (closed form and time-stepped).
- :mod:`hwtune.backends.lava`: Lava (lava-nc) ``fixed_pt`` processes (imports lava lazily).

Every backend returns a :class:`RunResult` (or a subclass), so metrics are computed once here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwtune import numerics
from hwtune.artifact import Artifact


@dataclass
class RunResult:
    """What a backend observed for a batch of B samples.

    activations: [k_0, k_1, ..., k_N], int64 (B, n): input and hidden activations in steps
    (k = 0: silent). potentials: [V_1, ..., V_{N+1}], int64 (B, n): each layer's membrane at
    the end of its integration window (potential units); the last one is the logits.
    """

    artifact: Artifact
    activations: list[np.ndarray]
    potentials: list[np.ndarray]

    @property
    def spike_steps(self) -> list[np.ndarray]:
        """Spike step m = T_n - k inside each layer's window (float, inf when silent), layers as in
        activations; the step inside a sample is schedule[n] + m (numerics.spike_step)."""
        return [numerics.spike_step(k, t) for k, t in zip(self.activations, self.artifact.window_steps)]

    @property
    def logits(self) -> np.ndarray:
        """Read-out membrane V (B, n_out), int64; float logits are logit_scale * V."""
        return self.potentials[-1]

    @property
    def predictions(self) -> np.ndarray:
        """Class index per sample, argmax of the logits (ties go to the lowest index)."""
        return np.argmax(self.logits, axis=1)

    @property
    def latency_steps(self) -> int:
        """Steps from the first input step to the read-out (the same for every sample)."""
        return self.artifact.latency_steps

    def spike_counts(self, include_input: bool = False) -> np.ndarray:
        """Spikes per sample (B,): hidden neurons (and inputs if asked); silent neurons emit none,
        read-out neurons never spike."""
        layers = self.activations if include_input else self.activations[1:]
        return sum((np.count_nonzero(k, axis=1) for k in layers), np.zeros(len(self.logits), dtype=np.int64))

    def spikes_per_neuron(self, include_input: bool = False) -> np.ndarray:
        """spike_counts / number of neurons counted (hidden, plus inputs if asked), per sample (B,)."""
        layers = self.activations if include_input else self.activations[1:]
        n = sum(k.shape[1] for k in layers)
        return self.spike_counts(include_input) / max(n, 1)

    def synaptic_events(self) -> np.ndarray:
        """Synaptic events per sample (B,): each emitted spike (inputs included) counts once per
        nonzero weight leaving its neuron."""
        events = np.zeros(len(self.logits), dtype=np.int64)
        for k, layer in zip(self.activations, self.artifact.layers):
            events += (k > 0).astype(np.int64) @ layer.fan_out()
        return events
