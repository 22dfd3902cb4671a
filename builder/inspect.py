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
from .sources.archive import image_name, read_image


def inspect_image(path: Path, top: int = 10) -> dict[str, Any]:
    """A JSON-ready report of the image at ``path`` (tarball or layout dir)."""
    image = read_image(path)
    largest: list[tuple[int, str]] = []
    layers = []
    total_files = 0
    uncompressed_total = content_total = 0
    for index, layer in enumerate(image.layers):
        files = 0
        content = 0
        tar_bytes: list[int] = []
        for member, _tar, info in iter_members(layer, index, on_end=tar_bytes.append):
            if info.isfile():
                files += 1
                content += info.size
                item = (info.size, member.path)
                if len(largest) < top:
                    heapq.heappush(largest, item)
                elif item > largest[0]:
                    heapq.heapreplace(largest, item)
        total_files += files
        uncompressed_total += tar_bytes[0]
        content_total += content
        layers.append({"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size,
                       "media_type": layer.media_type, "uncompressed_size": tar_bytes[0],
                       "content_size": content, "files": files,
                       "name": layer.name or layer.history.get("created_by", "")})
    return {
        "name": image_name(path),
        "digest": image.digest,
        "platform": str(image.platform),
        "created": image.config.get("created"),
        "config": image.config.get("config") or {},
        "compressed_size": image.compressed_size,
        "uncompressed_size": uncompressed_total,
        "content_size": content_total,
        "files": total_files,
        "layers": layers,
        "largest_files": [{"path": p, "size": s} for s, p in sorted(largest, reverse=True)],
    }
