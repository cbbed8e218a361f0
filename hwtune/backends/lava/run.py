"""Run an artifact on Lava's stock processes (build.py), all samples in one long run; Ctrl-C stops it cleanly.

Why Ctrl-C needs care (lava-nc 0.10.0): Lava forks its process models and runtime service into
the terminal's process group, so a Ctrl-C reaches them too; they die on KeyboardInterrupt without
answering the runtime, whose ``stop()`` then waits for ever (no timeout) and leaves zombies. Here
the workers are forked with SIGINT held back (:func:`sigint_deferred`), so only this process gets
the KeyboardInterrupt; it then stops Lava (:func:`_abort`: Lava's own stop, bounded, else the
workers are terminated and joined) and re-raises.

A worker that dies mid-run (the out-of-memory killer on a large net) never sends its steps, and the
host would wait for ever; the host waits for each step at most :data:`WORKER_POLL_S` seconds at a
time and between two waits looks whether every worker lives (:func:`_receive`): a dead one ends the
run with a LavaRunError that names it and how it died.
"""
# No "from __future__ import annotations": when compiling, Lava executes every module of this
# directory outside its package, where dataclasses cannot resolve string annotations.

import multiprocessing
import signal
import tempfile
import threading
import typing as ty
import warnings
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from queue import Empty

import numpy as np
import scipy.sparse
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.magma.runtime.message_infrastructure.multiprocessing import SystemProcess
from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel
from lava.proc.io.injector import Injector, PyLoihiInjectorModel

from hwtune import numerics, progress
from hwtune.artifact import Artifact
from hwtune.backends import RunResult, check_backend_can_start
from hwtune.backends.lava.build import build_network
from hwtune.backends.lava.lifecycle import workers_die_with_parent
from hwtune.errors import HwtuneError
from hwtune.interrupts import sigint_deferred

#: Seconds Lava's own stop() gets after an error or a Ctrl-C before the workers are killed.
STOP_TIMEOUT = 5.0
#: Seconds the host waits for a step's spikes before it looks again whether every worker lives.
WORKER_POLL_S = 1.0


class LavaRunError(HwtuneError, RuntimeError):
    """Lava produced spikes that the TTFS schedule does not allow, or no record (a backend bug)."""


@dataclass
class LavaResult(RunResult):
    """A :class:`RunResult` observed on Lava's stock processes (build.py): hidden activations from
    the spikes the Extractors saw, the read-out's V from its v. Hidden V are not observable there,
    so ``potentials`` holds the read-out's only.

    period: steps between samples, which are pipelined (each layer's slot of a sample is that long;
    reported as sample_interval_steps); total_steps: steps run (B P + the read-out's R); process_models:
    module-qualified class of every ProcessModel that ran; max_spikes_per_neuron: the most spikes
    of any hidden neuron in any sample (1: every neuron spikes exactly once).
    """

    period: int = 0
    total_steps: int = 0
    process_models: ty.List[str] = field(default_factory=list)
    max_spikes_per_neuron: int = 0

    def backend_report(self) -> dict:
        return {"process_models": self.process_models, "max_spikes_per_neuron": self.max_spikes_per_neuron,
                "sample_interval_steps": self.period}


@contextmanager
def lava_runtime(process, temp_dir: str, run_cfg):
    """Compile the graph of ``process`` for ``run_cfg`` and start its runtime for the block; the
    runtime is stopped after it, also on error or Ctrl-C (KeyboardInterrupt is re-raised after the
    clean-up). ``temp_dir``: the run's own temporary directory, removed if this process dies. Yields
    Lava's worker processes."""
    executable = process.compile(run_cfg)
    before, workers = set(multiprocessing.active_children()), []
    try:
        # Lava forks its workers here: they inherit a handler that drops SIGINT (SIGTERM: a quiet
        # exit), and die with this process (lifecycle)
        with sigint_deferred(caller_holds=False), workers_die_with_parent(temp_dir):
            process.create_runtime(executable=executable)
            workers = _new_workers(before)
        yield workers
        process.stop()
    except BaseException:  # KeyboardInterrupt (Ctrl-C) included
        _abort(process, workers or _new_workers(before))
        raise


def _new_workers(before: set) -> list:
    """Lava's worker processes (process models, runtime services) among the children started since."""
    return [p for p in multiprocessing.active_children() if p not in before and isinstance(p, SystemProcess)]


