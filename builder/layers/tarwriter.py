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

import os
import posixpath
import tarfile
from zlib import adler32
from dataclasses import dataclass, field, replace
from typing import Mapping, BinaryIO, Iterable

from ..errors import InputError
from .entries import Entry, FileOpener, Kind

SPECIAL_BITS = 0o6000  # setuid | setgid
_BUFSIZE = 1 << 20
_SMALL = 64 * 1024  # files up to this size are read in one call
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _sort_key(entry: Entry) -> str:
    """Orders entries as the tuples of their paths' components would (a dir right
    before its contents): NUL, which no name holds, sorts below every other character."""
    return entry.path.replace("/", "\0")


class Normalized(list[Entry]):
    """What :func:`normalize` returns; normalizing it again (the pipeline, then
    :func:`~builder.layers.build.build_layer`) returns it as is, unless special
    bits kept then must now be dropped. Treat it as read-only."""

    keep_special_bits: bool = False


def normalize(entries: Iterable[Entry], keep_special_bits: bool = False,
              below: Mapping[str, Entry] | None = None) -> list[Entry]:
    """Merge, complete and sort entries into the exact list a layer will hold.

    A later entry for the same path replaces an earlier one, except that a
    directory never silently replaces a file (or the reverse): that is an error,
    because it is almost always a manifest mistake. A missing parent directory
    is added as 0755 root, or, when a lower layer (``below``, the merged view of
    the image so far) already has that directory, with its mode and owner, so a
    file put into ``/tmp`` does not turn the base's 1777 ``/tmp`` into 0755.
    Files sharing a ``link_key`` become hard links only when their mode and
    owner agree too (a link has one inode, so one mode).
    """
    if isinstance(entries, Normalized) and (keep_special_bits or not entries.keep_special_bits):
        return entries
    by_path: dict[str, Entry] = {}
    links = shared = False
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
        links = links or entry.kind is Kind.HARDLINK
        shared = shared or entry.link_key is not None
    if links:
        _relink_hardlinks(by_path)
        shared = True
    checked = "/"  # the last parent known to be a directory (siblings come together)
    for path in list(by_path):
        parent = path[:path.rfind("/")] or "/"  # image paths are absolute and normalized
        if parent == checked:
            continue
        while parent != "/" and parent not in by_path:
            lower = below.get(parent) if below is not None else None
            if lower is not None and lower.kind is Kind.DIR:
                by_path[parent] = Entry(parent, Kind.DIR, lower.mode, lower.uid, lower.gid)
            else:
                by_path[parent] = Entry(parent, Kind.DIR, 0o755)
            parent = posixpath.dirname(parent)
        if parent != "/" and by_path[parent].kind is not Kind.DIR:
            raise InputError(f"{path}: its parent {parent} is not a directory in this layer")
        checked = path[:path.rfind("/")] or "/"
    out = Normalized(sorted(by_path.values(), key=_sort_key))
    out.keep_special_bits = keep_special_bits
    if shared:
        _link_shared_files(out)
    return out


def _link_shared_files(entries: list[Entry]) -> None:
    """In sorted ``entries``, each FILE sharing a link key, mode and owner with an
    earlier one becomes a HARDLINK to it."""
    first_of_link: dict[object, str] = {}
    for i, entry in enumerate(entries):
        if entry.kind is Kind.FILE and entry.link_key is not None:
            key = (entry.link_key, entry.mode, entry.uid, entry.gid)
            first = first_of_link.setdefault(key, entry.path)
            if first != entry.path:
                entries[i] = replace(entry, kind=Kind.HARDLINK, target=first, opener=None,
                                     size=0)


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


ELF_MAGIC = b"\x7fELF"


@dataclass
class TarStats:
    """What writing a layer saw. ``elf`` lists (in tar order) the image paths of the
    FILE members whose content starts with the ELF magic: the library closure
    needs to look at those only, and the tar writer reads every byte anyway."""

    files: int = 0
    bytes: int = 0
    elf: list[str] = field(default_factory=list)


BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
_NUL = b"\0"
# The constant tail of a ustar header after ``linkname``: magic "ustar\0" version
# "00", empty uname/gname (32 each), empty devmajor/devminor (8 each, no digits:
# not a device), empty prefix (155), and the 12 bytes padding the block to 512.
_USTAR_TAIL = b"ustar\x0000" + _NUL * (32 + 32 + 8 + 8 + 155 + 12)
_TAIL_SUM = sum(_USTAR_TAIL) + sum(b"        ")  # the checksum field counts as spaces
_TYPES = {Kind.FILE: tarfile.REGTYPE, Kind.DIR: tarfile.DIRTYPE,
          Kind.SYMLINK: tarfile.SYMTYPE, Kind.HARDLINK: tarfile.LNKTYPE}
