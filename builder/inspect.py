"""What is in an image: config, layers, sizes, and the largest files.

Sizes mean what they mean in ``ocibuild build``'s summary and in registries:
``size`` is the blob (compressed, or the tar itself for an uncompressed docker
archive layer), ``uncompressed_size`` the layer's tar stream, and
``content_size`` the bytes of its regular files.
"""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Any

from .layers.reader import iter_members
from .layers.whiteouts import WHITEOUT, apply_whiteouts, whiteout_target
from .oci.image import Image
from .oci.index import Index
from .oci.types import Platform
from .sources.archive import image_name, read_artifact, read_image


def inspect_artifact(path: Path, top: int = 10,
                     platform: Platform | None = None) -> dict[str, Any]:
    """The report of :func:`inspect_image`; for an image index (without ``platform``),
    the index's digest and one such report per platform, under ``platforms``."""
    artifact = read_artifact(path)
    if platform is not None or not isinstance(artifact, Index):
        return inspect_image(path, top, read_image(path, platform))
    return {"name": image_name(path), "digest": artifact.digest,
            "media_type": artifact.manifest_media_type,
            "platforms": [inspect_image(path, top, m.image) for m in artifact.manifests]}


def inspect_image(path: Path, top: int = 10, image: Image | None = None) -> dict[str, Any]:
    """A JSON-ready report of the image at ``path`` (tarball or layout dir), or of
    ``image`` read from there.

    Per layer: what the layer holds (whiteout markers are not files). For the
    image: the files a container sees, after later layers' whiteouts, so a
    secret deleted by a later layer is not listed among the largest files.
    """
    image = image or read_image(path)
    final: dict[str, int] = {}  # image path -> size of the regular files a container sees
    layers = []
    uncompressed_total = 0
    for index, layer in enumerate(image.layers):
        files, content = 0, 0
        tar_bytes: list[int] = []
        whiteouts: list[tuple[str, bool]] = []
        added: dict[str, int | None] = {}
        for member, _tar, info in iter_members(layer, index, on_end=tar_bytes.append):
            hidden = whiteout_target(member.path) if WHITEOUT in member.path else None
            if hidden is not None:
                whiteouts.append(hidden)
            elif info.isfile():
                files += 1
                content += info.size
                added[member.path] = info.size
            else:
                added[member.path] = None  # a directory, link, … replaces a file there
        apply_whiteouts(final, whiteouts)
        for member_path, size in added.items():
            if size is None:
                final.pop(member_path, None)
            else:
                final[member_path] = size
        uncompressed_total += tar_bytes[0]
        layers.append({"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size,
                       "media_type": layer.media_type, "uncompressed_size": tar_bytes[0],
                       "content_size": content, "files": files,
                       "name": layer.name or layer.history.get("created_by", "")})
    largest = heapq.nlargest(top, ((size, p) for p, size in final.items()))
    return {
        "name": image_name(path),
        "digest": image.digest,
        "platform": str(image.platform),
        "created": image.config.get("created"),
        "config": image.config.get("config") or {},
        "compressed_size": image.compressed_size,
        "uncompressed_size": uncompressed_total,
        "content_size": sum(final.values()),
        "files": len(final),
        "layers": layers,
        "largest_files": [{"path": p, "size": s} for s, p in largest],
    }
