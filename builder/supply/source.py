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
    """``source`` is an image tarball or layout directory if one exists there, else a REF.

    Something that can only be a path (it starts with ``/`` or ``.``, or names a
    ``.tar`` file) and does not exist is reported as a missing file, not looked up
    in a registry as ``docker.io/library/image.tar``.
    """
    path = Path(source)
    if not path.exists() and looks_like_a_path(source):
        from ..errors import InputError

        raise InputError(f"{source}: no such image tarball or layout directory")
    if path.exists():
        from ..sources.archive import image_name, read_image

        image = read_image(path)
        return Subject(image, image_name(path), image.digest)
    from ..registry.pull import pull

    pulled = pull(source, None, cache_dir, insecure=insecure)
    return Subject(pulled.image, str(pulled.reference), pulled.manifest_digest)


def looks_like_a_path(source: str) -> bool:
    """True for what no image reference looks like: ``./x``, ``/x``, ``x.tar``."""
    return source.startswith(("/", ".")) or source.endswith((".tar", ".tar.gz", ".tgz"))
