"""Stream the members of finished layers (for inspect, audit, SBOM and the image view)."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from typing import Iterator

from ..errors import UnsafePathError
from ..oci.image import Layer
from .compress import decompressing_reader
from .entries import check_symlink_target, image_path


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


def iter_members(layer: Layer, index: int = 0) -> Iterator[tuple[Member, tarfile.TarFile,
                                                                  tarfile.TarInfo]]:
    """Stream the members of a layer without extracting it.

    Every member's path is normalized to an image path; a member, symlink or
    hard link that would escape the image root (a hostile pulled layer) raises
    :class:`UnsafePathError` naming the layer, so it never reaches an image.
    """
    with layer.opener() as raw:
        stream = decompressing_reader(raw, layer.media_type)
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for info in tar:
                try:
                    path = image_path(info.name)
                    if info.issym():
                        check_symlink_target(path, info.linkname)
                    elif info.islnk():
                        image_path(info.linkname)
                except UnsafePathError as e:
                    raise UnsafePathError(f"layer {layer.digest[:19]}…: member {info.name!r}"
                                          f"{' -> ' + repr(info.linkname) if info.linkname else ''}"
                                          " escapes the image root") from e
                yield (Member(index, path, info.size, info.mode, info.uid, info.gid,
                              info.type, info.linkname), tar, info)
