"""Where a sweep's points run: in this process (serial) or as Ray tasks on a cluster.

A point is ``fn(shared, item) -> record``: ``shared`` (the base model, the data, the sweep) is the
same for every point, ``item`` (a grid point, a seed) its own. The serial executor calls it in turn;
the Ray executor (``pip install hwtune[ray]``) puts ``shared`` into Ray's object store once and
runs one task per item, yielding results as they arrive, so that the driver alone appends them to
the sweep directory (resume, ids and reports work unchanged). Every point runs with ``threads``
torch threads and seeds its own generators, so its record does not depend on where or in which
order it ran. A point that raises a HwtuneError is reported with its item, and the sweep stops
(:class:`PointError`, pending Ray tasks cancelled) or goes on (``on_error``); any other exception
is a bug and stops the sweep with its traceback, on either executor.

Everything a point does runs where the point runs, Lava's spike-for-spike check
(``backend_samples``) included: under Ray it runs inside the worker, where Lava forks its process
models from the worker process like it does from the driver (tests/test_executors.py checks the
CI sweep's Lava results under Ray against the serial run). Lava's processes are not counted in a
task's ``threads`` CPUs. Every node needs hwtune installed (workers import the point function).

A cluster address is checked before any work (:func:`check_reachable`): it must accept a TCP
connection and answer an HTTP/2 handshake (Ray's GCS and client servers speak gRPC) within
:data:`CONNECT_TIMEOUT` seconds each, so a port held by something else is refused at once instead
of after Ray's minutes of retries. While Ray starts, stop signals are held back and ``ray.init``
may not install its own SIGTERM handler (a SystemExit): a SIGTERM stops the sweep like Ctrl-C,
exit 130. Before it starts a local instance, the driver starts hwtune.watchdog, which stops every
process the driver started when the driver ends, even by SIGKILL.
"""
from __future__ import annotations

import os
import socket
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from hwtune.configs import parse_address
from hwtune.errors import HwtuneError
from hwtune.interrupts import sigint_deferred

EXECUTORS = ("serial", "ray")


@dataclass
class PointFailed:
    """What a point raised: its item and the error text (with ``on_error: continue``)."""

    item: object
    error: str


class PointError(HwtuneError):
    """A point failed with ``on_error: stop``: the message names the item, the exit code is the error's."""

    def __init__(self, item, error: HwtuneError):
        super().__init__(f"point {item}: {error}")
        self.exit_code = error.exit_code


@contextmanager
def torch_threads(threads: int):
    """Run the block with ``threads`` torch threads (float results depend on the thread count)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _call(fn: Callable, shared: dict, item, threads: int):
    with torch_threads(threads):
        return fn(shared, item)


def serial(fn: Callable, shared: dict, items: list, threads: int, on_error: str) -> Iterator:
    """(item, record or PointFailed) for each item, in order, in this process."""
    for item in items:
        try:
            yield item, _call(fn, shared, item, threads)
        except HwtuneError as e:
            if on_error == "stop":
                raise PointError(item, e) from None
            yield item, PointFailed(item, str(e))


#: Seconds a Ray cluster's head gets to accept a TCP connection, then to answer the HTTP/2 handshake
#: (Ray itself retries for minutes).
CONNECT_TIMEOUT = 5.0
#: The HTTP/2 client connection preface and an empty SETTINGS frame (RFC 9113, 3.4 and 6.5).
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_SETTINGS = 4


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse (HwtuneError) a ``host:port`` or ``ray://host:port`` address (hwtune.configs.parse_address)
    whose port accepts no TCP connection within ``timeout`` seconds, or does not answer an HTTP/2
    client preface with a SETTINGS frame within ``timeout`` seconds more (not a gRPC server: not
    Ray; skipped where ``RAY_USE_TLS`` is on: the handshake is then TLS's). 'auto' is left to Ray."""
    parsed = parse_address(address)
    if parsed is None:
        return
    host, port = parsed
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise HwtuneError(f"cannot connect to the Ray cluster at {address}: {e.strerror or e} "
                          f"(nothing accepts connections there within {timeout:g} s)") from None
    with conn:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return
        try:
            conn.settimeout(timeout)
            conn.sendall(_PREFACE)
            header = b""
            while len(header) < 9:
                chunk = conn.recv(9 - len(header))
                if not chunk:
                    break
                header += chunk
        except OSError as e:
            header = b""
            reason = e.strerror or str(e) or "no answer"
        else:
            reason = "it closed the connection" if len(header) < 9 else "it answered, but not in HTTP/2"
    if len(header) < 9 or header[3] != _SETTINGS:
        raise HwtuneError(f"cannot connect to the Ray cluster at {address}: something accepts connections there but "
                          f"does not speak Ray's protocol (gRPC over HTTP/2: {reason} within {timeout:g} s)")


