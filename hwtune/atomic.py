"""Safe outputs: refuse to destroy what hwtune did not write, write privately, commit with a last check.

- :func:`check_output`: the rules every output path follows before any work starts (a new path;
  or, with ``force``, an earlier hwtune output of the same kind holding only the files its
  manifest lists; never a path that is or holds an input, a file, a symbolic link, the working
  directory, or a directory of someone's files). It returns a :class:`Destination`: the path and
  what was found there.
- :func:`atomic_directory`: the output is written into a private temporary sibling and committed
  at the end by a rename that never replaces what appeared meanwhile (``renameat2(RENAME_NOREPLACE)``,
  :func:`rename_noreplace`), after checking the destination again against what
  :func:`check_output` found: a path that appeared, a directory that changed or was filled, an
  earlier output someone put files into, is refused (OutputError) and the finished result is
  kept beside it, named in the error. Of two writers of one output exactly one wins. An earlier
  output replaced with ``force`` is moved aside first and only the files its manifest lists are
  deleted (:func:`remove_own`): never a ``rmtree`` of a directory someone else may own.
- :func:`shared_directory`: a directory hwtune fills piece by piece (a sweep), marked by its
  manifest's ``format``, created by the same private-sibling rename and held by a lock
  (:func:`exclusive_lock`); :func:`claim`: the files hwtune rewrites there must be regular files
  its manifest lists (or new), never links; :func:`atomic_write_text` / :func:`atomic_write_bytes`
  replace a file by rename (never following a link at the destination, never leaving half a file).
- Outputs are readable by others (0644 files, 0755 dirs, less what the umask removes).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hwtune.errors import OutputError
from hwtune.interrupts import committing
from hwtune.safepaths import open_regular, read_file


#: The list of files hwtune wrote into an output directory (JSON {"files": [relative paths]}, and for
#: a directory filled piece by piece its "format"): ``--force`` replaces a directory only when it
#: holds nothing else.
MANIFEST = ".hwtune-files.json"
#: The lock file of a directory filled piece by piece (:func:`shared_directory`).
LOCK = ".lock"
#: Largest manifest hwtune reads (a manifest is a list of file names).
MAX_MANIFEST_BYTES = 2 ** 24


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(path: Path) -> None:
    """Give a finished output the usual permissions: directories 0755, files 0644, less the umask."""
    mask = _umask()
    os.chmod(path, 0o755 & ~mask)
    for root, dirs, files in os.walk(path):
        for d in dirs:
            os.chmod(Path(root) / d, 0o755 & ~mask)
        for f in files:
            os.chmod(Path(root) / f, 0o644 & ~mask)


def _is_within(a: Path, b: Path) -> bool:
    """a == b or a lies inside b (resolved paths)."""
    return a == b or b in a.parents


def _where(flag: str, path: Path) -> str:
    return f"{flag} {path}" if flag else str(path)


def _identity(path: Path) -> tuple | None:
    """(device, inode, file type) of what is at ``path`` (not following a link); None: nothing."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino, stat.S_IFMT(info.st_mode)


@dataclass(frozen=True)
class Destination:
    """An output path as :func:`check_output` found it: ``found`` is the identity of the directory
    there (None: nothing was there), ``empty`` whether it was empty. :func:`atomic_directory`
    commits only onto the same state."""

    path: Path
    marker: str
    force: bool = False
    what: str = "output"
    flag: str = "--out"
    found: tuple | None = None
    empty: bool = False


def read_manifest(directory: str | os.PathLike) -> dict | None:
    """The manifest of an output directory ({"files": [...], maybe "format"}); None when there is
    none. A manifest that is a link, not a regular file, too large or not a manifest is OutputError."""
    file = Path(directory) / MANIFEST
    try:
        text = read_file(file, OutputError, "manifest", MAX_MANIFEST_BYTES, follow=False)
    except OutputError:
        if _identity(file) is None:
            return None
        raise
    try:
        manifest = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise OutputError(f"{file}: unreadable manifest ({str(e)[:100]})") from None
    if not (isinstance(manifest, dict) and isinstance(manifest.get("files"), list)
            and all(isinstance(f, str) for f in manifest["files"])):
        raise OutputError(f"{file}: not an hwtune manifest (a JSON object listing its 'files')")
    return manifest


