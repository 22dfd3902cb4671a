"""The deterministic tar writer: the only place that decides how a layer's bytes look.

Given entries in any order, it writes a PAX tar where

* entries are sorted by path, parents before children, each path once;
* missing parent directories are added as 0755, root-owned;
* every mtime is the build epoch; uid/gid are numeric, user/group names empty;
* no atime/ctime/xattrs from the build host reach the archive;
* FILE entries sharing a ``link_key`` are stored once, then as hard links;
* setuid/setgid bits are dropped unless ``keep_special_bits`` is set.
"""

from __future__ import annotations

import posixpath
import tarfile
from dataclasses import dataclass, replace
from typing import BinaryIO, Iterable

from ..errors import InputError
from .entries import Entry, Kind

SPECIAL_BITS = 0o6000  # setuid | setgid
_BUFSIZE = 1 << 20


def _sort_key(path: str) -> tuple[str, ...]:
    return tuple(path.split("/"))


def normalize(entries: Iterable[Entry], keep_special_bits: bool = False) -> list[Entry]:
    """Merge, complete and sort entries into the exact list a layer will hold.

    A later entry for the same path replaces an earlier one, except that a
    directory never silently replaces a file (or the reverse): that is an error,
    because it is almost always a manifest mistake.
    """
    by_path: dict[str, Entry] = {}
    for entry in entries:
        if entry.path == "/":
            continue
        old = by_path.get(entry.path)
        if old is not None and (old.kind is Kind.DIR) != (entry.kind is Kind.DIR):
            raise InputError(f"{entry.path} is given both as a directory and as a "
                             f"{'file' if entry.kind is not Kind.DIR else old.kind.value}")
        if not keep_special_bits and entry.mode & SPECIAL_BITS and entry.kind is not Kind.SYMLINK:
            entry = replace(entry, mode=entry.mode & ~SPECIAL_BITS)
        by_path[entry.path] = entry
    _relink_hardlinks(by_path)
    for path in list(by_path):
        parent = posixpath.dirname(path)
        while parent != "/" and parent not in by_path:
            by_path[parent] = Entry(parent, Kind.DIR, 0o755)
            parent = posixpath.dirname(parent)
        if parent != "/" and by_path[parent].kind is not Kind.DIR:
            raise InputError(f"{path}: its parent {parent} is not a directory in this layer")
    ordered = sorted(by_path.values(), key=lambda e: _sort_key(e.path))
    first_of_link: dict[object, str] = {}
    out: list[Entry] = []
    for entry in ordered:
        if entry.kind is Kind.FILE and entry.link_key is not None:
            first = first_of_link.setdefault(entry.link_key, entry.path)
            if first != entry.path:
                entry = replace(entry, kind=Kind.HARDLINK, target=first, opener=None, size=0)
        out.append(entry)
    return out


def _relink_hardlinks(by_path: dict[str, Entry]) -> None:
    """Turn HARDLINK entries into FILEs sharing a link key with their target.

    Sorting may put a link before its target; after this, whichever path sorts
    first is stored as the file and the others as links to it.
    """
    for path, entry in list(by_path.items()):
        if entry.kind is not Kind.HARDLINK:
            continue
        target = by_path.get(entry.target)
        while target is not None and target.kind is Kind.HARDLINK:
            target = by_path.get(target.target)
        if target is None or target.kind is not Kind.FILE:
            raise InputError(f"hard link {path} -> {entry.target}: the target is not a "
                             "regular file of the same layer")
        key = target.link_key if target.link_key is not None else ("hardlink", target.path)
        by_path[target.path] = replace(target, link_key=key)
        by_path[path] = replace(target, path=path, link_key=key)


@dataclass
class TarStats:
    files: int = 0
    bytes: int = 0


def write_tar(entries: list[Entry], out: BinaryIO, epoch: int) -> TarStats:
    """Write already-normalized ``entries`` as a PAX tar to ``out``; stream file data."""
    stats = TarStats()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      bufsize=_BUFSIZE, copybufsize=_BUFSIZE) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.path.lstrip("/"))
            info.mtime = epoch
            info.mode = entry.mode & 0o7777
            info.uid, info.gid = entry.uid, entry.gid
            info.uname = info.gname = ""
            if entry.kind is Kind.DIR:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif entry.kind is Kind.SYMLINK:
                info.type = tarfile.SYMTYPE
                info.linkname = entry.target
                tar.addfile(info)
            elif entry.kind is Kind.HARDLINK:
                info.type = tarfile.LNKTYPE
                info.linkname = entry.target.lstrip("/")
                tar.addfile(info)
            else:
                info.type = tarfile.REGTYPE
                info.size = entry.size
                assert entry.opener is not None, entry.path
                with entry.opener() as stream:
                    try:
                        tar.addfile(info, _ExactReader(stream, entry.size, entry.path))
                    except OSError as e:
                        raise InputError(f"cannot read {entry.path} ({e}); did it change "
                                         f"while being read? expected {entry.size} bytes") from e
                stats.files += 1
                stats.bytes += entry.size
    return stats


class _ExactReader:
    """Refuse a file that changed size between listing and reading."""

    def __init__(self, stream: BinaryIO, size: int, path: str) -> None:
        self._stream, self._left, self._path = stream, size, path

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(self._left if n < 0 else min(n, self._left))
        self._left -= len(data)
        if not data and n != 0 and self._left > 0:
            raise InputError(f"{self._path} shrank while it was being read")
        return data
