"""A reader of the archive inside a PyInstaller onefile executable (its "PKG").

A onefile executable is the bootloader with a CArchive appended; at run time
its entries (libpython, extension modules, libraries, dist-info …) are unpacked
to a temporary dir, so in the image they exist only inside the executable. The
archive ends with a cookie: ``MEI\\014\\013\\012\\013\\016``, then (big-endian) the
archive length, the TOC offset and length, the Python version and a 64-byte
libpython name. Each TOC entry is (entry length, data offset, data length,
uncompressed length, compression flag, type code) and a NUL-padded name;
compressed data is zlib. (Facts from PyInstaller's ``archive/readers.py``.)

Two users: the SBOM (``supply/``) reads the dist-info METADATA entries, the
library closure (:mod:`.onefile_libs`) the binaries' ELF headers.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

COOKIE_MAGIC = b"MEI\014\013\012\013\016"
_COOKIE = struct.Struct("!8sIIII64s")
_ENTRY = struct.Struct("!IIIIBc")
_METADATA = re.compile(r"(^|/)[^/]+\.(dist-info/METADATA|egg-info/PKG-INFO)$")
TAIL_BYTES = 4096  # the cookie sits at the very end of the file
MAX_TOC_BYTES = 16 << 20
MAX_METADATA_BYTES = 1 << 20
BINARY = b"b"
"""The type code of a binary entry (libpython, an extension module, a library)."""


@dataclass(frozen=True)
class ArchiveEntry:
    name: str
    type_code: bytes
    offset: int  # from the start of the file
    length: int  # stored bytes
    compressed: bool


def has_cookie(tail: bytes) -> bool:
    """Whether the last bytes of a file hold a CArchive cookie."""
    return COOKIE_MAGIC in tail[-TAIL_BYTES:]


def archive_entries(stream: BinaryIO, size: int) -> list[ArchiveEntry]:
    """The TOC of the CArchive at the end of the seekable ``stream`` (``size`` bytes);
    [] if there is none or it is damaged."""
    try:
        return list(_toc(stream, size))
    except (struct.error, ValueError, OSError, UnicodeDecodeError):
        return []


def copy_entry(stream: BinaryIO, entry: ArchiveEntry, out: BinaryIO) -> None:
    """Write ``entry``'s content (decompressed) to ``out``, in pieces."""
    stream.seek(entry.offset)
    left = entry.length
    inflate = zlib.decompressobj() if entry.compressed else None
    while left > 0:
        piece = stream.read(min(left, 1 << 20))
        if not piece:
            raise ValueError(f"{entry.name}: the archive ends inside it")
        left -= len(piece)
        out.write(inflate.decompress(piece) if inflate else piece)
    if inflate is not None:
        out.write(inflate.flush())


def archive_metadata(stream: BinaryIO, size: int) -> dict[str, bytes]:
    """Name -> content of every ``*.dist-info/METADATA`` entry of the archive; {} if
    there is none, or it is damaged (an SBOM is then short of them, never wrong)."""
    import io

    out: dict[str, bytes] = {}
    try:
        for entry in archive_entries(stream, size):
            if _METADATA.search(entry.name) and entry.length <= MAX_METADATA_BYTES:
                buffer = io.BytesIO()
                copy_entry(stream, entry, buffer)
                out[entry.name] = buffer.getvalue()
    except (zlib.error, ValueError, OSError):
        return {}
    return out


def _toc(stream: BinaryIO, size: int) -> Iterator[ArchiveEntry]:
    stream.seek(max(0, size - TAIL_BYTES))
    tail = stream.read()
    at = tail.rfind(COOKIE_MAGIC)
    if at < 0:
        return
    cookie_start = size - len(tail) + at
    _, length, toc_offset, toc_length, _, _ = _COOKIE.unpack_from(tail, at)
    start = cookie_start + _COOKIE.size - length
    if start < 0 or toc_length > MAX_TOC_BYTES:
        return
    stream.seek(start + toc_offset)
    toc = stream.read(toc_length)
    pos = 0
    while pos + _ENTRY.size <= len(toc):
        entry_len, offset, data_len, _, compressed, type_code = _ENTRY.unpack_from(toc, pos)
        if entry_len < _ENTRY.size:
            break
        name = toc[pos + _ENTRY.size:pos + entry_len].rstrip(b"\0").decode("utf-8")
        pos += entry_len
        if start + offset + data_len > size:
            raise ValueError(f"{name}: outside the archive")
        yield ArchiveEntry(name, type_code, start + offset, data_len, bool(compressed))
