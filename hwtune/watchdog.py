"""Stop the local Ray instance a driver started when the driver ends, even killed by SIGKILL.

hwtune.executors starts it as ``python -m hwtune.watchdog PID:START ...`` (the instance's processes,
each with its start time, so that a reused process id is never taken for one of them), in a
session of its own (a Ctrl-C or a SIGKILL of the driver's process group does not reach it), its
stdin a pipe from the driver. Every :data:`POLL_S` seconds it records the processes below those it
knows (Ray's agents and workers, started by the raylet); when the pipe ends (the driver exited or
was killed) or says ``stop`` (after ``ray.shutdown()``), it kills every recorded process still
alive. Ray's own agents otherwise outlive a killed driver by a minute or two. Linux (/proc) only.
"""
from __future__ import annotations

import os
import select
import signal
import sys
from pathlib import Path

POLL_S = 0.5


def stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process; None when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[19])


def _below(known: dict[int, int]) -> dict[int, int]:
    """Every live process whose parent is one of ``known`` (still the same process), recursively."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = stat(int(entry.name))
            if info is not None:
                children.setdefault(info[0], []).append((int(entry.name), info[1]))
    found, todo = {}, [pid for pid, start in known.items() if (stat(pid) or (0, None))[1] == start]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            if pid not in found:
                found[pid] = start
                todo.append(pid)
    return found


def watch(roots: dict[int, int], stream=sys.stdin) -> None:
    """Record the descendants of ``roots`` until ``stream`` ends or says stop, then kill them all."""
    known = dict(roots)
    fd = stream.fileno()
    while True:
        ready, _, _ = select.select([fd], [], [], POLL_S)
        known.update(_below(known))
        if ready:
            data = os.read(fd, 64)
            if not data or b"stop" in data:
                break
    for pid, start in known.items():
        info = stat(pid)
        if info is not None and info[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def main(argv: list[str]) -> None:
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    watch({int(pid): int(start) for pid, start in (arg.split(":") for arg in argv)})


if __name__ == "__main__":
    main(sys.argv[1:])
