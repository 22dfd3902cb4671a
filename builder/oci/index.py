"""Image indexes as values, and what an Image and an Index have in common.

An :class:`Index` holds images, one per platform, each with the annotations of
its descriptor; like :class:`~builder.oci.image.Image` it only answers reads.
Sinks and ``push`` take an :class:`Artifact`, either of the two (ko's
``Result``), so one path writes one platform or many. :func:`pick_platform` is
the pure choice of a manifest from an index's JSON (a registry's, or ours).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Protocol

from ..errors import ImageError
from .image import Image
from .types import Descriptor, MediaType, Platform, canonical_json, sha256_digest


@dataclass(frozen=True)
class Blob:
    """A blob an artifact references (a layer or a config), and how to read it."""

    descriptor: Descriptor
    opener: Callable[[], BinaryIO] = field(compare=False, repr=False)
    is_config: bool = False


class Artifact(Protocol):
    """An Image or an Index: what sinks and ``push`` need of either."""

    @property
    def manifest_bytes(self) -> bytes: ...

    @property
    def manifest_media_type(self) -> str: ...

    @property
    def digest(self) -> str: ...

    def manifest_descriptor(self, annotations: dict[str, str] | None = None) -> Descriptor: ...


def images_of(artifact: Artifact) -> tuple[Image, ...]:
    """The images an artifact holds: itself, or an index's, in index order."""
    if isinstance(artifact, Index):
        return tuple(m.image for m in artifact.manifests)
    assert isinstance(artifact, Image)
    return (artifact,)


def blobs_of(artifact: Artifact) -> list[Blob]:
    """Every layer and config blob of ``artifact``, each once, layers before configs
    (so a config, which makes an image visible to a registry's GC, goes last)."""
    seen: set[str] = set()
    layers: list[Blob] = []
    configs: list[Blob] = []
    for image in images_of(artifact):
        for layer in image.layers:
            if layer.digest not in seen:
                seen.add(layer.digest)
                layers.append(Blob(layer.descriptor, layer.opener))
        desc = image.config_descriptor
        if desc.digest not in seen:
            seen.add(desc.digest)
            data = image.config_bytes
            configs.append(Blob(desc, lambda data=data: io.BytesIO(data), True))
    return layers + configs


@dataclass(frozen=True)
class IndexManifest:
    """One entry of an index: an image and the annotations of its descriptor."""

    image: Image
    annotations: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def platform(self) -> Platform:
        return self.image.platform

    @property
    def descriptor(self) -> Descriptor:
        return self.image.manifest_descriptor(self.annotations)


@dataclass(frozen=True)
class Index:
    """An OCI image index: one manifest per platform, in the order given.

    ``raw`` keeps the exact bytes an index was read with, so an index that is
    only passed through keeps its digest.
    """

    manifests: tuple[IndexManifest, ...]
    annotations: dict[str, str] = field(default_factory=dict, compare=False)
    raw: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.raw is not None:
            return  # someone else's index, read as it is
        platforms = [str(m.platform) for m in self.manifests]
        if not platforms:
            raise ImageError("an image index needs at least one manifest")
        dupes = sorted({p for p in platforms if platforms.count(p) > 1})
        if dupes:
            raise ImageError(f"an image index holds {', '.join(dupes)} more than once")

    @property
    def manifest_media_type(self) -> str:
        return MediaType.OCI_INDEX.value

    @property
    def manifest(self) -> dict[str, Any]:
        if self.raw is not None:
            return json.loads(self.raw)
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_INDEX.value,
            "manifests": [m.descriptor.to_json() for m in self.manifests],
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @property
    def manifest_bytes(self) -> bytes:
        return self.raw if self.raw is not None else canonical_json(self.manifest)

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest_bytes)

    @property
    def platforms(self) -> tuple[Platform, ...]:
        return tuple(m.platform for m in self.manifests)

    def manifest_descriptor(self, annotations: dict[str, str] | None = None) -> Descriptor:
        data = self.manifest_bytes
        return Descriptor(self.manifest_media_type, sha256_digest(data), len(data),
                          annotations or {})

    def image_for(self, platform: Platform) -> Image:
        """The image for ``platform`` (by the same rules as a registry pull)."""
        chosen = pick_platform({"manifests": [m.descriptor.to_json() for m in self.manifests]},
                               platform)
        return next(m.image for m in self.manifests if m.image.digest == chosen.digest)

    @property
    def compressed_size(self) -> int:
        return sum(b.descriptor.size for b in blobs_of(self))


def pick_platform(index: dict[str, Any], platform: Platform) -> Descriptor:
    """The manifest descriptor in an index (its JSON) that matches ``platform``.

    os and architecture must match; a requested variant must match; without
    one, an entry without variant (or the usual default) is preferred.
    """
    candidates = []
    for raw in index.get("manifests") or []:
        desc = Descriptor.from_json(raw)
        p = desc.platform
        if p and p.os == platform.os and p.architecture == platform.architecture:
            if platform.variant and p.variant != platform.variant:
                continue
            candidates.append(desc)
    if not candidates:
        raise ImageError(f"no image for platform {platform} in the index "
                         f"(it offers: {', '.join(offered_platforms(index)) or 'nothing'})")
    defaults = {None, "v8" if platform.architecture == "arm64" else None}
    candidates.sort(key=lambda d: 0 if d.platform and d.platform.variant in defaults else 1)
    return candidates[0]


def offered_platforms(index: dict[str, Any]) -> list[str]:
    """The platforms an index's JSON names, sorted, as ``os/arch[/variant]``."""
    return sorted({str(Descriptor.from_json(m).platform) for m in index.get("manifests") or []
                   if isinstance(m, dict) and m.get("platform")})