def _receive(extractor, workers: list) -> np.ndarray:
    """The next step of spikes from ``extractor``, waited for in slices of WORKER_POLL_S seconds; between
    two, LavaRunError if one of Lava's ``workers`` died (its spikes would never come). Relies on lava-nc
    0.10.0's CspRecvQueue (the extractor's external port ``_queue``: a peek with a timeout)."""
    queue = extractor.out_port.external_pipe_csp_recv_port._queue
    while True:
        try:
            queue.get(timeout=WORKER_POLL_S, peek=True)    # the step is there: receive() will not block
            return extractor.receive()
        except Empty:
            dead = [p for p in workers if p.exitcode is not None]
            if dead:
                raise LavaRunError(f"Lava's worker {dead[0].name} (pid {dead[0].pid}) {_death(dead[0].exitcode)} "
                                   "in the middle of the run; its spikes will not come, the run is stopped")


def _death(exitcode: int) -> str:
    """How a process ended, from its multiprocessing exit code (-N: killed by signal N)."""
    if exitcode >= 0:
        return f"exited with status {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    return f"was killed by {name}" + (" (the out-of-memory killer sends it when memory runs out)"
                                      if name == "SIGKILL" else "")


def _abort(process, workers: list, timeout: float = STOP_TIMEOUT) -> None:
    """Tear the Lava runtime of ``process`` down after an error or a Ctrl-C, without hanging and
    without leaving a process behind; ``workers``: its worker processes.

    Lava's stop() waits without timeout for replies a dead worker never sends, so it is tried only
    when every worker lives, in a helper thread, for ``timeout`` seconds (a second Ctrl-C ends the
    wait). Otherwise the workers are terminated (SIGTERM, then SIGKILL) and joined, and Lava's
    join() and stop() finish its teardown without the handshake (port threads ended, shared memory
    unlinked). Relies on lava-nc 0.10.0's Runtime._is_started.
    """
    runtime = process.runtime
    if runtime is None:  # interrupted while compiling: nothing started
        return
    helper = None
    try:
        if all(p.is_alive() for p in workers):
            helper = _stop_in_thread(runtime)
            helper.join(timeout)
            if helper.stopped:
                return
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
        pass
    with sigint_deferred():  # bounded; a Ctrl-C meanwhile is re-raised at the end
        for p in workers:
            with suppress(ValueError):  # ValueError: closed, Lava joined it already
                if p.is_alive():
                    p.terminate()
        for p in workers:
            with suppress(ValueError):
                multiprocessing.Process.join(p, 2.0)
                if p.is_alive():
                    p.kill()
                    multiprocessing.Process.join(p)
        if helper is not None:
            helper.join(1.0)  # a stop() that was joining the workers finishes now
        if helper is None or not helper.stopped:
            runtime._is_started = False  # stop() then skips the handshake with the dead runtime service
            with suppress(Exception):
                runtime.join()
            with suppress(Exception):
                runtime.stop()


def _stop_in_thread(runtime) -> threading.Thread:
    """Start runtime.stop() in a daemon thread, whose ``stopped`` tells whether it completed."""
    def stop():
        with suppress(BaseException):  # the caller re-raises its own exception
            runtime._is_started = True  # a runtime initialized but never started handles STOP too
            runtime.stop()
            helper.stopped = True

    helper = threading.Thread(target=stop, name="lava-stop", daemon=True)
    helper.stopped = False
    helper.start()
    return helper


#: The io adapters' Loihi-protocol models (their models carry no fixed_pt tag).
IO_MODELS = {Injector: PyLoihiInjectorModel, Extractor: PyLoihiExtractorModel}


class HardwareUnavailable(HwtuneError):
    """--hardware without Intel's lava-loihi extension (the Loihi 2 compilers and chip models)."""


def hardware_available() -> bool:
    """Whether lava-loihi is importable (Lava's own check, lava.utils.loihi.is_installed)."""
    from lava.utils.loihi import is_installed
    return is_installed()


def require_hardware() -> None:
    """Refuse (HardwareUnavailable) a hardware run where lava-loihi is missing, before any work."""
    if not hardware_available():
        raise HardwareUnavailable(
            "--hardware runs on a Loihi 2 board through Intel's lava-loihi extension (for members of Intel's "
            "Neuromorphic Research Community), which is not installed here; without --hardware the same "
            "processes run in Lava's bit-accurate simulator (Loihi2SimCfg)")


def run_config(hardware: bool = False):
    """Loihi2HwCfg (the chip; lava-loihi's models) or Loihi2SimCfg with the bit-accurate models."""
    if hardware:
        from lava.magma.core.run_configs import Loihi2HwCfg
        require_hardware()
        return Loihi2HwCfg(exception_proc_model_map=IO_MODELS)
    return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=IO_MODELS)


