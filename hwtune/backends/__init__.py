"""Backends run an :class:`~hwtune.artifact.Artifact` on a batch of samples, registered by name.

- ``emulator`` (:mod:`hwtune.backends.emulator`): bit-accurate numpy emulator (closed form and
  time-stepped).
- ``lava`` (:mod:`hwtune.backends.lava`): Lava (lava-nc) ``fixed_pt`` processes, Loihi 2 semantics
  (imports lava only when used).

A target names its backend (``backend:`` in its YAML); :func:`get_backend` returns the runner,
every runner has the signature ``run(artifact, k0) -> RunResult``, so callers never branch on the
backend. Every backend returns a :class:`RunResult` (or a subclass): metrics are computed once here.
"""
from __future__ import annotations

import importlib
import tempfile
from dataclasses import dataclass
from typing import Callable

import numpy as np

from hwtune import numerics
from hwtune.artifact import Artifact
from hwtune.errors import HwtuneError

#: backend name -> "module:function" of its runner run(artifact, k0) -> RunResult (loaded on first use).
_BACKENDS: dict[str, str] = {
    "emulator": "hwtune.backends.emulator:run_stepped",
    "lava": "hwtune.backends.lava:run_lava",
}


def register_backend(name: str, runner: str) -> None:
    """Register ``runner`` ("module:function", signature run(artifact, k0) -> RunResult) as ``name``."""
    _BACKENDS[name] = runner


def get_backend(name: str) -> Callable[[Artifact, np.ndarray], "RunResult"]:
    """The runner of backend ``name`` (the emulator's is its time-stepped mode: the hardware model)."""
    if name not in _BACKENDS:
        raise HwtuneError(f"unknown backend {name!r}; known: {', '.join(_BACKENDS)}")
    module, _, function = _BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), function)


def backend_names() -> list[str]:
    return list(_BACKENDS)


#: Longest path a Unix socket may have on Linux (sun_path: 108 bytes with the terminating NUL).
UNIX_SOCKET_PATH_MAX = 107
#: What multiprocessing adds to the temp dir for a listener's socket: /pymp-XXXXXXXX/listener-XXXXXXXX.
_LISTENER_SUFFIX = len("/pymp-12345678/listener-12345678")


def check_backend_can_start(name: str) -> None:
    """Refuse (HwtuneError), before any work, a backend that cannot start in this environment.
    ``lava``: its workers talk over Unix sockets that Python's multiprocessing makes inside the temp
    dir (TMPDIR), and a temp dir deeper than 107 - 32 = 75 characters leaves the socket path over
    Linux's limit (Lava then fails with "AF_UNIX path too long" and a traceback)."""
    if name != "lava":
        return
    temp = tempfile.gettempdir()
    if len(temp) + _LISTENER_SUFFIX > UNIX_SOCKET_PATH_MAX:
        raise HwtuneError(f"Lava cannot start: its workers talk over Unix sockets in the temp dir {temp!r} "
                          f"({len(temp)} characters), and the socket paths would exceed Linux's "
                          f"{UNIX_SOCKET_PATH_MAX}; set TMPDIR to a directory of at most "
                          f"{UNIX_SOCKET_PATH_MAX - _LISTENER_SUFFIX} characters")


@dataclass
class RunResult:
    """What a backend observed for a batch of B samples.

    activations: [k_0, k_1, ..., k_N], integers (B, n): input and hidden activations in steps
    (k = 0: silent), neurons in (C, H, W) order, layers in the artifact's (topological) order. potentials: [V_1, ..., V_{N+1}], integers (B, n):
    each layer's membrane at the end of its integration window (potential units); the last one is
    the logits. int64, or int32 where every register fits it (the emulator's fast mode).
    """

    artifact: Artifact
    activations: list[np.ndarray]
    potentials: list[np.ndarray]

    @property
    def spike_steps(self) -> list[np.ndarray]:
        """Spike step m = T_n - k inside each layer's window (float, inf when silent), layers as in
        activations; the step inside a sample is schedule[n] + m (numerics.spike_step)."""
        return [numerics.spike_step(k, t) for k, t in zip(self.activations, self.artifact.window_steps)]

    def backend_report(self) -> dict:
        """What this backend reports beyond the shared metrics (JSON-ready; none by default)."""
        return {}

    @property
    def logits(self) -> np.ndarray:
        """Read-out membrane V (B, n_out), integers; float logits are logit_scale * V."""
        return self.potentials[-1]

    @property
    def predictions(self) -> np.ndarray:
        """Class index per sample, argmax of the logits (ties go to the lowest index)."""
        return np.argmax(self.logits, axis=1)

    @property
    def latency_steps(self) -> int:
        """Steps from the first input step to the read-out (the same for every sample)."""
        return self.artifact.latency_steps

    def accuracy(self, labels) -> float:
        """Fraction of samples whose prediction equals ``labels``."""
        return float((self.predictions == np.asarray(labels)).mean())

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
        nonzero synapse leaving its neuron, through pooling, to every layer that reads it (Artifact.fan_out)."""
        events = np.zeros(len(self.logits), dtype=np.int64)
        for k, fan in zip(self.activations, self.artifact.fan_out()):
            events += (k > 0).astype(np.int64) @ fan
        return events
