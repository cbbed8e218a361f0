"""Safe outputs: refuse to destroy what hwtune did not write, and write atomically.

- :func:`check_output`: the rules every output path follows before any work starts (a new path;
  or, with ``force``, an earlier hwtune output of the same kind holding only the files its
  manifest lists; never a path that is or holds
  an input, a file, a symbolic link, the working directory, or a directory of someone's files).
- :func:`atomic_directory` / :func:`atomic_write_text`: a reader sees the old output or the
  complete new one, never half of it; outputs are readable by others (0644 files, 0755 dirs,
  less what the umask removes).
- :func:`exclusive_lock`: one writer per directory (sweeps append to their directory);
  :func:`claim`: the files a sweep rewrites there must be ones hwtune wrote (its manifest).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path

from hwtune.errors import OutputError
from hwtune.interrupts import committing


#: The list of files hwtune wrote into an output directory (JSON {"files": [relative paths]}):
#: ``--force`` replaces a directory only when it holds nothing else.
MANIFEST = ".hwtune-files.json"


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


def check_output(path: str | os.PathLike, marker: str, force: bool = False, inputs=(), what: str = "output",
                 flag: str = "--out") -> Path:
    """Refuse (OutputError) an output path hwtune must not write, before any work is done.

    Allowed: a path that does not exist (parents are created), an empty directory, or, with
    ``force``, a directory holding ``marker`` (an earlier hwtune output of this kind) and no file
    its :data:`MANIFEST` does not list, which is then replaced. Refused always: a path equal to,
    inside or holding one of ``inputs``; a file; a symbolic link; the working directory or one of its parents; a path under a file; a non-empty
    directory without ``marker`` (someone's files: never deleted, even with ``force``).
    """
    path = Path(path)
    if path.is_symlink():
        raise OutputError(f"{flag} {path}: is a symbolic link; give the directory it points to instead")
    resolved = path.resolve()
    for inp in inputs:
        inp = Path(inp).resolve()
        if _is_within(resolved, inp) or _is_within(inp, resolved):
            relation = "is" if resolved == inp else ("lies inside" if _is_within(resolved, inp) else "holds")
            raise OutputError(f"{flag} {path}: {relation} the input {inp}; choose another output")
    if _is_within(Path.cwd().resolve(), resolved):
        raise OutputError(f"{flag} {path}: would replace the working directory (or a parent of it)")
    for parent in resolved.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{flag} {path}: {parent} is a file, not a directory")
    if not path.exists():
        return path
    if not path.is_dir():
        raise OutputError(f"{flag} {path}: exists and is a file; hwtune writes {what}s as directories")
    if not any(path.iterdir()):
        return path
    if not (path / marker).exists():
        raise OutputError(f"{flag} {path}: is a directory holding files that are not an hwtune {what}; "
                          "refusing to replace it (nothing was written)")
    if not force:
        raise OutputError(f"{flag} {path}: an hwtune {what} exists there; pass --force to replace it")
    foreign = foreign_files(path)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputError(f"{flag} {path}: holds files hwtune did not write ({shown}); refusing to replace it "
                          "(nothing was written): move them away first")
    return path


def _files(root: Path) -> list[str]:
    """Every entry below ``root`` that is not a directory (files, links, FIFOs), relative, sorted."""
    found = []
    for dirpath, dirs, files in os.walk(root):
        found += [str((Path(dirpath) / f).relative_to(root)) for f in files]
        found += [str((Path(dirpath) / d).relative_to(root)) for d in dirs if (Path(dirpath) / d).is_symlink()]
    return sorted(found)


def foreign_files(path: Path) -> list[str]:
    """The files in the output directory ``path`` that its manifest (:data:`MANIFEST`, written with
    the output) does not list; all of them when it has no manifest (not written by this hwtune)."""
    try:
        listed = set(json.loads((path / MANIFEST).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        listed = set()
    return [f for f in _files(path) if f != MANIFEST and f not in listed]


def claim(directory: str | os.PathLike, names) -> None:
    """Before hwtune (re)writes the files ``names`` of a directory it fills piece by piece (a sweep):
    refuse (OutputError) any of them that exists and the directory's :data:`MANIFEST` does not list
    (someone's file, never overwritten), then list them all there."""
    directory = Path(directory)
    manifest = directory / MANIFEST
    try:
        listed = set(json.loads(manifest.read_text())["files"])
    except FileNotFoundError:
        listed = set()
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise OutputError(f"{manifest}: unreadable manifest ({str(e)[:100]}); refusing to write into {directory}") \
            from None
    foreign = [n for n in names if n not in listed and (directory / n).exists()]
    if foreign:
        raise OutputError(f"{directory}: holds {', '.join(foreign)}, which hwtune did not write; refusing to "
                          "overwrite (move them away first)")
    if not set(names) <= listed:
        write_json(manifest, {"files": sorted(listed | set(names))})


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike):
    """Yield a fresh temporary directory beside ``path``; on success it replaces ``path``.

    On an exception (Ctrl-C included) the temporary directory is removed and ``path`` is left
    untouched. The caller has checked ``path`` with :func:`check_output`; as a last line of
    defence a non-directory or a symbolic link at ``path`` is refused here too.
    """
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise OutputError(f"{path}: exists and is not a directory; refusing to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        raise OutputError(f"{path}: a parent of it is a file") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        (tmp / MANIFEST).write_text(json.dumps({"files": _files(tmp)}, indent=1) + "\n")
        _publish(tmp)
        with committing(path):
            old = None
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and os.replace (mode 0644 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, payload) -> None:
    """``payload`` as indented JSON, written atomically (non-JSON values as their str)."""
    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


@contextlib.contextmanager
def exclusive_lock(directory: str | os.PathLike, what: str = "sweep"):
    """Hold ``directory/.lock`` exclusively; a second holder is refused at once (OutputError)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"{directory}: another {what} is writing there (lock {directory / '.lock'} held)") \
                from None
        try:
            yield directory
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
