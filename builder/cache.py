"""Where ocibuild keeps what it may reuse: blobs, layers, .debs, venvs, bundles.

``$OCIBUILD_CACHE`` if set, else ``$XDG_CACHE_HOME/ocibuild``, else
``~/.cache/ocibuild``. Everything in it is content-addressed or keyed by the hash
of its inputs, written to a temporary name and renamed, so it is safe to share
between concurrent builds and to delete at any time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any, BinaryIO

MAX_RECORD_BYTES = 64 * 1024 * 1024
"""Largest cache record (JSON) read back; a bigger one is ignored as damaged. The biggest
ocibuild writes are base-layer indexes, a few MB for 100 000 files."""


def default_cache_dir() -> Path:
    env = os.environ.get("OCIBUILD_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "ocibuild" if xdg else Path.home() / ".cache" / "ocibuild"


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file, else OSError; opening never
    blocks (a FIFO planted where a file belongs is refused, not waited on)."""
    f = open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)), "rb")
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise OSError(f"{path}: not a regular file")
    return f


def file_sha256(path: Path) -> str:
    """The hex sha256 of a regular file's content, read in 1 MiB blocks (OSError for
    anything else: a FIFO planted in the cache must not block the build)."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def file_status(path: Path) -> list[int] | None:
    """What changes whenever a file is written, replaced or touched (device, inode,
    size, mtime, ctime), as JSON can keep it; None if there is no file.

    A record holding this says "the file is as I left it" without reading it
    (like git's index): the layer cache uses it for its blobs, ``build`` for
    the output it may leave alone.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device there is never "as I left it"
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def read_record(path: Path, limit: int = MAX_RECORD_BYTES) -> Any:
    """The JSON value kept in cache file ``path``, or None when there is none or it is
    damaged or hostile: missing, not a regular file (a FIFO is never opened for
    reading in a way that blocks), bigger than ``limit``, not JSON, nested too deep
    for Python. A cache record is a hint: whatever it holds, the caller validates."""
    try:
        with open_regular(path) as f:
            if os.fstat(f.fileno()).st_size > limit:
                return None
            data = f.read(limit + 1)
        if len(data) > limit:
            return None
        return json.loads(data)
    except (OSError, ValueError, RecursionError):
        return None


def write_record(path: Path, data: object) -> None:
    """Write ``data`` as JSON to cache file ``path`` through a temporary file and a rename.
    Something not a file in its place (a directory, a FIFO) is removed first: the cache
    is ocibuild's."""
    from .sinks.atomic import atomic_file

    clear_non_file(path)
    with atomic_file(path) as out:
        out.write(json.dumps(data, separators=(",", ":")).encode())


def clear_non_file(path: Path) -> None:
    """Remove a non-regular entry at cache path ``path`` (a hostile or damaged cache)."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    elif not stat.S_ISREG(st.st_mode) and not stat.S_ISLNK(st.st_mode):
        with contextlib.suppress(OSError):
            os.unlink(path)
