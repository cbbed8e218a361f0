"""The errors hwtune expects: bad input (files, settings, data) and refused operations.

Every expected error derives from :class:`HwtuneError`; its message names the file, key, layer or
neuron at fault. The CLI turns these into one line and an exit code; anything else is a bug and
keeps its traceback.
"""
from __future__ import annotations


class HwtuneError(Exception):
    """An expected failure with a message for people (bad input, refused output, hardware limit)."""

    #: CLI exit code (see hwtune.cli: 3 = bad input)
    exit_code = 3


class ConfigError(HwtuneError, ValueError):
    """A setting with a wrong type, a non-finite number or a value out of range."""


class UsageError(HwtuneError):
    """Command-line flags that contradict each other (exit code 2, like argparse's own errors)."""

    exit_code = 2


class OutputError(HwtuneError):
    """An output path that hwtune refuses to write (it would destroy files it did not create)."""


class CheckFailed(HwtuneError):
    """A differential check or a floor failed; the results were written."""

    exit_code = 1


def short(value, limit: int = 80) -> str:
    """repr of ``value`` cut to ``limit`` characters: error messages stay small whatever the input."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
