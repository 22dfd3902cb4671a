"""Stream the members of finished layers (for inspect, audit, SBOM and the image view)."""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

from ..oci.image import Layer
from .compress import decompressing_reader
from .entries import tar_member_paths


@dataclass(frozen=True)
class Member:
    layer_index: int
    path: str        # absolute image path
    size: int
    mode: int
    uid: int
    gid: int
    type: bytes      # tarfile type code
    linkname: str


class _Counting(io.RawIOBase):
    """Counts the bytes read through it (the layer's uncompressed tar stream)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream, self.count = stream, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        data = self._stream.read(len(buffer))
        buffer[:len(data)] = data
        self.count += len(data)
        return len(data)


def iter_members(layer: Layer, index: int = 0, *,
                 on_end: Callable[[int], None] | None = None,
                 ) -> Iterator[tuple[Member, tarfile.TarFile, tarfile.TarInfo]]:
    """Stream the members of a layer without extracting it.

    Every member's path is normalized to an image path; a member, symlink or
    hard link that would escape the image root (a hostile pulled layer) raises
    :class:`UnsafePathError` naming the layer, so it never reaches an image.
    ``on_end``, if given, is called after the last member with the length of the
    whole uncompressed tar stream (what a layer's "uncompressed size" means).
    """
    with layer.opener() as raw:
        counted = _Counting(decompressing_reader(raw, layer.media_type))
        stream = io.BufferedReader(counted, 1 << 20)
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for info in tar:
                path, _ = tar_member_paths(info, f"layer {layer.digest[:19]}…")
                yield (Member(index, path, info.size, info.mode, info.uid, info.gid,
                              info.type, info.linkname), tar, info)
        if on_end is not None:
            while stream.read(1 << 20):  # the end-of-archive blocks and record padding
                pass
            on_end(counted.count)