def check_output(path: str | os.PathLike, marker: str, force: bool = False, inputs=(), what: str = "output",
                 flag: str = "--out") -> Destination:
    """Refuse (OutputError) an output path hwtune must not write, before any work is done; return
    what was found there (for :func:`atomic_directory`'s last check).

    Allowed: a path that does not exist (parents are created), an empty directory, or, with
    ``force``, a directory holding ``marker`` (an earlier hwtune output of this kind) and no file
    its :data:`MANIFEST` does not list, which is then replaced. Refused always: a path equal to,
    inside or holding one of ``inputs``; a file; a symbolic link; the working directory or one of
    its parents; a path under a file; a non-empty directory without ``marker`` (someone's files:
    never deleted, even with ``force``).
    """
    path = Path(path)
    where = _where(flag, path)
    if path.is_symlink():
        raise OutputError(f"{where}: is a symbolic link; give the directory it points to instead")
    resolved = path.resolve()
    for inp in inputs:
        inp = Path(inp).resolve()
        if _is_within(resolved, inp) or _is_within(inp, resolved):
            relation = "is" if resolved == inp else ("lies inside" if _is_within(resolved, inp) else "holds")
            raise OutputError(f"{where}: {relation} the input {inp}; choose another output")
    if _is_within(Path.cwd().resolve(), resolved):
        raise OutputError(f"{where}: would replace the working directory (or a parent of it)")
    for parent in resolved.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{where}: {parent} is a file, not a directory")
    dest = Destination(path, marker, force, what, flag)
    found = _identity(path)
    if found is None:
        return dest
    if not stat.S_ISDIR(found[2]):
        raise OutputError(f"{where}: exists and is a file; hwtune writes {what}s as directories")
    if not any(path.iterdir()):
        return Destination(path, marker, force, what, flag, found, empty=True)
    marker_at = _identity(path / marker)
    if marker_at is None or not stat.S_ISREG(marker_at[2]):
        raise OutputError(f"{where}: is a directory holding files that are not an hwtune {what}; "
                          "refusing to replace it (nothing was written)")
    if not force:
        raise OutputError(f"{where}: an hwtune {what} exists there; pass --force to replace it")
    foreign = foreign_files(path)
    if foreign:
        raise OutputError(f"{where}: holds files hwtune did not write ({_listing(foreign)}); refusing to replace "
                          "it (nothing was written): move them away first")
    return Destination(path, marker, force, what, flag, found)


def _listing(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _entries(root: Path) -> tuple[list[str], list[str]]:
    """(regular files, everything else that is not a directory: links, FIFOs, devices) below
    ``root``, relative and sorted; links are never followed."""
    regular, other = [], []
    for dirpath, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if (Path(dirpath) / d).is_symlink()]:
            rel = str((Path(dirpath) / name).relative_to(root))
            (regular if stat.S_ISREG(os.lstat(Path(dirpath) / name).st_mode) else other).append(rel)
    return sorted(regular), sorted(other)


def foreign_files(path: Path) -> list[str]:
    """The files in the output directory ``path`` that its manifest (:data:`MANIFEST`, written with
    the output) does not list, and every link or other non-regular file (never hwtune's); all of
    them when it has no manifest (not written by this hwtune). A manifest that is a link, a FIFO or
    not a manifest is OutputError naming it (:func:`read_manifest`)."""
    listed = set((read_manifest(path) or {"files": []})["files"])
    regular, other = _entries(path)
    return sorted([f for f in regular if f != MANIFEST and f not in listed] + other)