_TYPEFLAGS = {kind._value_: flag for kind, flag in _TYPES.items()}
_FILE_TAIL = tarfile.REGTYPE + _NUL * 100 + _USTAR_TAIL  # type flag, empty link name
_FILE_SUM = tarfile.REGTYPE[0]
"""By the kind's value: an Enum member hashes in Python, its value's str in C."""


def tar_header(name: str, kind: Kind, mode: int, uid: int, gid: int, size: int,
               mtime: int, linkname: str = "") -> bytes:
    """One member's header, byte for byte what ``tarfile`` writes in PAX format."""
    return TarHeaders(mtime).member(name, kind, mode, uid, gid, size, linkname)


class TarHeaders:
    """Formats the headers of one archive's members, which share an mtime.

    The common case (ASCII names and link names of at most 100 bytes, ids and sizes
    that fit in octal fields) is formatted here directly, about ten times faster
    than ``TarInfo.tobuf``; anything needing a PAX extended header goes to tarfile.
    The mode, uid, gid and mtime fields are formatted (and summed) once per owner.
    """

    def __init__(self, mtime: int) -> None:
        self.mtime = mtime
        self._mtime_field = b"%011o\0" % mtime if 0 <= mtime < 0o100000000000 else None
        self._fixed: dict[tuple[int, int, int], tuple[bytes, int]] = {}

    def file(self, name: str, mode: int, uid: int, gid: int, size: int) -> bytes:
        """:meth:`member` for a FILE, the header of every host file: only the checks
        and sums a file's header needs (a third cheaper)."""
        if len(name) <= 100 and name.isascii() and 0 <= size < 0o100000000000:
            fixed = self._fixed.get((mode, uid, gid)) or self._fixed_fields(mode, uid, gid)
            if fixed is not None:
                ids, fixed_sum = fixed
                name_b = name.encode("ascii")
                size_field = b"%011o\0" % size
                # adler32's low 16 bits are 1 + the sum of the bytes modulo 65521, and
                # these fields (at most 100 ASCII bytes) sum to far less than that.
                chksum = (fixed_sum + _FILE_SUM + (adler32(name_b) & 0xFFFF)
                          + (adler32(size_field) & 0xFFFF) - 2)
                return b"".join((name_b.ljust(100, _NUL), ids, size_field, self._mtime_field,
                                 b"%06o\0 " % chksum, _FILE_TAIL))
        return self._pax(name, Kind.FILE, mode, uid, gid, size, "")

    def member(self, name: str, kind: Kind, mode: int, uid: int, gid: int, size: int = 0,
               linkname: str = "") -> bytes:
        if kind is Kind.FILE and not linkname:
            return self.file(name, mode, uid, gid, size)
        typ = _TYPEFLAGS[kind._value_]
        if kind is Kind.DIR and not name.endswith("/"):
            name += "/"
        if (len(name) <= 100 and len(linkname) <= 100 and name.isascii()
                and linkname.isascii() and 0 <= size < 0o100000000000):
            fixed = self._fixed.get((mode, uid, gid)) or self._fixed_fields(mode, uid, gid)
            if fixed is not None:
                ids, fixed_sum = fixed
                name_b, link_b = name.encode("ascii"), linkname.encode("ascii")
                size_field = b"%011o\0" % size
                chksum = (fixed_sum + typ[0] + (adler32(name_b) & 0xFFFF)
                          + (adler32(size_field) & 0xFFFF) + (adler32(link_b) & 0xFFFF) - 3)
                return b"".join((name_b.ljust(100, _NUL), ids, size_field, self._mtime_field,
                                 b"%06o\0 " % chksum, typ, link_b.ljust(100, _NUL),
                                 _USTAR_TAIL))
        return self._pax(name, kind, mode, uid, gid, size, linkname)

    def _fixed_fields(self, mode: int, uid: int, gid: int) -> tuple[bytes, int] | None:
        """The mode, uid and gid fields, and the checksum of all but the name, size,
        type and link name (kept for the next member of that owner); None if a field
        does not fit (a PAX header is needed)."""
        if (self._mtime_field is None or not 0 <= uid < 0o10000000
                or not 0 <= gid < 0o10000000):
            return None
        ids = b"%07o\0%07o\0%07o\0" % (mode & 0o7777, uid, gid)
        fixed = self._fixed[mode, uid, gid] = ids, sum(ids) + sum(self._mtime_field) + _TAIL_SUM
        return fixed

    def _pax(self, name: str, kind: Kind, mode: int, uid: int, gid: int, size: int,
             linkname: str) -> bytes:
        """A header by ``tarfile``, with the PAX records a long, non-ASCII or large
        field needs."""
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid = _TYPES[kind], mode & 0o7777, uid, gid
        info.size, info.mtime, info.linkname = size, self.mtime, linkname
        info.uname = info.gname = ""
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class _BlockWriter:
    """Gathers the tar stream into whole ``size``-byte writes to ``out``.

    File data is read straight into the buffer (``readinto``), so each byte is
    copied once on its way to the hasher and compressor, and ``out`` (the
    parallel gzip writer) sees piece-sized writes.
    """

    def __init__(self, out: BinaryIO, size: int = _BUFSIZE) -> None:
        self._out = out
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._size = size
        self._pos = 0
        self.offset = 0

    def put(self, data: bytes) -> None:
        n = len(data)
        pos = self._pos
        if pos + n < self._size:
            self._view[pos:pos + n] = data
            self._pos = pos + n
        else:
            view = memoryview(data)
            while view:
                room = self._size - self._pos
                take = view[:room]
                self._view[self._pos:self._pos + len(take)] = take
                self._pos += len(take)
                view = view[len(take):]
                if self._pos == self._size:
                    self._emit()
        self.offset += n

    def copy_from(self, stream: BinaryIO, size: int, path: str, total: int = 0) -> None:
        """Exactly ``size`` bytes of ``stream``; refuse a stream that ends early."""
        readinto = getattr(stream, "readinto", None)
        left = size
        while left:
            room = min(self._size - self._pos, left)
            target = self._view[self._pos:self._pos + room]
            if readinto is not None:
                n = readinto(target)
            else:
                data = stream.read(room)
                n = len(data)
                target[:n] = data
            if not n:
                raise InputError(f"{path} changed while being read: it ended {left} bytes "
                                 f"early (expected {total or size} bytes)")
            self._pos += n
            left -= n
            if self._pos == self._size:
                self._emit()
        self.offset += size

    def _emit(self) -> None:
        self._out.write(bytes(self._view[:self._pos]))
        self._pos = 0

    def flush(self) -> None:
        if self._pos:
            self._emit()


