"""Fixed-point process models of the TTFS neuron and the spike recorder (process.py)."""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from hwtune import numerics
from hwtune.backends.lava.process import SpikeRecorder, TTFSNeuron


@implements(proc=TTFSNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyTTFSNeuronModelFixed(PyLoihiProcessModel):
    """Integer TTFS neuron, the update of docs/design.md (see TTFSNeuron for the equations).

    Precisions of state variables (stored as int32; the artifact's ``membrane_bits`` <= 32,
    Loihi 2: 24, is checked before building, so no register can overflow):

    - u, v, beta, sigma, theta: signed ``membrane_bits``-bit integers.
    - fired: 1 bit.
    - V: signed ``membrane_bits``-bit integers, one row per sample.
    - integration_start, firing_start, firing_end, period: unsigned step counts.

    Lava's time_step starts at 1; this model's step is t = time_step - 1, so the input
    RingBuffer's column t is the input layer's step t (see build.py).
    """

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    fired: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)
    beta: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    sigma: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    theta: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    integration_start: int = LavaPyType(int, np.int32, precision=24)
    firing_start: int = LavaPyType(int, np.int32, precision=24)
    firing_end: int = LavaPyType(int, np.int32, precision=24)
    period: int = LavaPyType(int, np.int32, precision=24)
    V: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        a_in = self.a_in.recv().astype(np.int64)
        sample, tau = divmod(self.time_step - 1, int(self.period))
        spikes = np.zeros(self.s_out.shape, dtype=np.int32)
        if tau == self.integration_start:
            self.u[:] = self.v[:] = self.fired[:] = 0
        if self.integration_start <= tau < self.firing_start:
            u, v = numerics.integrate(self.u.astype(np.int64), self.v.astype(np.int64), a_in, self.beta)
            self.u[:], self.v[:] = u, v
            if tau == self.firing_start - 1 and sample < self.V.shape[0]:
                self.V[sample] = v
        elif self.firing_start <= tau < self.firing_end:
            v, spike, fired = numerics.fire_step(self.v.astype(np.int64), self.fired.astype(bool),
                                                 self.sigma, self.theta)
            self.v[:], self.fired[:] = v, fired
            spikes[spike] = 1
        self.s_out.send(spikes)


@implements(proc=SpikeRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySpikeRecorderModelFixed(PyLoihiProcessModel):
    """steps[sample, i] = tau of neuron i's spike in the sample's slot; -2 when it spikes again."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=1)
    period: int = LavaPyType(int, np.int32, precision=24)
    steps: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        spiked = self.a_in.recv() != 0
        if spiked.any():
            sample, tau = divmod(self.time_step - 1, int(self.period))
            row = self.steps[sample]
            row[spiked] = np.where(row[spiked] == -1, tau, -2)