def claim(directory: str | os.PathLike, names) -> None:
    """Before hwtune (re)writes the files ``names`` of a directory it fills piece by piece (a sweep):
    refuse (OutputError) any of them that is a link or not a regular file, or that exists and the
    directory's :data:`MANIFEST` does not list (someone's file, never overwritten), then list them
    all there (other keys of the manifest, its ``format``, are kept)."""
    directory = Path(directory)
    manifest = read_manifest(directory) or {"files": []}
    listed = set(manifest["files"])
    for name in names:
        found = _identity(directory / name)
        if found is not None and not stat.S_ISREG(found[2]):
            kind = "a symbolic link" if stat.S_ISLNK(found[2]) else "not a regular file"
            raise OutputError(f"{directory / name}: is {kind}; hwtune writes only its own regular files there "
                              "(refusing: move it away first)")
    foreign = [n for n in names if n not in listed and _identity(directory / n) is not None]
    if foreign:
        raise OutputError(f"{directory}: holds {', '.join(foreign)}, which hwtune did not write; refusing to "
                          "overwrite (move them away first)")
    if not set(names) <= listed:
        write_json(directory / MANIFEST, {**manifest, "files": sorted(listed | set(names))})


# ---- renames that never replace ------------------------------------------------------------------

_AT_FDCWD, _RENAME_NOREPLACE = -100, 1
_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)


