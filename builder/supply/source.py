"""Where ``sbom`` and ``audit`` read an image from: a tarball / layout, or a registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..oci.image import Image


@dataclass(frozen=True)
class Subject:
    """An image to describe, with the name and digest to report it under."""

    image: Image
    name: str | None
    digest: str
    """The manifest digest: the registry's for a pulled image, else the image's own."""


def open_subject(source: str, *, insecure: bool = False, cache_dir: Path | None = None) -> Subject:
    """``source`` is an image tarball or layout directory if one exists there, else a REF."""
    path = Path(source)
    if path.exists():
        from ..sources.archive import image_name, read_image

        image = read_image(path)
        return Subject(image, image_name(path), image.digest)
    from ..registry.pull import pull

    pulled = pull(source, None, cache_dir, insecure=insecure)
    return Subject(pulled.image, str(pulled.reference), pulled.manifest_digest)
