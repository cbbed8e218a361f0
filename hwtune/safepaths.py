"""Names that become file names, paths confined to an output directory, files that are safe to read.

- :func:`check_name`: a name from a recipe, sweep, study, target or artifact layer that hwtune may
  put into a file name must match :data:`NAME_PATTERN` (letters, digits, space, ``_ . , + = -``;
  starting with a letter or digit; at most :data:`MAX_NAME` characters): no ``/``, no ``..``, no
  NUL, no hidden file. Checked once, where the name is read.
- :func:`inside`: the path of a file hwtune writes into an output directory, resolved and
  confirmed to lie inside it (the last line of defence behind :func:`check_name`).
- :func:`regular_file`: a file to read must be a regular file (a FIFO or a device would block
  or never end).
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from hwtune.errors import ConfigError, short

MAX_NAME = 100
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.,+=-]*")
NAME_RULE = ("a name of letters, digits, spaces and _ . , + = - that starts with a letter or digit "
             f"(at most {MAX_NAME} characters)")


class UnsafeNameError(ConfigError):
    """A name that would put a file outside its directory (or make an odd file name)."""


def check_name(value, field: str) -> str:
    """``value`` if it is a safe file-name component (:data:`NAME_PATTERN`), else UnsafeNameError
    naming ``field`` and the value."""
    if not isinstance(value, str) or len(value) > MAX_NAME or not NAME_PATTERN.fullmatch(value):
        raise UnsafeNameError(f"{field} = {short(value)} must be {NAME_RULE}: it becomes part of a file name")
    return value


def inside(directory: str | os.PathLike, name: str, field: str = "name") -> Path:
    """``directory / name``, refused (UnsafeNameError) unless it resolves to a path inside ``directory``."""
    base = Path(directory).resolve()
    path = (base / name).resolve()
    if base not in path.parents:
        raise UnsafeNameError(f"{field} = {short(name)} would write {path}, outside {base}; refusing")
    return Path(directory) / name


def regular_file(path: str | os.PathLike, error: type[Exception], what: str = "file") -> Path:
    """``path`` if it is a regular file (following symbolic links); else ``error`` naming it: a FIFO,
    socket or device is refused before it is opened (reading one blocks or never ends)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise error(f"{path}: {what} missing (not found)") from None
    except (OSError, ValueError) as e:     # ValueError: a NUL byte in the path
        raise error(f"{path}: {what} unreadable ({e})") from None
    if stat.S_ISDIR(mode):
        raise error(f"{path}: is a directory, expected a {what}")
    if not stat.S_ISREG(mode):
        raise error(f"{path}: is not a regular file (a FIFO, socket or device?); expected a {what}")
    return path
