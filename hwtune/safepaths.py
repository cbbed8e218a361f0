"""Names that become file names, paths confined to an output directory, files that are safe to read.

- :func:`check_name`: a name from a recipe, sweep, study, target or artifact layer that hwtune may
  put into a file name must match :data:`NAME_PATTERN` (letters, digits, space, ``_ . , + = -``;
  starting with a letter or digit; at most :data:`MAX_NAME` characters): no ``/``, no ``..``, no
  NUL, no hidden file. Checked once, where the name is read.
- :func:`inside`: the path of a file hwtune writes into an output directory, resolved and
  confirmed to lie inside it (the last line of defence behind :func:`check_name`).
- :func:`regular_file`: a file to read must be a regular file (a FIFO or a device would block
  or never end).
- :func:`open_regular` / :func:`read_file`: open a file without blocking (O_NONBLOCK: a FIFO
  swapped in after a check cannot hang the open), refuse it unless it is a regular file of at most
  ``limit`` bytes, and, inside hwtune's own outputs (``follow=False``), refuse a symbolic link
  instead of following it (O_NOFOLLOW).
"""
from __future__ import annotations

import errno
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


def open_regular(path: str | os.PathLike, error: type[Exception], what: str = "file", limit: int | None = None,
                 follow: bool = True, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """A file descriptor of ``path`` opened with ``flags`` without blocking (O_NONBLOCK; no
    symbolic link followed unless ``follow``), checked to be a regular file of at most ``limit``
    bytes; else ``error`` naming the file. FileNotFoundError passes through (callers decide what
    a missing file means)."""
    path = Path(path)
    extra = os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags | extra, mode)
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno == errno.ELOOP and not follow:
            raise error(f"{path}: is a symbolic link; hwtune does not follow links inside its outputs "
                        f"(expected a {what})") from None
        if e.errno == errno.EISDIR:
            raise error(f"{path}: is a directory, expected a {what}") from None
        raise error(f"{path}: {what} unreadable ({e.strerror or e})") from None
    except ValueError as e:     # a NUL byte in the path
        raise error(f"{path}: {what} unreadable ({e})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{path}: is a directory, expected a {what}")
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: is not a regular file (a FIFO, socket or device?); expected a {what}")
        if limit is not None and info.st_size > limit:
            raise error(f"{path}: {what} of {info.st_size:,} bytes, more than hwtune's limit of {limit:,}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_file(path: str | os.PathLike, error: type[Exception], what: str = "file", limit: int | None = None,
              follow: bool = True) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (:func:`open_regular`); a missing
    file, or one that grows past ``limit`` while read, is ``error`` naming it."""
    try:
        fd = open_regular(path, error, what, limit, follow)
    except FileNotFoundError:
        raise error(f"{path}: {what} missing (not found)") from None
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read() if limit is None else f.read(limit + 1)
        except OSError as e:
            raise error(f"{path}: {what} unreadable ({e.strerror or e})") from None
    if limit is not None and len(data) > limit:
        raise error(f"{path}: {what} of more than {limit:,} bytes (hwtune's limit)")
    return data