def write_tar(entries: list[Entry], out: BinaryIO, epoch: int) -> TarStats:
    """Write already-normalized ``entries`` as a PAX tar to ``out``; stream file data.

    The bytes are those of ``tarfile`` in PAX format (stream mode, records of
    20 blocks); headers and the copy loop are done here because per-member
    overhead in ``tarfile`` dominated layers of many small files.
    """
    stats = TarStats()
    w = _BlockWriter(out)
    headers = TarHeaders(epoch)
    header, file_header = headers.member, headers.file
    for entry in entries:
        name = entry.path.lstrip("/")
        if entry.kind is Kind.FILE:
            size = entry.size
            head = file_header(name, entry.mode, entry.uid, entry.gid, size)
            pad = _NUL * (-size % BLOCK)
            assert entry.opener is not None, entry.path
            try:
                if size <= _SMALL and type(entry.opener) is FileOpener:
                    data = _read_small(entry.opener.path, size, entry.path)
                    if data[:4] == ELF_MAGIC:
                        stats.elf.append(entry.path)
                    w.put(b"".join((head, data, pad)))
                else:
                    _copy_file(w, entry, head, pad, stats)
            except OSError as e:
                raise InputError(f"cannot read {entry.path} ({e}); did it change "
                                 f"while being read? expected {size} bytes") from e
            stats.files += 1
            stats.bytes += size
        else:
            target = entry.target.lstrip("/") if entry.kind is Kind.HARDLINK else entry.target
            w.put(header(name, entry.kind, entry.mode, entry.uid, entry.gid, 0, target))
    w.put(_NUL * (2 * BLOCK))
    tail = w.offset % RECORD
    if tail:
        w.put(_NUL * (RECORD - tail))
    w.flush()
    return stats


def _read_small(host: str, size: int, path: str) -> bytes:
    """All ``size`` bytes of host file ``host``, through bare file descriptor calls
    (a third of the cost of a buffered ``open`` for a file of a few kB)."""
    fd = os.open(host, os.O_RDONLY | _CLOEXEC)
    try:
        data = os.read(fd, size)
        while len(data) < size:
            more = os.read(fd, size - len(data))
            if not more:
                raise InputError(f"{path} changed while being read: it ended "
                                 f"{size - len(data)} bytes early (expected {size} bytes)")
            data += more
        return data
    finally:
        os.close(fd)


def _copy_file(w: _BlockWriter, entry: Entry, header: bytes, pad: bytes,
               stats: TarStats) -> None:
    """A FILE member's header, data and padding, the data streamed from its opener."""
    size = entry.size
    assert entry.opener is not None, entry.path
    with entry.opener() as stream:
        # one read of up to _SMALL bytes: all of most files, the head of the rest
        data = stream.read(min(size, _SMALL))
        while len(data) < min(size, 4):  # a short read: complete the magic
            more = stream.read(min(size, 4) - len(data))
            if not more:
                break  # copy_from reports the stream ending early
            data += more
        if data[:4] == ELF_MAGIC:
            stats.elf.append(entry.path)
        if len(data) == size:
            w.put(b"".join((header, data, pad)))
        else:
            w.put(header + data)
            w.copy_from(stream, size - len(data), entry.path, size)
            w.put(pad)
