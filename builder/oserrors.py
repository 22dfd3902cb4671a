"""Operating-system errors told the way a user can act on them.

``[Errno 28] No space left on device`` names nothing: a write to an open file has no
file name. :func:`describe` names the path and says which place it belongs to (the
output, the cache, the temporary directory); for a full disk without a path it looks
at which of those places' filesystems is full.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Iterator, Sequence

FULL_BELOW = 1024 * 1024
"""A filesystem with less than this many bytes free counts as the full one."""

Place = tuple[str, "str | os.PathLike[str] | None"]
"""("the cache", "/home/me/.cache/ocibuild"); a path ending in ``-`` is a name prefix
("the temporary directory", "/tmp/ocibuild-": every temporary directory ocibuild makes)."""


def describe(e: OSError, places: Sequence[Place]) -> str:
    """``e`` as one line: ``the cache /c/blobs/sha256: Not a directory``, or ``No space
    left on device: the output's filesystem (/mnt) is full (12 kB free)``."""
    reason = e.strerror or str(e)
    if e.filename is not None:
        path = os.fsdecode(e.filename)
        where = f"{path} -> {os.fsdecode(e.filename2)}" if e.filename2 else path
        role = _role(path, places)
        return f"{role} {where}: {reason}" if role else f"{where}: {reason}"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        full = [(role, path, free) for role, path in places if path is not None
                for free in [_free(os.fspath(path))] if free is not None and free < FULL_BELOW]
        if full:
            return f"{reason}: " + "; ".join(
                f"{role} {path} is on a full filesystem ({_bytes(free)} free)"
                for role, path, free in full)
        named = ", ".join(f"{role} {path}" for role, path in places if path is not None)
        return f"{reason} (not on the filesystem of {named}: another one is full)"
    return reason


@contextlib.contextmanager
def naming(path: "str | os.PathLike[str]") -> Iterator[None]:
    """Give an OSError raised inside without a file name (a write to an open file) the
    name ``path``, so the message says where the disk filled up."""
    try:
        yield
    except OSError as e:
        if e.filename is not None or e.errno is None:
            raise
        raise type(e)(e.errno, e.strerror, os.fspath(path)) from e


def _role(path: str, places: Sequence[Place]) -> str | None:
    real = os.path.realpath(path)
    for role, place in places:
        if place is None:
            continue
        where = os.path.realpath(place)
        if os.fspath(place).endswith("-"):  # a name prefix: <tmp>/ocibuild-*
            if real.startswith(os.path.join(os.path.realpath(os.path.dirname(place)),
                                            os.path.basename(place))):
                return role
            continue
        if real == where or real.startswith(where.rstrip("/") + "/"):
            return role
        # the temporary file an output is written to before its rename
        head, name = os.path.split(where)
        if os.path.dirname(real) == head and os.path.basename(real).startswith(f".{name}."):
            return role
    return None


def _free(path: str) -> int | None:
    """Bytes free for this user on the filesystem of ``path`` (or its nearest parent)."""
    probe = Path(os.path.abspath(path))
    for candidate in (probe, *probe.parents):
        try:
            st = os.statvfs(candidate)
        except OSError:
            continue
        return st.f_bavail * st.f_frsize
    return None


def _bytes(n: int) -> str:
    for unit, size in (("GB", 10 ** 9), ("MB", 10 ** 6), ("kB", 10 ** 3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
