"""Layer compressors: writable streams that compress into another stream.

Output bytes depend only on the input and the chosen algorithm: gzip has no
file name and mtime 0 in its header; zstd uses a fixed level and settings.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO, Protocol

from ..oci.types import MediaType

GZIP_LEVEL = 6
ZSTD_LEVEL = 3
COMPRESSIONS = ("gzip", "zstd", "none")


class Compressor(Protocol):
    def write(self, data: bytes) -> int: ...
    def close(self) -> None: ...


class GzipWriter:
    """gzip (RFC 1952) with a fixed header: no name, mtime 0, OS = unix."""

    def __init__(self, out: BinaryIO, level: int = GZIP_LEVEL) -> None:
        self._out = out
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31, 9)

    def write(self, data: bytes) -> int:
        self._out.write(self._z.compress(data))
        return len(data)

    def close(self) -> None:
        self._out.write(self._z.flush())


class ZstdWriter:
    def __init__(self, out: BinaryIO, level: int = ZSTD_LEVEL) -> None:
        import zstandard  # lazy: keeps `ocibuild --help` fast
        self._writer = zstandard.ZstdCompressor(level=level).stream_writer(
            out, closefd=False)

    def write(self, data: bytes) -> int:
        return self._writer.write(data)

    def close(self) -> None:
        self._writer.flush(1)  # FLUSH_FRAME
        self._writer.close()


class PlainWriter:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def write(self, data: bytes) -> int:
        self._out.write(data)
        return len(data)

    def close(self) -> None:
        pass


def compressor(name: str, out: BinaryIO) -> Compressor:
    if name == "gzip":
        return GzipWriter(out)
    if name == "zstd":
        return ZstdWriter(out)
    if name == "none":
        return PlainWriter(out)
    raise ValueError(f"unknown compression {name!r} (choose from {', '.join(COMPRESSIONS)})")


def layer_media_type(name: str) -> str:
    return {"gzip": MediaType.OCI_LAYER_GZIP, "zstd": MediaType.OCI_LAYER_ZSTD,
            "none": MediaType.OCI_LAYER}[name].value


def decompressing_reader(stream: BinaryIO, media_type: str) -> BinaryIO:
    """A stream of a layer's tar bytes, whatever its compression (sniffed by magic)."""
    import io
    buffered = io.BufferedReader(stream) if not hasattr(stream, "peek") else stream
    head = buffered.peek(4)[:4]  # type: ignore[attr-defined]
    if head[:2] == b"\x1f\x8b":
        import gzip
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    if head == b"\x28\xb5\x2f\xfd":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(buffered)  # type: ignore[return-value]
    return buffered  # type: ignore[return-value]
