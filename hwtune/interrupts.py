"""Stop signals (Ctrl-C's SIGINT and SIGTERM): one way to stop, held back where it must not land.

- :func:`install_stop_handlers` (the CLI): the first SIGINT or SIGTERM raises KeyboardInterrupt, so
  the clean-up runs and nothing half-written is left; later ones are ignored while it runs (a second
  Ctrl-C must not kill the clean-up halfway). :func:`ignore_stop_signals` once the result stands.
- :func:`sigint_deferred`: holds both signals back over a block, then re-delivers the first.
- :func:`set_final_output` / :func:`committing`: the output whose commit ends a command; from the
  moment its rename begins, a stop signal no longer interrupts (the result stands: exit 0 with the
  complete output), and before it one still leaves nothing (exit 130).
- :func:`raise_if_stopped`: a stop whose KeyboardInterrupt third-party code swallowed (torch's C++
  start-up, a bare ``except:``; measured: 5 of 200 signals into ``import torch`` lost) is raised
  again at the next safe point: each training step, and before any output is published.
"""
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

#: The signals that stop hwtune like Ctrl-C.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: Whether the handlers of :func:`install_stop_handlers` received a stop signal.
_stopped = threading.Event()


def _stop(signum, frame):
    _stopped.set()
    ignore_stop_signals()       # the clean-up the KeyboardInterrupt starts runs to its end
    raise KeyboardInterrupt


def install_stop_handlers() -> dict:
    """First SIGINT/SIGTERM -> KeyboardInterrupt, the ones after it ignored (main thread only);
    returns the handlers replaced (for :func:`restore_handlers`)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    _stopped.clear()
    return {sig: signal.signal(sig, _stop) for sig in STOP_SIGNALS}


def raise_if_stopped() -> None:
    """KeyboardInterrupt if a stop signal arrived since :func:`install_stop_handlers` (its first
    KeyboardInterrupt may have been swallowed by code that catches everything)."""
    if _stopped.is_set():
        raise KeyboardInterrupt


def restore_handlers(previous: dict) -> None:
    """Put back the handlers :func:`install_stop_handlers` replaced (and forget a stop it received)."""
    _stopped.clear()
    for sig, handler in previous.items():
        signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def ignore_stop_signals() -> None:
    """Ignore SIGINT/SIGTERM from now on (the command's outcome is decided; main thread only)."""
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


@contextmanager
def sigint_deferred(caller_holds: bool = True):
    """Hold SIGINT and SIGTERM back for the block, then re-deliver the first to the handler in place before,
    also when the block raised (the stop, not the error it caused, is what the command reports).
    ``caller_holds=False``: only the processes forked in the block hold them (below); this process
    gets them at once, as before the block (Lava's start: a group SIGTERM ends the workers it waits
    for, and a start held back could wait for them for ever).

    Two users: Lava's worker processes forked in the block inherit the holding handler, which, in a
    forked worker, drops SIGINT and ends the worker quietly on SIGTERM (exit 143, no traceback: a
    SIGTERM to the process group, or the parent's clean-up) (hwtune.backends.lava.run); and
    brevitas' import, whose bare ``except:`` around its torch._dynamo probe would swallow a
    KeyboardInterrupt raised during that (seconds-long) import (hwtune.ttfs.quant). A no-op outside
    the main thread (the only one that sets handlers and gets KeyboardInterrupt).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caller, received = os.getpid(), []

    def hold(signum, frame):
        if os.getpid() != caller:
            if signum == signal.SIGTERM:  # a forked worker: quiet end
                os._exit(128 + signal.SIGTERM)
        elif caller_holds:
            received.append(signum)
        else:
            _deliver(previous[signum], signum, frame)

    previous = {sig: signal.signal(sig, hold) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is hold:      # not what a handler run in the block set (ignore_stop_signals)
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if received:      # also when the block failed: a SIGTERM to the group ends the workers it forked
            signal.raise_signal(received[0])     # (Lava's shared-memory server), and the block then fails


def _deliver(handler, signum, frame) -> None:
    """What ``handler`` (a handler signal.signal returned) does with ``signum`` now."""
    if callable(handler):
        handler(signum, frame)
    elif handler != signal.SIG_IGN:         # the default action (SIGTERM: the process ends)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


#: The output whose commit ends the running command (None: no such output).
_final_output = None


def set_final_output(path) -> None:
    """Mark ``path`` (resolved) as the output whose commit ends the command (hwtune.cli's verbs that
    write one output; cli.main clears it when the command returns); None clears it."""
    global _final_output
    _final_output = None if path is None else Path(path).resolve()


@contextmanager
def committing(path):
    """Around the rename that publishes ``path`` (hwtune.atomic.atomic_directory): when ``path`` is
    the final output, stop signals are ignored from the start of the rename on and stay ignored if
    it succeeds (the command is done: a late signal must neither kill it nor leave it half
    reported); if the rename fails, the handlers before it are put back. Elsewhere only the check
    that no stop signal came before (:func:`raise_if_stopped`)."""
    raise_if_stopped()
    if _final_output is None or Path(path).resolve() != _final_output or \
            threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    except BaseException:
        restore_handlers(previous)
        raise