def ray(fn: Callable, shared: dict, items: list, threads: int, on_error: str, address: str | None = None,
        num_cpus: int | None = None) -> Iterator:
    """(item, record or PointFailed) as Ray tasks finish; ``address``: a running cluster (else a new
    local one with ``num_cpus``, even where ``ray start`` runs one). Each task asks for ``threads`` CPUs."""
    try:
        import ray as ray_module
    except ImportError:
        raise HwtuneError("the ray executor needs Ray: pip install 'hwtune[ray]'") from None
    started = not ray_module.is_initialized()
    watchdog, pending = None, {}
    try:
        if started:
            # a stop signal while Ray starts is held back till it has started (then it stops the sweep,
            # exit 130, Ray shut down); Ray's own SIGTERM handler (a SystemExit) is kept out
            with sigint_deferred(), _ray_leaves_sigterm_alone(ray_module):
                watchdog = None if address else watchdog_of_this_process()
                try:
                    ray_module.init(address=address or "local", num_cpus=None if address else num_cpus,
                                    include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
                except ConnectionError as e:   # unreachable, or refused (its auth token: README "Scaling out")
                    reason = str(e.__cause__ or e).strip().splitlines()[-1]
                    raise HwtuneError(f"cannot connect to the Ray cluster at {address or 'a new local instance'}: "
                                      f"{reason}") from None
        shared_ref = ray_module.put(shared)
        task = ray_module.remote(num_cpus=threads)(_call)
        pending = {task.remote(fn, shared_ref, item, threads): item for item in items}
        while pending:
            done, _ = ray_module.wait(list(pending), num_returns=1)
            item = pending.pop(done[0])
            try:
                result = ray_module.get(done[0])
            except ray_module.exceptions.RayTaskError as e:
                if not isinstance(e.cause, HwtuneError):
                    raise
                if on_error == "stop":
                    raise PointError(item, e.cause) from None
                result = PointFailed(item, str(e.cause))
            yield item, result
    finally:   # stopped, failed or abandoned by the caller: no task of this sweep keeps running
        for ref in pending:
            ray_module.cancel(ref, force=True)
        if started:
            ray_module.shutdown()
        if watchdog is not None:     # what ray.shutdown left (its agents) goes too
            try:
                watchdog.communicate(b"stop", timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                watchdog.kill()


def watchdog_of_this_process():
    """hwtune.watchdog on this process: what it starts from now on (a local Ray instance) is stopped
    when it ends, even by SIGKILL; None where /proc is missing (not Linux)."""
    from hwtune import watchdog

    return watchdog.start() if watchdog.stat(os.getpid()) is not None else None


@contextmanager
def _ray_leaves_sigterm_alone(ray_module):
    """``ray.init`` installs a SIGTERM handler that raises SystemExit: keep hwtune's (hwtune.interrupts)."""
    utils = getattr(getattr(ray_module, "_private", None), "utils", None)
    if utils is None or not hasattr(utils, "set_sigterm_handler"):
        yield
        return
    original = utils.set_sigterm_handler
    utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        utils.set_sigterm_handler = original


def run(executor: str, fn: Callable, shared: dict, items: list, threads: int = 1, on_error: str = "stop",
        address: str | None = None, num_cpus: int | None = None) -> Iterator:
    """(item, record or PointFailed) for every item, through ``executor`` (:func:`serial`, :func:`ray`)."""
    if executor == "serial":
        return serial(fn, shared, items, threads, on_error)
    if executor == "ray":
        return ray(fn, shared, items, threads, on_error, address, num_cpus)
    raise HwtuneError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
