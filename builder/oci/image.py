"""Images as values: a config plus an ordered tuple of layers.

An :class:`Image` only answers reads (config bytes, manifest bytes, digests);
edits are functions that return a new image (:func:`append_layers`,
:func:`with_config`). Layer bytes are never held here: a :class:`Layer` carries
an opener returning a fresh stream of its compressed blob.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, Callable

from ..errors import ImageError
from ..humanize import count
from .types import (Descriptor, MediaType, Platform, canonical_json, check_digest,
                    sha256_digest)

BlobOpener = Callable[[], BinaryIO]


@dataclass(frozen=True)
class Layer:
    """A finished layer blob: descriptor of the compressed bytes, diff_id of the tar.

    ``history`` is the config history entry for this layer (``created_by`` etc.),
    ``uncompressed_size`` is None when unknown (e.g. a pulled layer).
    """

    descriptor: Descriptor
    diff_id: str
    opener: BlobOpener = field(compare=False, repr=False)
    history: dict[str, Any] = field(default_factory=dict, compare=False)
    uncompressed_size: int | None = field(default=None, compare=False)
    name: str = field(default="", compare=False)
    file_count: int | None = field(default=None, compare=False)

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    @property
    def size(self) -> int:
        return self.descriptor.size

    @property
    def media_type(self) -> str:
        return str(getattr(self.descriptor.media_type, "value", self.descriptor.media_type))


@dataclass(frozen=True)
class RawManifest:
    """The exact bytes an image was read or pulled with.

    An image that is only passed through (pulled then written, read then pushed)
    keeps its manifest and config byte for byte, so its digest does not change;
    any edit drops them and the image is serialized canonically again.
    """

    manifest: bytes
    media_type: str
    config: bytes
    config_media_type: str


@dataclass(frozen=True)
class Image:
    """An OCI image: its config JSON object and its layers, bottom first."""

    config: dict[str, Any]
    layers: tuple[Layer, ...] = ()
    manifest_annotations: dict[str, str] = field(default_factory=dict, compare=False)
    raw: RawManifest | None = field(default=None, compare=False, repr=False)

    @property
    def config_bytes(self) -> bytes:
        return self.raw.config if self.raw else canonical_json(self.config)

    @property
    def config_descriptor(self) -> Descriptor:
        data = self.config_bytes
        media_type = self.raw.config_media_type if self.raw else MediaType.OCI_CONFIG.value
        return Descriptor(media_type, sha256_digest(data), len(data))

    @property
    def manifest_media_type(self) -> str:
        return self.raw.media_type if self.raw else MediaType.OCI_MANIFEST.value

    @property
    def manifest(self) -> dict[str, Any]:
        if self.raw:
            return json.loads(self.raw.manifest)
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_MANIFEST.value,
            "config": self.config_descriptor.to_json(),
            "layers": [layer.descriptor.to_json() for layer in self.layers],
        }
        if self.manifest_annotations:
            out["annotations"] = dict(self.manifest_annotations)
        return out

    @property
    def manifest_bytes(self) -> bytes:
        return self.raw.manifest if self.raw else canonical_json(self.manifest)

    @property
    def digest(self) -> str:
        """The image's identity: the digest of its manifest."""
        return sha256_digest(self.manifest_bytes)

    @property
    def platform(self) -> Platform:
        return Platform(self.config.get("os", "linux"), self.config.get("architecture", "amd64"),
                        self.config.get("variant"))

    def manifest_descriptor(self, annotations: dict[str, str] | None = None) -> Descriptor:
        data = self.manifest_bytes
        return Descriptor(self.manifest_media_type, sha256_digest(data), len(data),
                          annotations or {}, self.platform)

    @property
    def compressed_size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def uncompressed_size(self) -> int | None:
        sizes = [layer.uncompressed_size for layer in self.layers]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[misc]


def empty_image(platform: Platform, created: str) -> Image:
    """The scratch image: no layers, a config with only platform and rootfs."""
    config = {
        "architecture": platform.architecture,
        "os": platform.os,
        "created": created,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    }
    if platform.variant:
        config["variant"] = platform.variant
    return Image(config)


def append_layers(image: Image, *layers: Layer) -> Image:
    """A new image with ``layers`` on top; diff_ids and history follow."""
    config = copy.deepcopy(image.config)
    config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    config["rootfs"]["diff_ids"] = list(config["rootfs"].get("diff_ids", [])) + [
        layer.diff_id for layer in layers]
    history = list(config.get("history") or [])
    for layer in layers:
        entry = dict(layer.history)
        entry.setdefault("created", config.get("created", "1970-01-01T00:00:00Z"))
        history.append(entry)
    config["history"] = history
    below = tuple(as_oci_layer(layer) for layer in image.layers)
    return replace(image, config=config, layers=below + tuple(layers), raw=None)


def as_oci_layer(layer: Layer) -> Layer:
    """Docker's gzip layer type becomes OCI's: same bytes, so a new image stays pure OCI."""
    if layer.media_type != MediaType.DOCKER_LAYER_GZIP.value:
        return layer
    return replace(layer, descriptor=replace(layer.descriptor,
                                             media_type=MediaType.OCI_LAYER_GZIP.value))


def with_config(image: Image, **runtime: Any) -> Image:
    """A new image whose runtime config (``config.config``) has ``runtime`` set.

    Keys use the OCI JSON names (``User``, ``Entrypoint``, ``Env`` …); a value of
    None removes the key.
    """
    config = copy.deepcopy(image.config)
    inner = dict(config.get("config") or {})
    for key, value in runtime.items():
        if value is None:
            inner.pop(key, None)
        else:
            inner[key] = value
    config["config"] = inner
    return replace(image, config=config, layers=tuple(as_oci_layer(x) for x in image.layers),
                   raw=None)


def config_layers(config: dict[str, Any], layers: int, what: str) -> list[tuple[str, dict]]:
    """Per layer of a config read from elsewhere (a registry, an archive): its diff_id
    (checked to be a sha256 digest) and its history entry (``{}`` when there is none).
    A config whose ``rootfs.diff_ids`` is not a list of ``layers`` digests is an
    :class:`ImageError` naming ``what``."""
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        diff_ids = []
    if len(diff_ids) != layers:
        raise ImageError(f"{what}: the config lists {len(diff_ids)} diff_ids for "
                         f"{count(layers, 'layer')}")
    history = config.get("history")
    entries = [h for h in history if isinstance(h, dict) and not h.get("empty_layer")] \
        if isinstance(history, list) else []
    return [(check_digest(d, f"{what}: diff_id"), dict(entries[i]) if i < len(entries) else {})
            for i, d in enumerate(diff_ids)]