#: Input steps the host streams ahead of the run (Lava's Injector buffers 50 by default).
_AHEAD = 32


def run_lava(artifact: Artifact, k0, hardware: bool = False) -> LavaResult:
    """Run all samples of ``k0`` (B, n_in), pipelined, in one run of Lava's stock processes (build.py)
    in Lava's bit-accurate simulator, or on a Loihi 2 board (``hardware``: lava-loihi). Sample b enters
    on step b P, P = build.period_steps, and layer n works on it in steps b P + [R_n, R_n + P); the processes are always
    stopped, also on error or Ctrl-C (KeyboardInterrupt is re-raised after the clean-up)."""
    check_backend_can_start("lava")
    # DelaySparse (d > 1) edits its CSR in place every step; scipy warns about it in every worker
    warnings.filterwarnings("ignore", category=scipy.sparse.SparseEfficiencyWarning)
    with tempfile.TemporaryDirectory(prefix="hwtune-lava-") as temp_dir:
        net = build_network(artifact, k0)
        total, anchor = net.total_steps, net.readout
        progress.log(f"Lava: compiling {len(net.processes)} processes for {net.n_samples} sample(s) of {net.period} steps")
        spikes = [np.zeros((total, ex.in_port.shape[0]), dtype=bool) for ex in net.extractors]
        with lava_runtime(anchor, temp_dir, run_config(hardware)) as workers, \
                progress.bar(total=net.n_samples, desc="Lava" + (" (board)" if hardware else ""), unit="sample") as bar:
            anchor.run(condition=RunSteps(num_steps=total, blocking=False))
            for t in range(min(_AHEAD, total)):
                net.injector.send(net.inputs(t))
            for t in range(total):
                if t + _AHEAD < total:
                    net.injector.send(net.inputs(t + _AHEAD))
                for extractor, record in zip(net.extractors, spikes):
                    record[t] = _receive(extractor, workers) != 0
                if (t + 1) % net.period == 0:
                    bar.update(1)
            anchor.wait()
            v = np.asarray(net.monitor.get_data()[anchor.name]["v"], dtype=np.int64)
        models = sorted({f"{p.model_class.__module__}.{p.model_class.__qualname__}" for p in net.processes})
    activations, most = [net.k0], 0
    for layer, record in zip(net.layers, spikes):
        k, count = _decode(_slots(record, layer, net), layer)
        activations.append(k)
        most = max(most, count)
    readout = net.layers[-1]
    V = _slots(v, readout, net)[:, readout.fire_start - readout.reset]   # v holds V from F - 1 till the next reset
    V, exact = numerics.from_lava_state(V)
    if not exact.all():
        raise LavaRunError(f"Lava: read-out {readout.name!r} holds a v that is not a multiple of "
                           f"{2 ** numerics.LAVA_ACT_SHIFT}")
    return LavaResult(artifact=artifact, activations=activations, potentials=[V], period=net.period,
                       total_steps=total, process_models=models, max_spikes_per_neuron=most)


def _slots(record: np.ndarray, layer, net) -> np.ndarray:
    """A layer's per-step record (steps, n) cut into its slot of every sample, (B, period, n): sample b's
    steps b P + R .. b P + R + P - 1 (samples are pipelined: each layer has its own slots)."""
    return record[layer.reset:layer.reset + net.n_samples * net.period].reshape(net.n_samples, net.period, -1)


def _decode(spikes: np.ndarray, layer) -> ty.Tuple[np.ndarray, int]:
    """Activations k = T_n - m (B, n) from the spikes (B, period, n) in a stock layer's slots (from its
    reset R on), and the most spikes of one neuron in one sample. Every neuron spikes once, at
    fire_start + m, m = 0..T_n (m = T_n: k = 0); LavaRunError names the first neuron that did otherwise."""
    counts = spikes.sum(axis=1)
    m = spikes.argmax(axis=1) - (layer.fire_start - layer.reset)
    for problem, bad in (("did not spike once", counts != 1),
                         ("spiked outside its firing steps", (m < 0) | (m > layer.steps_out))):
        if bad.any():
            b, i = np.argwhere(bad)[0]
            raise LavaRunError(f"Lava: layer {layer.name!r} neuron {i} of sample {b} {problem} "
                               f"({counts[b, i]} spike(s), first at step {m[b, i] + layer.fire_start} of its sample)")
    return numerics.step_of(m, layer.steps_out), int(counts.max(initial=0))
