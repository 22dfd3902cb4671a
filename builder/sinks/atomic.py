"""Write-then-rename helpers: an interrupted write never leaves a partial output."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import InputError
from ..oserrors import naming


@contextlib.contextmanager
def atomic_file(path: Path, *, remove_stale: bool = False,
                mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a temp file beside ``path``; rename it over ``path`` only on success.

    An interrupted or failed write leaves ``path`` as it was. There is no fsync:
    like ``tar``, ``docker save`` and the layer cache, the output is safe against
    the build being killed, not against the machine losing power (an fsync of a
    100 MB image costs more than the rest of a no-op rebuild).

    The temp file's name holds the writer's pid. With ``remove_stale``, temp files
    for ``path`` left by writers that no longer run (a build killed with SIGKILL,
    which nothing can clean up after) are removed first.
    """
    path = Path(path)
    check_file_output(path, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    if remove_stale:
        remove_stale_temps(path.parent, f".{path.name}.")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    try:
        with naming(path), os.fdopen(fd, "wb") as out:
            yield out
        os.chmod(tmp, mode)
        check_file_output(path, None)  # nothing took its place while we wrote
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_stale_temps(directory: Path, prefix: str) -> None:
    """Unlink ``<prefix><pid>.….tmp`` files in ``directory`` whose pid is not a live
    process: what writers killed with SIGKILL left behind."""
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(directory / name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def check_file_output(path: Path, flag: str | None = "-o") -> None:
    """Refuse to write a file at ``path`` unless it is new, a regular file or a symlink
    (the link itself is replaced, never what it points at).

    A rename over a device, FIFO, socket or directory would destroy it (as root,
    ``-o /dev/null`` would replace the host's ``/dev/null``); writers call this before
    any work is done, and :func:`atomic_file` again before it renames.
    """
    st = _existing(path, flag)
    if st is None:
        return
    if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
        return
    raise InputError(f"{_name(flag, path)}: is {_kind(st.st_mode)}, not a regular file; refusing "
                     "to replace it (give a new file name)")


def check_dir_output(path: Path, flag: str | None = "-o") -> None:
    """Refuse to replace ``path`` with a layout directory unless it does not exist, is
    empty, or holds nothing but an OCI image layout (see :func:`_foreign_entry`)."""
    st = _existing(path, flag)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(f"{_name(flag, path)}: is {_kind(st.st_mode)}, not an OCI layout "
                         "directory; refusing to replace it (remove it or choose another -o)")
    foreign = _foreign_entry(path)
    if foreign is not None:
        raise InputError(f"{_name(flag, path)}: is not an OCI layout directory ({foreign}); "
                         "refusing to replace it (remove it or choose another -o)")


_BLOB_NAME = re.compile(r"[a-f0-9]{64}")
_LAYOUT_FILES = ("oci-layout", "index.json")


def _foreign_entry(path: Path) -> str | None:
    """What in ``path`` an OCI layout writer would not have written (``it holds
    'notes.txt'``), or None: a layout holds only ``oci-layout``, ``index.json`` and regular files
    ``blobs/sha256/<64 hex>`` (an empty directory counts as a layout too)."""
    names = sorted(os.listdir(path))
    if names and "oci-layout" not in names:
        return "it has no oci-layout file"
    for name in names:
        entry = path / name
        if name in _LAYOUT_FILES and entry.is_file() and not entry.is_symlink():
            continue
        if name != "blobs" or entry.is_symlink() or not entry.is_dir():
            return f"it holds {name!r}"
        for algo in sorted(os.listdir(entry)):
            sub = entry / algo
            if algo != "sha256" or sub.is_symlink() or not sub.is_dir():
                return f"it holds 'blobs/{algo}'"
            for blob in sorted(os.listdir(sub)):
                st = os.lstat(sub / blob)
                if not _BLOB_NAME.fullmatch(blob) or not stat.S_ISREG(st.st_mode):
                    return f"it holds 'blobs/sha256/{blob}'"
    return None


def _existing(path: Path, flag: str | None) -> os.stat_result | None:
    """``lstat`` of an output path; None if there is nothing there yet."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InputError(f"{_name(flag, path)}: cannot use it as an output: {e.strerror}") from e


def _name(flag: str | None, path: Path) -> str:
    return f"{flag} {path}" if flag else str(path)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temp directory beside ``path``; swap it in only on success.

    An existing ``path`` is replaced only if it is empty or holds nothing but an OCI
    layout (:func:`check_dir_output`): ocibuild never deletes a file it did not write.
    """
    path = Path(path)
    check_dir_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        if path.exists():
            check_dir_output(path)
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
