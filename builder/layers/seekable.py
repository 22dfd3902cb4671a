"""A compressed tarball read at any uncompressed offset, with no decompressed copy.

A ``tar:`` layer is read twice: once in archive order, to check every member
as its header is read, and once in the tar writer's sorted order, for the
content of the files. :class:`DecompressedView` serves both without writing
the decompressed tar anywhere: it decompresses forward, and to go back it
restarts from a *checkpoint*. For gzip (zlib's state can be copied) one is
taken every :data:`CHECKPOINT_SPACING` uncompressed bytes of the first pass,
so any offset is at most that far from a restart point (~40 KiB of memory
each). xz, bzip2 and zstd decoders cannot be copied: going back restarts them
from the start, which costs time (never disk or memory) on archives whose
members are not in sorted order.

The uncompressed stream is bounded by ``limit`` (a gzip bomb of zeros is
refused once it expands past it, not after filling the disk).
"""

from __future__ import annotations

import bisect
import bz2
import io
import lzma
import threading
import zlib
from typing import BinaryIO, Callable

from ..errors import InputError

CHECKPOINT_SPACING = 8 << 20
"""Uncompressed bytes between gzip restart points (~40 KiB of zlib state each), at
first: past :data:`MAX_CHECKPOINTS` every other one is dropped and the spacing
doubles, so a huge (or hostile) stream costs at most that many."""
MAX_CHECKPOINTS = 256
RECENT_BYTES = 64 << 20
"""Decoded bytes kept for reads that go back a little (files of one directory,
which ``tar`` stores in directory order but the writer wants sorted)."""
_IN_BLOCK = 1 << 18
_OUT_BLOCK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


def compression_of(head: bytes) -> str | None:
    """``gzip``, ``zstd``, ``xz`` or ``bzip2`` from a file's first bytes; None if plain."""
    if head[:2] == _GZIP_MAGIC:
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[:5] == b"\xfd7zXZ":
        return "xz"
    if head[:3] == b"BZh":
        return "bzip2"
    return None


class TooLarge(InputError):
    """The uncompressed stream grew past the view's limit."""


class _Gzip:
    """A gzip decoder over a seekable compressed file, with copyable state."""

    def __init__(self, src: BinaryIO, offset: int = 0, state=None) -> None:  # type: ignore[no-untyped-def]
        src.seek(offset)
        self.src = src
        self.dec = state.copy() if state is not None else zlib.decompressobj(31)
        self.tail = b""
        self.done = False

    def checkpoint(self):  # type: ignore[no-untyped-def]
        """(compressed offset, decoder state) of exactly the bytes decoded so far."""
        return self.src.tell() - len(self.tail), self.dec.copy()

    def read(self) -> bytes:
        while not self.done:
            if not self.tail:
                self.tail = self.src.read(_IN_BLOCK)
                if not self.tail:
                    if not self.dec.eof:
                        raise EOFError("compressed stream ended early")
                    self.done = True
                    break
            try:
                out = self.dec.decompress(self.tail, _OUT_BLOCK)
            except zlib.error as e:
                raise EOFError(f"corrupt gzip data ({e})") from None
            self.tail = self.dec.unconsumed_tail
            if self.dec.eof:
                self.tail = self.dec.unused_data + self.tail
                if self.tail[:2] == _GZIP_MAGIC:  # another member follows
                    self.dec = zlib.decompressobj(31)
                elif not self.tail.strip(b"\0") and not self.src.read(1):
                    self.done = True  # (zero padding after the last member is fine)
                else:
                    raise EOFError("garbage after the gzip data")
            if out:
                return out
        return b""


class _Restarting:
    """A decoder that can only go forward (xz, bzip2, zstd)."""

    def __init__(self, opener: Callable[[], BinaryIO]) -> None:
        self.stream = opener()

    def read(self) -> bytes:
        try:
            return self.stream.read(_OUT_BLOCK)
        except (lzma.LZMAError, OSError, ValueError) as e:
            raise EOFError(f"corrupt compressed data ({e})") from None


def _opener(path: str, kind: str) -> Callable[[], BinaryIO]:
    if kind == "xz":
        return lambda: lzma.open(path, "rb")  # type: ignore[return-value]
    if kind == "bzip2":
        return lambda: bz2.open(path, "rb")  # type: ignore[return-value]

    def zstd() -> BinaryIO:
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(  # type: ignore[return-value]
            open(path, "rb"), read_across_frames=True, closefd=True)
    return zstd


