"""Run an artifact on Lava's fixed_pt simulator, all samples in one long run; Ctrl-C stops it cleanly.

Why Ctrl-C needs care (lava-nc 0.10.0): Lava forks its process models and runtime service into
the terminal's process group, so a Ctrl-C reaches them too; they die on KeyboardInterrupt without
answering the runtime, whose ``stop()`` then waits for ever (no timeout) and leaves zombies. Here
the workers are forked with SIGINT held back (:func:`sigint_deferred`), so only this process gets
the KeyboardInterrupt; it then stops Lava (:func:`_abort`: Lava's own stop, bounded, else the
workers are terminated and joined) and re-raises.
"""
# No "from __future__ import annotations": when compiling, Lava executes every module of this
# directory outside its package, where dataclasses cannot resolve string annotations.

import multiprocessing
import tempfile
import threading
import warnings
from contextlib import suppress
from dataclasses import dataclass

import numpy as np
import scipy.sparse
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.magma.runtime.message_infrastructure.multiprocessing import SystemProcess

from hwtune.artifact import Artifact
from hwtune.backends import RunResult
from hwtune.backends.lava.build import build_network
from hwtune.backends.lava.lifecycle import workers_die_with_parent
from hwtune.errors import HwtuneError
from hwtune.interrupts import sigint_deferred

#: Seconds Lava's own stop() gets after an error or a Ctrl-C before the workers are killed.
STOP_TIMEOUT = 5.0


class LavaRunError(HwtuneError, RuntimeError):
    """Lava produced spikes that the TTFS schedule does not allow, or no record (a backend bug)."""


@dataclass
class LavaResult(RunResult):
    """A :class:`RunResult` observed on Lava: hidden activations (hence spike steps) from the spike
    steps each neuron process observed, potentials and logits from the neurons' latched V.

    period: steps per sample slot; total_steps: steps run (period * B).
    """

    period: int = 0
    total_steps: int = 0


def run_lava(artifact: Artifact, k0, gap: int = 2) -> LavaResult:
    """Run all samples of ``k0`` (B, n_in) back to back in one Lava run (Loihi2SimCfg, fixed_pt).

    Sample b occupies steps [b P, (b + 1) P), P = latency + ``gap``; the processes are always
    stopped, also on error or Ctrl-C (KeyboardInterrupt is re-raised after the clean-up).
    """
    # DelaySparse (d > 1) edits its CSR in place every step; scipy warns about it in every worker
    warnings.filterwarnings("ignore", category=scipy.sparse.SparseEfficiencyWarning)
    with tempfile.TemporaryDirectory(prefix="hwtune-lava-") as record_dir:
        net = build_network(artifact, k0, record_dir, gap)
        process = net.source
        executable = process.compile(Loihi2SimCfg(select_tag="fixed_pt"))  # starts no process
        before, workers = set(multiprocessing.active_children()), []
        try:
            # Lava forks its workers here: they inherit a handler that drops SIGINT (SIGTERM: a quiet
            # exit), and die with this process (lifecycle)
            with sigint_deferred(), workers_die_with_parent(record_dir):
                process.create_runtime(executable=executable)
                workers = _new_workers(before)
            process.run(condition=RunSteps(num_steps=net.total_steps))
            process.stop()
        except BaseException:  # KeyboardInterrupt (Ctrl-C) included
            _abort(process, workers or _new_workers(before))
            raise
        records = [_read_record(path, neuron.name) for path, neuron in zip(net.records, net.neurons)]
    potentials = [V for V, _ in records]
    activations = [net.inputs]
    for n, (layer, (_, tau)) in enumerate(zip(artifact.hidden, records[:-1]), start=1):
        activations.append(_decode(tau, layer.name, artifact.schedule[n], layer.window_steps))
    return LavaResult(artifact=artifact, activations=activations, potentials=potentials, period=net.period,
                      total_steps=net.total_steps)


def _read_record(path, name: str) -> tuple:
    try:
        with np.load(path) as record:
            return record["V"].astype(np.int64), record["spike_tau"].astype(np.int64)
    except (OSError, KeyError, ValueError) as e:
        raise LavaRunError(f"Lava: layer {name!r} wrote no usable record ({e})") from None


def _decode(tau: np.ndarray, name: str, start: int, steps: int) -> np.ndarray:
    """Activations k = T - m (B, n) from the observed spike steps tau, with m = tau - start the step
    in the layer's window [start, start + T); 0 when silent. Raises LavaRunError for a second spike
    or one outside the window."""
    m = tau - start
    for problem, bad in (("spiked more than once", tau == -2),
                         ("spiked outside its window", (tau >= 0) & ((m < 0) | (m >= steps)))):
        if bad.any():
            b, i = np.argwhere(bad)[0]
            raise LavaRunError(f"Lava: layer {name!r} neuron {i} of sample {b} {problem}")
    return np.where(tau >= 0, steps - m, 0)


def _new_workers(before: set) -> list:
    """Lava's worker processes (process models, runtime services) among the children started since."""
    return [p for p in multiprocessing.active_children() if p not in before and isinstance(p, SystemProcess)]


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
