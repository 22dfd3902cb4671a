"""Small stream adapters: hash-while-writing, writing on a thread of its own, and a
bounded reader over a file section."""

from __future__ import annotations

import hashlib
import io
import queue
import threading
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


class ThreadedWriter:
    """Hands each ``write`` to a thread of its own that writes it to ``out``.

    sha256 and file writes release the GIL, so with ``out`` a :class:`HashingWriter`
    (and a compressor) they overlap the caller's Python work: the tar writer's loop
    over 100 000 small files no longer stops for them. Writes must be large (the tar
    writer's 1 MiB blocks) and must not be reused buffers. Use it as a context
    manager: leaving waits for the thread, and raises what ``out.write`` raised
    unless another error is already on its way out.
    """

    def __init__(self, out: BinaryIO, depth: int = 4) -> None:
        self._out = out
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ocibuild-layer-writer",
                                        daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> int:
        if self._error is not None:
            raise self._error
        self._queue.put(data)
        return len(data)

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:  # after an error, only drain the queue
                try:
                    self._out.write(data)
                except BaseException as e:
                    self._error = e

    def __enter__(self) -> "ThreadedWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._queue.put(None)
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error


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
