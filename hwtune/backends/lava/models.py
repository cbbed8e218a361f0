"""Fixed-point process model of the TTFS neuron (process.py)."""
# No "from __future__ import annotations": when compiling, Lava executes every module of this
# directory outside its package, where dataclasses cannot resolve string annotations.
import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from hwtune import numerics
from hwtune.backends.lava.process import TTFSNeuron


@implements(proc=TTFSNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyTTFSNeuronModelFixed(PyLoihiProcessModel):
    """Integer TTFS neuron, the update of docs/design.md (see TTFSNeuron for the equations).

    Precisions of state variables (stored as int32; the artifact's ``membrane_bits`` <= 32,
    Loihi 2: 24, is checked before building, so no register can overflow):

    - u, v, beta, sigma, theta: signed ``membrane_bits``-bit integers.
    - fired: 1 bit.
    - integration_start, firing_start, firing_end, period: unsigned step counts.

    Lava's time_step starts at 1; this model's step is t = time_step - 1, so the input
    RingBuffer's column t is the input layer's step t (see build.py). What it observes (latched V,
    spike steps) stays in this process and is written to ``record_path`` at the last step.
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

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.record_path = proc_params["record_path"]
        self.n_samples = proc_params["n_samples"]
        self.latched = None        # (n_samples, n) V at the end of integration
        self.spike_tau = None      # (n_samples, n) step of the spike inside the slot; -1 none, -2 several

    def run_spk(self) -> None:
        a_in = self.a_in.recv().astype(np.int64)
        if self.latched is None:
            self.latched = np.zeros((self.n_samples,) + a_in.shape, dtype=np.int64)
            self.spike_tau = np.full((self.n_samples,) + a_in.shape, -1, dtype=np.int64)
        sample, tau = divmod(self.time_step - 1, int(self.period))
        spikes = np.zeros(self.s_out.shape, dtype=np.int32)
        if tau == self.integration_start:
            self.u[:] = self.v[:] = self.fired[:] = 0
        if self.integration_start <= tau < self.firing_start:
            u, v = numerics.integrate(self.u.astype(np.int64), self.v.astype(np.int64), a_in, self.beta)
            self.u[:], self.v[:] = u, v
            if tau == self.firing_start - 1 and sample < self.n_samples:
                self.latched[sample] = v
        elif self.firing_start <= tau < self.firing_end:
            v, spike, fired = numerics.fire_step(self.v.astype(np.int64), self.fired.astype(bool),
                                                 self.sigma, self.theta)
            self.v[:], self.fired[:] = v, fired
            spikes[spike] = 1
            if sample < self.n_samples:
                row = self.spike_tau[sample]
                row[spike] = np.where(row[spike] == -1, tau, -2)
        self.s_out.send(spikes)
        if self.time_step == self.n_samples * int(self.period):
            np.savez(self.record_path, V=self.latched, spike_tau=self.spike_tau)
