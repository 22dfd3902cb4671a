"""Pull an image into the content-addressed cache and return it as an :class:`Image`.

The cache lives at ``$OCIBUILD_CACHE`` or ``~/.cache/ocibuild``; blobs sit at
``blobs/sha256/<hex>``. A blob enters the cache only through
:meth:`RegistryClient.fetch_blob` (temporary file, size and digest checked,
then renamed), and a cached blob is checked again before it is used, so a
corrupt cache entry is discarded and fetched anew rather than trusted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cache import default_cache_dir
from ..errors import ImageError
from ..humanize import short_digest
from ..layers.entries import FileOpener
from ..oci.image import Image, Layer, RawManifest, config_layers
from ..oci.index import pick_platform
from ..oci.types import (CONFIG_TYPES, MAX_CONFIG_BYTES, Descriptor, MediaType, Platform,
                         check_digest)
from ..progress import NullProgress, Progress
from .client import ManifestBlob, RegistryClient
from .push import ClientPool
from .reference import Reference, parse_reference

log = logging.getLogger("ocibuild.registry")


class BlobCache:
    """Verified blobs by digest under ``<root>/blobs/sha256/<hex>``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else default_cache_dir()

    def path(self, digest: str) -> Path:
        check_digest(digest, "blob digest")
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    def verified(self, desc: Descriptor) -> Path | None:
        """The cached file for ``desc`` if its size and digest hold; else None.

        A file whose bytes do not hash to its name is corrupt and removed. One
        that does hash right but is not ``desc.size`` long is a valid blob and a
        lying descriptor: it stays, and the descriptor is refused.
        """
        path = self.path(desc.digest)
        try:
            h = hashlib.sha256()
            size = 0
            with path.open("rb") as f:
                for block in iter(functools.partial(f.read, 1024 * 1024), b""):
                    h.update(block)
                    size += len(block)
        except FileNotFoundError:
            return None
        if "sha256:" + h.hexdigest() != desc.digest:
            log.warning("cached blob %s does not match its digest; discarding it", path)
            path.unlink(missing_ok=True)
            return None
        if size != desc.size:
            raise ImageError(f"the descriptor of blob {desc.digest} says {desc.size} bytes; "
                             f"the blob is {size} bytes")
        return path

    def fetch(self, client: RegistryClient, repo: str, desc: Descriptor,
              progress: Progress | None = None) -> Path:
        cached = self.verified(desc)
        if cached is not None:
            return cached
        with (progress or NullProgress()).task(f"download {short_digest(desc.digest)}",
                                               total=desc.size) as task:
            return client.fetch_blob(repo, desc, self.path(desc.digest), task=task)


@dataclass(frozen=True)
class Pulled:
    """A pulled image, with the registry's manifest digest (the image's identity there)."""

    image: Image
    reference: Reference
    manifest_digest: str
    manifest: ManifestBlob
    resolved_digest: str
    """What the reference itself names: the index's digest for a multi-platform tag."""


def pull(ref: str, platform: Platform | None = None, cache_dir: Path | None = None, *,
         insecure: bool = False, pool: ClientPool | None = None, jobs: int = 3,
         progress: Progress | None = None) -> Pulled:
    """Resolve ``ref``, pick ``platform`` from an index, fetch every blob verified
    (each layer's bytes shown on ``progress``)."""
    reference = parse_reference(ref)
    pool = pool or ClientPool(insecure=insecure)
    client = pool.get(reference.registry)
    repo = reference.repository
    cache = BlobCache(cache_dir)
    manifest = client.get_manifest(repo, reference.identifier)
    resolved = manifest.digest
    if manifest.is_index:
        chosen = pick_platform(manifest.json(), platform or Platform())
        manifest = client.get_manifest(repo, chosen.digest)
        if manifest.is_index:
            raise ImageError(f"{reference}: nested image indexes are not supported")
    body = manifest.json()
    config_desc, layer_descs = _descriptors(body, reference)
    config_path = cache.fetch(client, repo, config_desc)
    config = _load_config(config_path, reference)
    if platform and not _platform_matches(config, platform):
        raise ImageError(f"{reference} is for {config.get('os')}/{config.get('architecture')}, "
                         f"not {platform}")
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        paths = list(ex.map(lambda d: cache.fetch(client, repo, d, progress), layer_descs))
    layers = tuple(Layer(d, diff_id, FileOpener(str(path)), history=history)
                   for d, path, (diff_id, history) in
                   zip(layer_descs, paths, config_layers(config, len(layer_descs), str(reference))))
    raw = RawManifest(manifest.data, manifest.media_type, config_path.read_bytes(),
                      str(config_desc.media_type))
    image = Image(config, layers, dict(body.get("annotations") or {}), raw=raw)
    return Pulled(image, reference, manifest.digest, manifest, resolved)


def pull_image(ref: str, platform: Platform | None = None, cache_dir: Path | None = None,
               *, insecure: bool = False, pool: ClientPool | None = None) -> Image:
    """The image ``ref`` names, its layers read from the verified local cache."""
    return pull(ref, platform, cache_dir, insecure=insecure, pool=pool).image


def _descriptors(body: dict[str, Any], reference: Reference) -> tuple[Descriptor, list[Descriptor]]:
    """The manifest's config and layer descriptors, all checked before any is fetched:
    well formed (:meth:`Descriptor.from_json`), of known media types, the config no
    larger than :data:`MAX_CONFIG_BYTES`."""
    layers = body.get("layers") or []
    if not isinstance(layers, list):
        raise ImageError(f"{reference}: malformed manifest: layers is not a list")
    try:
        config = Descriptor.from_json(body.get("config"))
        descs = [Descriptor.from_json(x) for x in layers]
    except ImageError as e:
        raise ImageError(f"{reference}: {e}") from e
    if config.media_type not in CONFIG_TYPES:
        raise ImageError(f"{reference}: config {config.digest} has unsupported media type "
                         f"{config.media_type!r}")
    if config.size > MAX_CONFIG_BYTES:
        raise ImageError(f"{reference}: config {config.digest} claims {config.size} bytes; "
                         f"an image config is at most {MAX_CONFIG_BYTES}")
    for d in descs:
        if not _is_layer(d.media_type):
            raise ImageError(f"{reference}: layer {d.digest} has unsupported media type "
                             f"{d.media_type!r}")
    return config, descs


def _is_layer(media_type: str) -> bool:
    try:
        return MediaType(media_type).is_layer()
    except ValueError:
        return False


def _platform_matches(config: dict[str, Any], platform: Platform) -> bool:
    if config.get("os", platform.os) != platform.os:
        return False
    if config.get("architecture", platform.architecture) != platform.architecture:
        return False
    return not (platform.variant and config.get("variant")
                and config["variant"] != platform.variant)


def _load_config(path: Path, reference: Reference) -> dict[str, Any]:
    try:
        config = json.loads(path.read_bytes())
    except RecursionError:
        raise ImageError(f"{reference}: image config is nested too deeply") from None
    except ValueError as e:
        raise ImageError(f"{reference}: image config is not JSON: {e}") from e
    if not isinstance(config, dict):
        raise ImageError(f"{reference}: image config is not a JSON object")
    return config
