"""Progress bars and log lines for people: bars only on a terminal, lines through the bar's writer.

Everything goes to stderr (stdout is for results and ``--json``). ``--quiet`` (:func:`set_quiet`)
silences both; errors are not routed through here.
"""
from __future__ import annotations

import sys

_state = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = bool(quiet)


def quiet() -> bool:
    return _state["quiet"]


def bar(iterable=None, total=None, desc: str = "", unit: str = "it"):
    """A tqdm bar on stderr when it is a terminal and not quiet; a silent pass-through otherwise
    (``bar.disable`` says which). A bar of its own stays on the screen when done (what ran, how
    long); one opened inside another (an evaluation inside a pass) is cleared."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=None, file=sys.stderr,
                disable=_state["quiet"] or not sys.stderr.isatty(), dynamic_ncols=True)


def log(message: str) -> None:
    """One line for people on stderr, written through tqdm so that an open bar is not torn."""
    if _state["quiet"]:
        return
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)
