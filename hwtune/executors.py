"""Where a sweep's points run: in this process (serial) or as Ray tasks on a cluster.

A point is ``fn(shared, item) -> record``: ``shared`` (the base model, the data, the sweep) is the
same for every point, ``item`` (a grid point, a seed) its own. The serial executor calls it in turn;
the Ray executor (``pip install hwtune[ray]``) puts ``shared`` into Ray's object store once and
runs one task per item, yielding results as they arrive, so that the driver alone appends them to
the sweep directory (resume, ids and reports work unchanged). Every point runs with ``threads``
torch threads and seeds its own generators, so its record does not depend on where or in which
order it ran. A failing point is reported with its item, and the sweep stops or goes on
(``on_error``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from hwtune.errors import HwtuneError

EXECUTORS = ("serial", "ray")


@dataclass
class PointFailed:
    """What a point raised: its item and the error text (with ``on_error: continue``)."""

    item: object
    error: str


def _call(fn: Callable, shared: dict, item, threads: int):
    import torch

    torch.set_num_threads(threads)
    return fn(shared, item)


def serial(fn: Callable, shared: dict, items: list, threads: int, on_error: str) -> Iterator:
    """(item, record or PointFailed) for each item, in order, in this process."""
    for item in items:
        try:
            yield item, _call(fn, shared, item, threads)
        except HwtuneError as e:
            if on_error == "stop":
                raise
            yield item, PointFailed(item, str(e))


def ray(fn: Callable, shared: dict, items: list, threads: int, on_error: str, address: str | None = None,
        num_cpus: int | None = None) -> Iterator:
    """(item, record or PointFailed) as Ray tasks finish; ``address``: a running cluster (else a
    local one with ``num_cpus``). Each task asks for ``threads`` CPUs."""
    try:
        import ray as ray_module
    except ImportError:
        raise HwtuneError("the ray executor needs Ray: pip install 'hwtune[ray]'") from None
    started = not ray_module.is_initialized()
    if started:
        ray_module.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                        log_to_driver=False, ignore_reinit_error=True)
    try:
        shared_ref = ray_module.put(shared)
        task = ray_module.remote(num_cpus=threads)(_call)
        pending = {task.remote(fn, shared_ref, item, threads): item for item in items}
        while pending:
            done, _ = ray_module.wait(list(pending), num_returns=1)
            item = pending.pop(done[0])
            try:
                yield item, ray_module.get(done[0])
            except ray_module.exceptions.RayTaskError as e:
                cause = e.cause if isinstance(getattr(e, "cause", None), Exception) else e
                if on_error == "stop":
                    for ref in pending:
                        ray_module.cancel(ref, force=True)
                    raise HwtuneError(f"point {item}: {cause}") from None
                yield item, PointFailed(item, str(cause))
    finally:
        if started:
            ray_module.shutdown()


def run(executor: str, fn: Callable, shared: dict, items: list, threads: int = 1, on_error: str = "stop",
        address: str | None = None, num_cpus: int | None = None) -> Iterator:
    if executor == "serial":
        return serial(fn, shared, items, threads, on_error)
    if executor == "ray":
        return ray(fn, shared, items, threads, on_error, address, num_cpus)
    raise HwtuneError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