class DecompressedView:
    """The decompressed bytes of ``path`` (``kind`` as :func:`compression_of` says),
    readable at any offset; thread-safe. ``stream()`` gives a seekable file object
    for ``tarfile``, ``section()`` a reader of one member's data."""

    def __init__(self, path: str, kind: str, limit: int) -> None:
        self.path, self.kind, self.limit = path, kind, limit
        self._lock = threading.Lock()
        self._src: BinaryIO | None = open(path, "rb") if kind == "gzip" else None
        self._checkpoints: list[tuple[int, int, object]] = []  # (upos, cpos, state)
        self._spacing = CHECKPOINT_SPACING
        self._dec: _Gzip | _Restarting | None = None
        self._pos = 0          # uncompressed offset of the start of _buf
        self._buf = b""
        self._recent: dict[int, bytes] = {}   # start → decoded block, oldest first
        self._recent_starts: list[int] = []   # the same starts, sorted
        self._recent_bytes = 0
        self.restarts = 0

    def close(self) -> None:
        with self._lock:
            self._drop()
            if self._src is not None:
                self._src.close()
                self._src = None

    def _drop(self) -> None:
        stream = getattr(self._dec, "stream", None)
        if stream is not None:
            stream.close()
        self._dec = None

    def _restart(self, offset: int) -> None:
        self._drop()
        self.restarts += 1
        self._buf = b""
        if self.kind == "gzip":
            assert self._src is not None
            i = bisect.bisect_right(self._checkpoints, offset, key=lambda c: c[0]) - 1
            upos, cpos, state = self._checkpoints[i] if i >= 0 else (0, 0, None)
            self._pos = upos
            self._dec = _Gzip(self._src, cpos, state)
        else:
            self._pos = 0
            self._dec = _Restarting(_opener(self.path, self.kind))

    def _fill(self) -> bool:
        """Decode the next block into the (empty) ``_buf``; False at the end."""
        assert self._dec is not None and not self._buf
        data = self._dec.read()
        if not data:
            return False
        end = self._pos + len(data)
        if end > self.limit:
            raise TooLarge(f"{self.path}: decompresses to more than {self.limit} bytes")
        self._buf = data
        self._remember(self._pos, data)
        last = self._checkpoints[-1][0] if self._checkpoints else 0
        if isinstance(self._dec, _Gzip) and end - last >= self._spacing:
            cpos, state = self._dec.checkpoint()
            self._checkpoints.append((end, cpos, state))
            if len(self._checkpoints) > MAX_CHECKPOINTS:
                self._checkpoints = self._checkpoints[1::2]
                self._spacing *= 2
        return True

    def _remember(self, start: int, data: bytes) -> None:
        if start in self._recent:
            return
        self._recent[start] = data
        bisect.insort(self._recent_starts, start)
        self._recent_bytes += len(data)
        while self._recent_bytes > RECENT_BYTES:
            oldest = next(iter(self._recent))
            self._recent_bytes -= len(self._recent.pop(oldest))
            del self._recent_starts[bisect.bisect_left(self._recent_starts, oldest)]

    def _recalled(self, offset: int, size: int) -> bytes | None:
        """Bytes at ``offset`` from a recently decoded block, or None."""
        i = bisect.bisect_right(self._recent_starts, offset) - 1
        if i < 0:
            return None
        start = self._recent_starts[i]
        block = self._recent[start]
        if offset >= start + len(block):
            return None
        return block[offset - start:offset - start + size]

    def read_at(self, offset: int, size: int) -> bytes:
        """``size`` bytes at uncompressed ``offset`` (fewer only at the end): from
        recently decoded blocks when they hold it, else from the live decoder or a
        restart at the nearest checkpoint, whichever has less to decode."""
        with self._lock:
            pieces: list[bytes] = []
            while size > 0:
                piece = self._recalled(offset, size)
                if piece:
                    pieces.append(piece)
                    offset += len(piece)
                    size -= len(piece)
                    continue
                if self._dec is None or offset < self._pos or \
                        self._checkpoint_before(offset) > self._pos + len(self._buf):
                    self._restart(offset)
                pieces.append(self._read_live(offset, size))
                break
            return b"".join(pieces)

    def _checkpoint_before(self, offset: int) -> int:
        """Where the nearest restart point at or before ``offset`` is (0: the start)."""
        i = bisect.bisect_right(self._checkpoints, offset, key=lambda c: c[0]) - 1
        return self._checkpoints[i][0] if i >= 0 else 0

    def _read_live(self, offset: int, size: int) -> bytes:
        pieces: list[bytes] = []
        while size > 0:
            if offset < self._pos + len(self._buf):
                start = offset - self._pos
                piece = self._buf[start:start + size]
                pieces.append(piece)
                offset += len(piece)
                size -= len(piece)
                if start + len(piece) < len(self._buf):
                    break
            self._pos += len(self._buf)
            self._buf = b""
            if not self._fill():
                break
        return b"".join(pieces)

    def stream(self) -> "_ViewStream":
        return _ViewStream(self)

    def section(self, offset: int, size: int) -> "_ViewStream":
        return _ViewStream(self, offset, offset + size)


class _ViewStream(io.RawIOBase):
    """A seekable read-only window ``[start, end)`` of a :class:`DecompressedView`."""

    def __init__(self, view: DecompressedView, start: int = 0, end: int | None = None) -> None:
        self._view, self._start, self._end, self._pos = view, start, end, start

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos - self._start

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self.tell()
        elif whence == io.SEEK_END:
            raise io.UnsupportedOperation("the end of a decompressed stream is not known")
        self._pos = self._start + max(offset, 0)
        return self.tell()

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        want = len(buffer)
        if self._end is not None:
            want = min(want, self._end - self._pos)
        if want <= 0:
            return 0
        data = self._view.read_at(self._pos, want)
        if not data and self._end is not None:
            raise EOFError("the archive ended before the member did")
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)
