"""An existing tarball → layer entries, after safety checks.

The tar is re-written by the deterministic writer (sorted, dated at the epoch,
numeric owners kept), so a ``tar:`` layer is as reproducible as any other.
Every member goes through :class:`~builder.layers.members.MemberCheck` as its
header is read — the same check a pulled base's layers get — so paths leaving
the image root, bad whiteouts, hard links to anything but an earlier file,
members below a symlink, devices and FIFOs are refused before anything is
written. Compressed tarballs (gzip, xz, bzip2, zstd) are streamed, never
decompressed to a temporary file: the members' data are read back through a
:class:`~builder.layers.seekable.DecompressedView`, and the uncompressed tar
may be at most :data:`MAX_TAR_LAYER_BYTES`. Only a regular file is read (a
FIFO or a device would block or never end).
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

from ..errors import InputError
from ..layers.entries import Entry, Kind
from ..layers.hashio import SectionReader
from ..layers.members import MAX_LAYER_TAR_BYTES, CheckedTarInfo, MemberCheck, MemberError
from ..layers.seekable import DecompressedView, compression_of

MAX_TAR_LAYER_BYTES = MAX_LAYER_TAR_BYTES
"""The largest uncompressed tar a ``tar:`` layer may expand to (the same bound as a
pulled layer's)."""


def _open_regular(path: Path) -> tuple[os.stat_result, bytes]:
    """The stat and first bytes of ``path``, refusing anything but a regular file
    (opened non-blocking, so a FIFO cannot hang the build)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as e:
        raise InputError(f"{path}: no such file") from e
    except OSError as e:
        raise InputError(f"{path}: cannot open ({e.strerror})") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path}: not a regular file (a tar: layer must be a tarball, "
                             "not a FIFO, device or directory)")
        return st, os.pread(fd, 6, 0)
    finally:
        os.close(fd)


def tar_entries(path: Path, workdir: Path | None = None) -> list[Entry]:
    """Entries for every member of the tarball at ``path`` (``workdir`` is unused:
    nothing is unpacked)."""
    st, head = _open_regular(path)
    kind = compression_of(head)
    view = DecompressedView(str(path), kind, MAX_TAR_LAYER_BYTES) if kind else None
    if view is None and st.st_size > MAX_TAR_LAYER_BYTES:
        raise InputError(f"{path}: {st.st_size} bytes; a tar: layer is at most "
                         f"{MAX_TAR_LAYER_BYTES}")
    stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    check = MemberCheck(str(path), limit=MAX_TAR_LAYER_BYTES)
    entries: list[Entry] = []
    try:
        fileobj = view.stream() if view is not None else open(path, "rb")
        with fileobj, tarfile.open(fileobj=fileobj, mode="r:", tarinfo=CheckedTarInfo) as tar:
            for m in tar:
                dest, target = check(m)
                tar.members.clear()  # tarfile keeps every header otherwise
                if dest != "/":
                    entries.append(_entry(m, dest, target, path, view, stamp))
    except MemberError as e:
        raise InputError(f"{path}: {e}") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable tar archive ({e})") from e
    return entries


def _entry(m: tarfile.TarInfo, dest: str, target: str, path: Path,
           view: DecompressedView | None, stamp: tuple) -> Entry:
    mode = m.mode & 0o7777
    if m.isdir():
        return Entry(dest, Kind.DIR, mode, m.uid, m.gid)
    if m.issym():
        return Entry(dest, Kind.SYMLINK, 0o777, m.uid, m.gid, target=target)
    if m.islnk():
        return Entry(dest, Kind.HARDLINK, mode, m.uid, m.gid, target=target)
    offset, size = m.offset_data, m.size
    if view is None:
        opener = (lambda: SectionReader(str(path), offset, size))
    else:
        opener = (lambda: view.section(offset, size))
    return Entry(dest, Kind.FILE, mode, m.uid, m.gid, size, opener,  # type: ignore[arg-type]
                 stamp=(stamp, offset))
