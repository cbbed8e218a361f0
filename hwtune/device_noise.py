"""Device noise: what an analog or mixed-signal chip adds to the TTFS model, as data (numpy only).

Two kinds, every level a standard deviation (or a probability), every draw from a numpy
Generator so that the torch model and the emulator see the same numbers:

- fixed pattern, drawn once per device instance (:class:`Device`, from its seed): weight mismatch
  (multiplicative, one factor per physical synapse: a convolution has no weight sharing on an
  analog chip, so every output position has its own), threshold mismatch (one offset per neuron);
- trial to trial, drawn anew for every sample (:class:`Trial`): spike-time jitter (per spike),
  threshold noise (per neuron and sample), spike deletion (per spike).

Units: jitter, threshold noise and threshold mismatch are fractions of the layer's window (a
threshold offset delta moves the spike by delta / slope; the level is that shift in windows);
weight mismatch is a fraction of each weight. The integer rules that apply the draws are in
:mod:`hwtune.numerics`. Seeds: training devices and trials come from stream ``TRAIN``, held-out
evaluation devices from stream ``EVAL`` (numpy SeedSequence entropy [stream, seed, index]), so an
evaluation device is never one the net was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwtune.settings import Settings, setting

TRAIN, EVAL, TRIAL = 1, 2, 3


@dataclass(frozen=True)
class NoiseSpec(Settings):
    """Noise levels of a device (a target's ``noise`` section, a noise pass, a sweep point)."""

    jitter: float = setting(0.0, "float", "trial-to-trial spike-time jitter, standard deviation",
                            "fraction of the window", lo=0, hi=100)
    threshold_noise: float = setting(0.0, "float", "trial-to-trial threshold noise, standard deviation of the "
                                     "spike shift it causes", "fraction of the window", lo=0, hi=100)
    spike_deletion: float = setting(0.0, "float", "probability that an emitted spike is lost", "probability",
                                    lo=0, hi=1)
    weight_mismatch: float = setting(0.0, "float", "fixed-pattern weight mismatch per synapse, standard deviation",
                                     "fraction of each weight", lo=0, hi=10)
    threshold_mismatch: float = setting(0.0, "float", "fixed-pattern threshold mismatch per neuron, standard "
                                        "deviation of the spike shift it causes", "fraction of the window", lo=0, hi=100)

    @property
    def fixed_pattern(self) -> bool:
        return self.weight_mismatch > 0 or self.threshold_mismatch > 0

    @property
    def trial_to_trial(self) -> bool:
        return self.jitter > 0 or self.threshold_noise > 0 or self.spike_deletion > 0

    @property
    def any(self) -> bool:
        return self.fixed_pattern or self.trial_to_trial


@dataclass(frozen=True)
class Geometry:
    """What the draws of one layer need: the weight shape of each of its synapses (a join has one per
    branch), unshared over the output positions for a convolution (C_out, C_in, K, K, H_o, W_o), its
    number of neurons and whether it spikes."""

    weight_shapes: tuple
    neurons: int
    hidden: bool


def rng(stream: int, seed: int, index: int = 0) -> np.random.Generator:
    """The Generator of draw ``index`` of ``seed`` in ``stream`` (TRAIN, EVAL or TRIAL)."""
    return np.random.default_rng(np.random.SeedSequence([stream, int(seed), int(index)]))


@dataclass
class Device:
    """One device instance: per layer, the weight-mismatch factors' standard normals (a list with one
    array of unshared weight shape per synapse, or None) and, per hidden layer, the threshold-mismatch
    normals (neurons,) or None."""

    spec: NoiseSpec
    weight_eps: list
    threshold_eps: list

    @classmethod
    def draw(cls, spec: NoiseSpec, layers: list[Geometry], generator: np.random.Generator) -> "Device":
        """Layer by layer: weight normals of each synapse (if weight_mismatch), then threshold normals
        (hidden layers, if threshold_mismatch). The same order for every user of the draws."""
        weights, thresholds = [], []
        for g in layers:
            weights.append([generator.standard_normal(shape) for shape in g.weight_shapes]
                           if spec.weight_mismatch else None)
            thresholds.append(generator.standard_normal(g.neurons) if spec.threshold_mismatch and g.hidden else None)
        return cls(spec, weights, thresholds)


@dataclass
class Trial:
    """Trial-to-trial draws of one batch: per hidden layer, (B, neurons) arrays of threshold-noise
    normals, jitter normals and deletion uniforms (None where the level is 0)."""

    threshold_eps: list
    jitter_eps: list
    deletion_u: list

    @classmethod
    def draw(cls, spec: NoiseSpec, layers: list[Geometry], batch: int, generator: np.random.Generator) -> "Trial":
        """Hidden layer by hidden layer: threshold normals, jitter normals, deletion uniforms."""
        th, ji, de = [], [], []
        for g in (g for g in layers if g.hidden):
            shape = (batch, g.neurons)
            th.append(generator.standard_normal(shape) if spec.threshold_noise else None)
            ji.append(generator.standard_normal(shape) if spec.jitter else None)
            de.append(generator.random(shape) if spec.spike_deletion else None)
        return cls(th, ji, de)
