"""Stop the processes a driver started (its local Ray instance) when the driver ends, even by SIGKILL.

hwtune.executors starts it as ``python -m hwtune.watchdog PID:START`` (the driver, with its start
time, so that a reused process id is never taken for it) before it starts Ray, in a session of its
own (a Ctrl-C or a SIGKILL of the driver's process group does not reach it), its stdin a pipe from
the driver. Every :data:`POLL_S` seconds it records the Ray processes below the driver (children
of the driver started after the watchdog whose command line names Ray: the GCS, the raylet, Ray's
monitors; and everything below them: the agents and workers the raylet starts; a process orphaned
later stays recorded; nothing else the driver runs); when
the pipe ends (the driver exited or was killed) or says ``stop`` (after ``ray.shutdown()``), it
kills every recorded process that is still the same process. Ray's own agents otherwise outlive a
killed driver by a minute or two. The driver itself is never killed. Linux (/proc) only.
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


def below(known: dict[int, int]) -> dict[int, int]:
    """Every live process whose parent is one of ``known`` (each still the same process), recursively."""
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


def _rays(children: dict[int, int], since: int) -> dict[int, int]:
    """Those of ``children`` started at ``since`` or later whose command line names Ray."""
    def names_ray(pid: int) -> bool:
        try:
            return b"ray" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
    return {pid: start for pid, start in children.items() if start >= since and names_ray(pid)}


def watch(driver: tuple[int, int], stream=sys.stdin) -> None:
    """Record the Ray processes below ``driver`` (pid, start) until ``stream`` ends or says stop, then
    kill them."""
    recorded: dict[int, int] = {}
    since = stat(os.getpid())[1]
    fd = stream.fileno()
    while True:
        ready, _, _ = select.select([fd], [], [], POLL_S)
        children = {pid: start for pid, start in below({driver[0]: driver[1]}).items()
                    if (stat(pid) or (None,))[0] == driver[0]}
        recorded.update(_rays(children, since))
        recorded.update(below(recorded))
        if ready:
            data = os.read(fd, 64)
            if not data or b"stop" in data:
                break
    for pid, start in recorded.items():
        info = stat(pid)
        if info is not None and info[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start(pid: int | None = None):
    """Start a watchdog of ``pid`` (default: this process): a subprocess.Popen whose stdin the
    caller holds; ``communicate(b"stop")`` ends it (killing what is left), the caller's death too."""
    import subprocess

    pid = os.getpid() if pid is None else pid
    return subprocess.Popen([sys.executable, "-m", "hwtune.watchdog", f"{pid}:{stat(pid)[1]}"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def main(argv: list[str]) -> None:
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    pid, started = argv[0].split(":")
    watch((int(pid), int(started)))


if __name__ == "__main__":
    main(sys.argv[1:])