def rename_noreplace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename ``src`` to ``dst`` unless something is at ``dst`` (FileExistsError), in one step.

    Linux's ``renameat2(RENAME_NOREPLACE)``; where the kernel or filesystem lacks it, a file is
    linked then unlinked (``link`` fails on an existing name) and a directory renamed by
    ``rename``, which fails on anything but an empty directory at ``dst``."""
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise FileExistsError(err, os.strerror(err), str(dst)) if err == errno.EEXIST else \
                OSError(err, os.strerror(err), str(src), None, str(dst))
    if os.path.isdir(src) and not os.path.islink(src):
        try:
            os.rename(src, dst)
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst)) from None
            raise
        return
    os.link(src, dst, follow_symlinks=False)
    os.unlink(src)


def remove_own(directory: str | os.PathLike) -> list[str]:
    """Delete what hwtune wrote in ``directory``: the regular files its manifest lists, the manifest,
    then every directory left empty, ``directory`` included. Anything else (a file someone put
    there, a link) stays, and is returned (relative paths); nothing is followed."""
    directory = Path(directory)
    try:
        listed = set((read_manifest(directory) or {"files": []})["files"])
    except OutputError:
        listed = set()
    regular, _ = _entries(directory)
    for name in regular:
        if name in listed:
            os.unlink(directory / name)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISREG(os.lstat(directory / MANIFEST).st_mode):
            os.unlink(directory / MANIFEST)
    for dirpath, dirs, _ in os.walk(directory, topdown=False):
        for d in dirs:
            with contextlib.suppress(OSError):    # not empty (someone's file), or a link: kept
                if not (Path(dirpath) / d).is_symlink():
                    os.rmdir(Path(dirpath) / d)
    with contextlib.suppress(OSError):
        os.rmdir(directory)
    if not directory.exists():
        return []
    regular, other = _entries(directory)
    return sorted(regular + other)


# ---- whole directories, committed at the end ----------------------------------------------------

class _Refused(OutputError):
    """The commit was refused and the finished result kept (never removed by the clean-up)."""


def _keep(tmp: Path, dest: Destination) -> Path:
    """Move the finished result ``tmp`` to a visible sibling of the destination (named after it)."""
    kept = dest.path.parent / f"{dest.path.name}.kept-{tmp.name.rsplit('-', 1)[-1]}"
    try:
        rename_noreplace(tmp, kept)
    except OSError:
        return tmp
    return kept


def _refuse(tmp: Path, dest: Destination, reason: str) -> None:
    kept = _keep(tmp, dest)
    raise _Refused(f"{_where(dest.flag, dest.path)}: {reason}; refusing to replace it. The finished {dest.what} "
                   f"was kept in {kept}")


def _set_aside(tmp: Path, dest: Destination) -> Path:
    """Move the earlier output at ``dest`` (``force``) into a private directory, then check it there:
    the directory found at the start, its marker, no file its manifest does not list (none can be
    added unseen once it is moved). Else it goes back and the commit is refused."""
    box = Path(tempfile.mkdtemp(prefix=f".{dest.path.name}.old-", dir=dest.path.parent))
    old = box / "old"
    try:
        os.rename(dest.path, old)
    except FileNotFoundError:
        box.rmdir()
        _refuse(tmp, dest, "was removed while hwtune worked")
    try:
        foreign = foreign_files(old) if _identity(old) == dest.found else None
    except OutputError:
        foreign = [MANIFEST]
    if foreign is None or foreign or _identity(old / dest.marker) is None:
        reason = ("was replaced by another directory while hwtune worked" if foreign is None else
                  f"files hwtune did not write appeared in it while hwtune worked ({_listing(foreign)})" if foreign
                  else f"its {dest.marker} disappeared while hwtune worked")
        try:
            rename_noreplace(old, dest.path)
            box.rmdir()
        except OSError:
            reason += f" (it is now in {old}: something else took its place meanwhile)"
        _refuse(tmp, dest, reason)
    return box


def _commit(tmp: Path, dest: Destination) -> None:
    """Move the finished ``tmp`` to ``dest.path`` if the destination is still what check_output found."""
    now = _identity(dest.path)
    box = None
    if dest.found is None:
        if now is not None:
            _refuse(tmp, dest, "appeared while hwtune worked")
    elif now != dest.found:
        _refuse(tmp, dest, "was replaced or removed while hwtune worked")
    elif dest.empty:
        try:
            os.rmdir(dest.path)
        except OSError:
            _refuse(tmp, dest, "files appeared in it while hwtune worked")
    else:
        box = _set_aside(tmp, dest)
    try:
        rename_noreplace(tmp, dest.path)
    except FileExistsError:
        _refuse(tmp, dest, "appeared while hwtune worked" + (f" (the earlier output is in {box / 'old'})" if box else ""))
    if box is not None:
        left = remove_own(box / "old")
        if left:
            from hwtune import progress
            progress.log(f"{dest.path}: kept {box / 'old'} holding {_listing(left)}, which appeared in the replaced "
                         "output")
        with contextlib.suppress(OSError):
            box.rmdir()


@contextlib.contextmanager
def atomic_directory(destination: Destination | str | os.PathLike):
    """Yield a fresh private directory beside the destination; on success it is committed there
    (:func:`_commit`: only onto what :func:`check_output` found, else refused with the result kept).

    ``destination``: what :func:`check_output` returned, or a path, which is checked here (a new
    path, an empty directory or an earlier hwtune output: one whose manifest lists every file).
    On an exception (Ctrl-C included) the temporary directory is removed and the destination is
    left untouched.
    """
    dest = destination if isinstance(destination, Destination) else \
        check_output(destination, MANIFEST, force=True, flag="")
    path = dest.path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        raise OutputError(f"{path}: a parent of it is a file") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        regular, other = _entries(tmp)
        (tmp / MANIFEST).write_text(json.dumps({"files": regular + other}, indent=1) + "\n")
        _publish(tmp)
        with committing(path):
            _commit(tmp, dest)
    except _Refused:
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---- single files ---------------------------------------------------------------------------------

def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary sibling and a rename (mode 0644 less the umask):
    a reader sees the old file or the whole new one; a link at ``path`` is replaced, never followed;
    a failed write (a full disk, a file-size limit) leaves the old file as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` (UTF-8)."""
    atomic_write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, payload) -> None:
    """``payload`` as indented JSON, written atomically (non-JSON values as their str)."""
    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


# ---- directories filled piece by piece -------------------------------------------------------------

