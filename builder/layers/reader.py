"""Read the files of finished layers (for user resolution, inspect, audit, closure)."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from typing import Iterator

from ..errors import UnsafePathError
from ..oci.image import Image, Layer
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


def read_file(image: Image, path: str, limit: int = 16 << 20) -> bytes | None:
    """The content of ``path`` as the top-most layer holding it has it (None if absent).

    Whiteouts are honoured: a ``.wh.<name>`` in a higher layer hides the file.
    """
    directory, _, name = path.rpartition("/")
    whiteout = f"{directory}/.wh.{name}"
    opaque = f"{directory}/.wh..wh..opq"
    for index in range(len(image.layers) - 1, -1, -1):
        hidden = False
        for member, tar, info in iter_members(image.layers[index], index):
            if member.path in (whiteout, opaque):
                hidden = True
            elif member.path == path:
                if not info.isfile() or info.size > limit:
                    return None
                f = tar.extractfile(info)
                return f.read() if f else None
        if hidden:
            return None
    return None
