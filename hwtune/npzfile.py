""".npz archives from files hwtune did not write (a user's dataset, an artifact's ``arrays.npz``),
read with every size bounded before anything is allocated.

An archive is refused (the caller's error class, naming the file and the member) unless it is a
regular file holding a zip whose every member is a ``NAME.npy`` array, stored or deflated (no other
compression method, no encryption), declaring at most ``max_bytes`` of data all members together;
an array's ``.npy`` header must give a plain numeric dtype (no Python objects) and a shape of at
most ``max_entries`` values (``max_total`` all arrays read together) whose size is exactly the
bytes the member holds. Decompression stops
at the size a member declares (a member inflating beyond it fails its CRC: a zip bomb cannot lie
its way past the caps) and every read checks the CRC.
"""
from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from hwtune.safepaths import open_regular

#: What zipfile, zlib and numpy raise on a damaged archive.
_DAMAGE = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class Archive:
    """An open, checked .npz archive (:func:`open_npz`); :meth:`read` returns one array."""

    def __init__(self, path: Path, error: type[Exception], max_bytes: int, max_entries: int, max_total: int):
        self.path, self.error, self.max_entries, self.max_total, self.total = path, error, max_entries, max_total, 0
        try:
            fd = open_regular(path, error, ".npz file")
        except FileNotFoundError:
            raise error(f"{path}: file not found") from None
        self._file = os.fdopen(fd, "rb")
        try:
            self._zip = zipfile.ZipFile(self._file)
            self._members = self._check_members(max_bytes)
        except BaseException as e:
            self._file.close()
            if isinstance(e, _DAMAGE) and not isinstance(e, error):     # a refusal keeps its own message
                raise error(f"{path}: not a readable .npz file (unreadable: {str(e)[:200]})") from None
            raise

    def _check_members(self, max_bytes: int) -> dict[str, zipfile.ZipInfo]:
        members, total = {}, 0
        for info in self._zip.infolist():
            where = f"{self.path}: member {info.filename!r}"
            if not info.filename.endswith(".npy") or "/" in info.filename:
                raise self.error(f"{where} is not an .npy array (an .npz holds NAME.npy members only)")
            if info.compress_type not in _METHODS:
                raise self.error(f"{where} uses compression method {info.compress_type}; hwtune reads stored or "
                                 "deflated members only")
            if info.flag_bits & 0x1:
                raise self.error(f"{where} is encrypted")
            name = info.filename[:-4]
            if name in members:
                raise self.error(f"{where} appears twice")
            total += info.file_size
            if total > max_bytes:
                raise self.error(f"{self.path}: its arrays declare more than {max_bytes:,} bytes together "
                                 "(hwtune's limit); refusing to inflate it")
            members[name] = info
        return members

    @property
    def files(self) -> list[str]:
        """The arrays' names (members without ``.npy``)."""
        return list(self._members)

    def read(self, name: str) -> np.ndarray:
        """The array ``name``, its header checked before its data is read."""
        info = self._members.get(name)
        if info is None:
            raise self.error(f"{self.path}: array {name!r} missing (found: {', '.join(self._members) or 'none'})")
        where = f"{self.path}: array {name!r}"
        try:
            with self._zip.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version not in _HEADER_READERS:
                    raise self.error(f"{where}: .npy format version {version} is not one hwtune reads (1.0, 2.0)")
                shape, fortran, dtype = _HEADER_READERS[version](f)
                self._check_header(where, shape, dtype, info.file_size - f.tell())
                data = f.read(math.prod(shape) * dtype.itemsize)
                if f.read(1):
                    raise self.error(f"{where}: holds more data than its header claims")
        except self.error:           # a refusal above (often a ValueError too): its message as it is
            raise
        except _DAMAGE as e:
            raise self.error(f"{where}: unreadable ({str(e)[:200]})") from None
        array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
        return array.copy()

    def _check_header(self, where: str, shape: tuple, dtype: np.dtype, stored: int) -> None:
        if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
            raise self.error(f"{where}: dtype {dtype} is not a plain number type (bool, integer or float)")
        entries = math.prod(shape)
        if entries > self.max_entries:
            raise self.error(f"{where}: claims shape {shape} ({entries:,} values), more than hwtune's limit of "
                             f"{self.max_entries:,}")
        self.total += entries
        if self.total > self.max_total:
            raise self.error(f"{where}: the arrays read so far hold {self.total:,} values together, more than "
                             f"hwtune's limit of {self.max_total:,}")
        if entries * dtype.itemsize != stored:
            raise self.error(f"{where}: claims shape {shape} of {dtype} ({entries * dtype.itemsize:,} bytes) but "
                             f"holds {stored:,} bytes")

    def close(self) -> None:
        self._zip.close()
        self._file.close()

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_npz(path: str | os.PathLike, error: type[Exception], max_bytes: int, max_entries: int,
             max_total: int | None = None) -> Archive:
    """Open the .npz file ``path`` and check its members (module docstring); ``error`` names the file."""
    return Archive(Path(path), error, max_bytes, max_entries, max_entries if max_total is None else max_total)
