"""Lava Process (interface only; the model is in models.py): a layer of TTFS neurons."""
# No "from __future__ import annotations": when compiling, Lava executes every module of this
# directory outside its package, where dataclasses cannot resolve string annotations.
import typing as ty

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var

from hwtune import numerics


class TTFSNeuron(AbstractProcess):
    """A layer of B1 time-to-first-spike neurons, running many samples back to back.

    Time is cut into slots of ``period`` steps, one sample per slot; tau = t mod period is the
    step inside the sample (artifact coordinates: tau = F_n + m for a spike at window step m),
    and sample = t // period. For the layer with input window T_{n-1} and own window T_n
    (docs/design.md, "Time-stepped semantics"), per neuron and per step, with a_in the sum of
    the weights q_ij of the spikes arriving this step:

        tau == integration_start:                     u = v = 0; fired = 0   (new sample)
        integration_start <= tau < firing_start:      u += a_in;  v += u + beta
        tau == firing_start - 1 (after the update):   V[sample] = v          (latched potential)
        firing_start <= tau < firing_end:             v += sigma; if v >= theta and not fired:
                                                      s_out = 1, fired = 1
        otherwise:                                    idle (a_in ignored)

    with integration_start = F_{n-1} + d, firing_start = F_n = integration_start + T_{n-1},
    firing_end = F_n + T_n and theta = sigma (T_n + 1). The read-out has firing_end =
    firing_start (no firing phase, sigma = 0): its latched V are the logits.

    State and parameters (signed integers; widths of the target, checked by build.py):

    - u: current, ``membrane_bits`` (Loihi 2: 24 bits).
    - v: membrane potential, ``membrane_bits``.
    - fired: 1 bit, the neuron has spiked in this slot.
    - beta: per-step bias mantissa, ``membrane_bits``.
    - sigma: firing slope (potential units per step), ``membrane_bits``.
    - theta: firing threshold sigma (T_n + 1), ``membrane_bits``.
    - integration_start, firing_start, firing_end, period: schedule in steps.

    What the run observed (the latched V of every sample, and the step tau of every neuron's spike
    in every slot: -1 none, -2 more than one) is written by the model to ``record_path`` (.npz,
    keys "V" and "spike_tau") at the last of ``total_steps``: Lava reads Vars back one value at a
    time (~20 us each), which would dominate a run of conv layers.

    Parameters
    ----------
    shape: (n,) neurons. beta, sigma: per neuron (sigma None: read-out).
    integration_start, steps_in: integration window [integration_start, + T_{n-1}).
    steps_out: T_n (0 for the read-out). period: steps per sample slot (>= the latency).
    n_samples: sample slots; record_path: where the model writes what it observed.
    """

    def __init__(self, *, shape: ty.Tuple[int], beta: np.ndarray, sigma: ty.Optional[np.ndarray],
                 integration_start: int, steps_in: int, steps_out: int, period: int, n_samples: int,
                 record_path: str, name: ty.Optional[str] = None, log_config: ty.Optional[LogConfig] = None) -> None:
        sigma = np.zeros(shape, dtype=np.int64) if sigma is None else np.asarray(sigma, dtype=np.int64)
        firing_start = integration_start + steps_in
        super().__init__(shape=shape, name=name, log_config=log_config, record_path=record_path,
                         n_samples=n_samples)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.u = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=0)
        self.fired = Var(shape=shape, init=0)
        self.beta = Var(shape=shape, init=np.asarray(beta, dtype=np.int64))
        self.sigma = Var(shape=shape, init=sigma)
        self.theta = Var(shape=shape, init=numerics.threshold(sigma, steps_out))
        self.integration_start = Var(shape=(1,), init=integration_start)
        self.firing_start = Var(shape=(1,), init=firing_start)
        self.firing_end = Var(shape=(1,), init=firing_start + steps_out)
        self.period = Var(shape=(1,), init=period)
