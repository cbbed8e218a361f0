"""Lava's worker processes die with the hwtune process that forked them, and leave no temp dirs.

A parent killed outright (SIGKILL, the OOM killer) runs no clean-up, and lava-nc 0.10.0's workers
would run on for ever (and keep ``hwtune-lava-*`` and ``pymp-*`` temp dirs). Every process forked
inside :func:`workers_die_with_parent` starts a watchdog thread that polls its parent's pid every
:data:`POLL` seconds; once the parent is gone it removes the run's record directory and its own
multiprocessing temp dir and exits at once (exit status 143, no traceback). Linux and macOS.
"""
import os
import shutil
import threading
import time
from contextlib import contextmanager
from multiprocessing import process

#: Seconds between two looks of a worker at its parent's pid.
POLL = 0.5

_cleanup: list = []   # the directories of the run in progress (one at a time: the main thread's)


def _watch(parent: int, directories: tuple) -> None:
    while os.getppid() == parent:
        time.sleep(POLL)
    for d in (*directories, process.current_process()._config.get("tempdir")):
        if d:
            shutil.rmtree(d, ignore_errors=True)
    os._exit(143)


def _in_child() -> None:
    if _cleanup:
        threading.Thread(target=_watch, args=(os.getppid(), tuple(_cleanup)), name="hwtune-parent-watchdog",
                         daemon=True).start()


os.register_at_fork(after_in_child=_in_child)


@contextmanager
def workers_die_with_parent(*directories):
    """Processes forked in the block end when this process ends; ``directories`` (the run's
    temporary files) are removed by them if it is killed before it could remove them itself."""
    _cleanup[:] = [str(d) for d in directories] or [""]   # non-empty: the watchdog runs
    try:
        yield
    finally:
        _cleanup.clear()
