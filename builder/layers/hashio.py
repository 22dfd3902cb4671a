"""Small stream adapters: hash-while-writing, and a bounded reader over a file section."""

from __future__ import annotations

import hashlib
import io
from typing import BinaryIO


class HashingWriter(io.RawIOBase):
    """Pass bytes through to ``out`` while counting them and taking their sha256."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self._hash.update(data)
        self._out.write(data)
        n = len(data)
        self.size += n
        return n

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


class SectionReader(io.RawIOBase):
    """Read ``size`` bytes of ``path`` starting at ``offset`` (a tar member's data)."""

    def __init__(self, path: str, offset: int, size: int) -> None:
        self._file = open(path, "rb")
        self._file.seek(offset)
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self._left)]
        n = self._file.readinto(view)
        if not n:
            raise EOFError("file ended before the section did")
        self._left -= n
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


def copy_stream(src: BinaryIO, dst, chunk: int = 1 << 20) -> int:
    """Copy ``src`` to ``dst`` in chunks; return the byte count."""
    total = 0
    while True:
        block = src.read(chunk)
        if not block:
            return total
        dst.write(block)
        total += len(block)
