"""The Python distributions inside a PyInstaller onefile executable.

A onefile executable is the bootloader with a CArchive ("PKG") appended; at run
time its data entries (dist-info included) are unpacked to a temporary dir, so
in the image they exist only inside the executable. The archive ends with a
cookie: ``MEI\\014\\013\\012\\013\\016``, then (big-endian) the archive length, the
TOC offset and length, the Python version and a 64-byte libpython name. Each TOC
entry is (entry length, data offset, data length, uncompressed length,
compression flag, type code) and a NUL-padded name; compressed data is zlib.
"""

from __future__ import annotations

import re
import struct
import zlib
from typing import BinaryIO

COOKIE_MAGIC = b"MEI\014\013\012\013\016"
_COOKIE = struct.Struct("!8sIIII64s")
_ENTRY = struct.Struct("!IIIIBc")
_METADATA = re.compile(r"(^|/)[^/]+\.(dist-info/METADATA|egg-info/PKG-INFO)$")
TAIL_BYTES = 4096  # the cookie sits at the very end of the file
MAX_TOC_BYTES = 16 << 20
MAX_METADATA_BYTES = 1 << 20


def has_cookie(tail: bytes) -> bool:
    """Whether the last bytes of a file hold a CArchive cookie."""
    return COOKIE_MAGIC in tail[-TAIL_BYTES:]


def archive_metadata(stream: BinaryIO, size: int) -> dict[str, bytes]:
    """Name -> content of every ``*.dist-info/METADATA`` data entry of the CArchive at
    the end of the seekable ``stream`` (``size`` bytes); {} if there is none, or it
    is damaged (an SBOM is then short of them, never wrong)."""
    try:
        return _read(stream, size)
    except (struct.error, zlib.error, ValueError, OSError, UnicodeDecodeError):
        return {}


def _read(stream: BinaryIO, size: int) -> dict[str, bytes]:
    stream.seek(max(0, size - TAIL_BYTES))
    tail = stream.read()
    at = tail.rfind(COOKIE_MAGIC)
    if at < 0:
        return {}
    cookie_start = size - len(tail) + at
    _, length, toc_offset, toc_length, _, _ = _COOKIE.unpack_from(tail, at)
    start = cookie_start + _COOKIE.size - length
    if start < 0 or toc_length > MAX_TOC_BYTES:
        return {}
    stream.seek(start + toc_offset)
    toc = stream.read(toc_length)
    out: dict[str, bytes] = {}
    pos = 0
    while pos + _ENTRY.size <= len(toc):
        entry_len, offset, data_len, _, compressed, _ = _ENTRY.unpack_from(toc, pos)
        if entry_len < _ENTRY.size:
            break
        name = toc[pos + _ENTRY.size:pos + entry_len].rstrip(b"\0").decode("utf-8")
        pos += entry_len
        if not _METADATA.search(name) or data_len > MAX_METADATA_BYTES:
            continue
        stream.seek(start + offset)
        data = stream.read(data_len)
        out[name] = zlib.decompress(data) if compressed else data
    return out