def _lock(directory: Path, what: str) -> int:
    """A file descriptor holding ``directory/.lock`` exclusively (created if missing; a link or a
    FIFO there is refused, nothing is truncated); a second holder is refused at once."""
    fd = open_regular(directory / LOCK, OutputError, "lock file", follow=False, flags=os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutputError(f"{directory}: another {what} is writing there (lock {directory / LOCK} held)") from None
    return fd


@contextlib.contextmanager
def exclusive_lock(directory: str | os.PathLike, what: str = "sweep"):
    """Hold ``directory/.lock`` exclusively for the block (:func:`_lock`)."""
    fd = _lock(Path(directory), what)
    try:
        yield Path(directory)
    finally:
        os.close(fd)


def _new_shared(path: Path, fmt: str, what: str) -> int | None:
    """Create ``path`` holding its marker manifest and lock, locked, by one rename of a private
    sibling; None when something appeared at ``path`` first (the caller then checks it)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        raise OutputError(f"{path}: a parent of it is a file") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    fd = None
    try:
        (tmp / MANIFEST).write_text(json.dumps({"format": fmt, "files": []}) + "\n")
        _publish(tmp)
        fd = _lock(tmp, what)
        rename_noreplace(tmp, path)
        return fd
    except FileExistsError:
        os.close(fd)
        shutil.rmtree(tmp)
        return None
    except BaseException:
        if fd is not None:
            os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def marks(manifest: dict | None, fmt: str, legacy=()) -> bool:
    """Whether a manifest marks a directory of ``fmt`` (its ``format``), or, written before formats
    were recorded, lists one of the ``legacy`` files only such a directory holds."""
    if manifest is None:
        return False
    if "format" in manifest:
        return manifest["format"] == fmt
    return any(name in manifest["files"] for name in legacy)


@contextlib.contextmanager
def shared_directory(path: str | os.PathLike, fmt: str, what: str = "sweep", legacy=(), keep=lambda: True,
                     flag: str = "--out"):
    """Hold the directory ``path`` that hwtune fills piece by piece (e.g. a sweep), locked, for the block.

    ``path`` is new (created, with a manifest whose ``format`` is ``fmt``, by one rename that never
    replaces what appeared meanwhile), an empty directory (adopted), or a directory whose manifest
    marks it (:func:`marks`); anything else (someone's files, even a lone file named like hwtune's
    lock, a link) is refused before anything is written, and so is a directory another process holds. When the block fails and ``keep()``
    says nothing worth keeping was made (e.g. no finished point), what this run created is taken
    away again (:func:`remove_own` of its output directories, its manifest, its lock, the directory
    if it created it), under the lock: never a file it did not write.
    """
    path = Path(path)
    where = _where(flag, path)
    fd = _new_shared(path, fmt, what) if _identity(path) is None else None
    created = adopted = fd is not None
    if fd is None:
        found = _identity(path)
        if found is None or not stat.S_ISDIR(found[2]):
            kind = "a symbolic link" if found and stat.S_ISLNK(found[2]) else "not a directory"
            raise OutputError(f"{where}: exists and is {kind}; refusing to write into it")
        refused = OutputError(f"{where}: is not a {what} directory (it holds files that are not an hwtune {what}'s, "
                              "and no hwtune manifest marks it); refusing to write into it (nothing was written)")
        entries = set(os.listdir(path))
        if not marks(read_manifest(path), fmt, legacy) and entries:
            if LOCK in entries and entries <= {LOCK, MANIFEST}:   # maybe another run adopting it right now
                os.close(_lock(path, what))
            raise refused
        fd = _lock(path, what)
        try:
            manifest = read_manifest(path)
            if not marks(manifest, fmt, legacy):
                if set(os.listdir(path)) != {LOCK}:        # filled since it was found empty
                    os.unlink(path / LOCK)                  # ours (it was empty), and held: no one else's
                    raise refused
                write_json(path / MANIFEST, {"format": fmt, "files": []})
                adopted = True
            elif "format" not in manifest:
                write_json(path / MANIFEST, {"format": fmt, **manifest})
        except BaseException:
            os.close(fd)
            raise
    try:
        yield path
    except BaseException:
        if adopted and not keep():
            for entry in sorted(os.listdir(path)):
                child = path / entry
                with contextlib.suppress(OutputError):
                    if child.is_dir() and not child.is_symlink() and read_manifest(child) is not None:
                        remove_own(child)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path / MANIFEST)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path / LOCK)
            if created:
                with contextlib.suppress(OSError):
                    os.rmdir(path)
        raise
    finally:
        os.close(fd)
