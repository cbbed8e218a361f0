"""Ctrl-C held back over a block of code that must not see it, then delivered (one definition)."""
import os
import signal
import threading
from contextlib import contextmanager


@contextmanager
def sigint_deferred():
    """Hold SIGINT back for the block, then re-deliver it to the handler in place before.

    Two users: Lava's worker processes forked in the block inherit the holding handler, which drops
    SIGINT outside the calling process (hwtune.backends.lava.run); and brevitas' import, whose bare
    ``except:`` around its torch._dynamo probe would swallow a KeyboardInterrupt raised during that
    (seconds-long) import (hwtune.ttfs.quant). A no-op outside the main thread (the only one that
    sets handlers and gets KeyboardInterrupt).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caller, received = os.getpid(), []

    def hold(signum, frame):
        if os.getpid() == caller:  # in a forked worker: dropped
            received.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
    if received:
        signal.raise_signal(signal.SIGINT)
