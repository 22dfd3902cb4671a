"""Where ``sbom`` and ``audit`` read an image from: a tarball / layout, or a registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..oci.image import Image
from ..oci.index import Index, offered_platforms
from ..oci.types import Platform


@dataclass(frozen=True)
class Subject:
    """An image to describe, with the name and digest to report it under."""

    image: Image
    name: str | None
    digest: str
    """The manifest digest: the registry's for a pulled image, else the image's own."""


def open_subject(source: str, *, insecure: bool = False, cache_dir: Path | None = None,
                 platform: Platform | None = None) -> Subject:
    """The one image ``source`` names (see :func:`open_subjects`); an image index
    needs ``platform``."""
    subjects = open_subjects(source, insecure=insecure, cache_dir=cache_dir, platform=platform)
    if len(subjects) > 1:
        raise InputError(f"{source} is an image index for "
                         f"{', '.join(str(s.image.platform) for s in subjects)}; "
                         "choose one with --platform")
    return subjects[0]


def open_subjects(source: str, *, insecure: bool = False, cache_dir: Path | None = None,
                  platform: Platform | None = None) -> list[Subject]:
    """The images ``source`` names: an image tarball or layout directory if one exists
    there, else a REF; every platform's image of an index (in its order), or just the
    one for ``platform``.

    Something that can only be a path (it starts with ``/`` or ``.``, or names a
    ``.tar`` file) and does not exist is reported as a missing file, not looked up
    in a registry as ``docker.io/library/image.tar``.
    """
    path = Path(source)
    if not path.exists() and looks_like_a_path(source):
        raise InputError(f"{source}: no such image tarball or layout directory")
    if path.exists():
        from ..sources.archive import image_name, read_artifact, read_image

        name = image_name(path)
        artifact = read_artifact(path)
        if platform is not None or not isinstance(artifact, Index):
            image = read_image(path, platform)
            return [Subject(image, name, image.digest)]
        return [Subject(m.image, name, m.image.digest) for m in artifact.manifests]
    from ..registry.pull import pull
    from ..registry.push import ClientPool
    from ..registry.reference import parse_reference

    pool = ClientPool(insecure=insecure)
    platforms: list[Platform | None] = [platform]
    if platform is None:
        reference = parse_reference(source)
        top = pool.get(reference.registry).get_manifest(reference.repository,
                                                        reference.identifier)
        if top.is_index:  # attestation entries (unknown/unknown) are not images
            platforms = [p for p in map(Platform.parse, offered_platforms(top.json()))
                         if p.os != "unknown"] or [None]
    out = []
    for each in platforms:
        pulled = pull(source, each, cache_dir, insecure=insecure, pool=pool)
        out.append(Subject(pulled.image, str(pulled.reference), pulled.manifest_digest))
    return out


def looks_like_a_path(source: str) -> bool:
    """True for what no image reference looks like: ``./x``, ``/x``, ``x.tar``."""
    return source.startswith(("/", ".")) or source.endswith((".tar", ".tar.gz", ".tgz"))
