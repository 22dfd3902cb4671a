"""The layer cache in a registry repository (``--cache-repo REGISTRY/REPO``).

Plain OCI content, so any registry stores it. Per layer key, under the tag
``k-<key>`` (the key is 64 hex digits)::

    OCI image manifest
      config  application/vnd.ocibuild.cache.v1+json   the record (JSON, below)
      layers  [the layer blob, with its own media type]
      annotations {"dev.ocibuild.cache.key": <key>}

    record  {"format": 1, "key": …, "layer": {digest, size, media_type, diff_id,
             history, uncompressed_size, name, files}, "elf": [...], "extra": {...}}

A verdict is the tag ``v-<key>``: a manifest whose config is
``{"format": 1, "key": …, "verdict": true}`` and which has no layers; a note is
the tag ``n-<key>``, its config ``{"format": 1, "key": …, "note": {…}}``. Blobs are
content-addressed and the manifest of a key is the same bytes whoever writes
it, so two runners writing one key at once store the same thing twice.

On a hit, the manifest and the record are fetched and checked (digests, the
record names this key and the manifest's layer); the layer blob is fetched only
when something reads it, verified by size and sha256 into the local blob store
(a push to the same registry mounts it instead).
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import ImageError, InputError, RegistryError
from ..oci.image import Layer
from ..oci.types import Descriptor, MediaType, canonical_json, sha256_digest
from ..registry.client import RegistryClient
from ..registry.transport import RetryPolicy
from . import REMOTE, Hit, Record, layer_from_json, layer_json, record_from_json, record_json
from .local import blob_matches, blob_path

RECORD_MEDIA_TYPE = "application/vnd.ocibuild.cache.v1+json"
KEY_ANNOTATION = "dev.ocibuild.cache.key"
RECORD_FORMAT = 1
MAX_RECORD_BYTES = 64 * 1024 * 1024
"""The largest record a hit reads (a frozen bundle's entry list is ~100 bytes a file)."""

CACHE_RETRY = RetryPolicy(attempts=2, base_delay=0.2, max_delay=1.0, deadline=20.0,
                          connect_timeout=5.0, read_timeout=60.0)
"""How hard the cache repository is tried: a cache that does not answer quickly
costs a local build, not minutes of backoff."""

PUT_ATTEMPTS = 3
"""Tries of a cache entry's manifest that a concurrent writer's blobs made unknown."""

_KEY = re.compile(r"^[0-9a-f]{64}$")


def layer_tag(key: str) -> str:
    return "k-" + _checked(key)


def verdict_tag(key: str) -> str:
    return "v-" + _checked(key)


def note_tag(key: str) -> str:
    return "n-" + _checked(key)


def _checked(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError(f"cache key {key!r} is not 64 hex digits")
    return key


def parse_cache_repo(text: str) -> tuple[str, str]:
    """``REGISTRY/REPO`` → (registry, repository); a tag or digest is refused."""
    from ..registry.reference import parse_reference

    ref = parse_reference(text, default_tag=None)
    if ref.tag or ref.digest:
        raise InputError(f"--cache-repo {text}: name a repository (REGISTRY/REPO), "
                         "without a tag or digest; ocibuild picks the tags")
    return ref.registry, ref.repository


class RegistryLayerCache:
    """Layers and verdicts in one repository of a registry (see the module doc)."""

    def __init__(self, client: RegistryClient, repo: str, blob_dir: Path) -> None:
        self.client, self.repo, self.blob_dir = client, repo, Path(blob_dir)

    @classmethod
    def open(cls, text: str, blob_dir: Path, *, insecure: bool = False) -> "RegistryLayerCache":
        registry, repo = parse_cache_repo(text)
        return cls(RegistryClient.for_registry(registry, insecure=insecure, retry=CACHE_RETRY),
                   repo, blob_dir)

    @property
    def origin(self) -> str:
        return f"{self.client.registry}/{self.repo}"

    # -- reading ----------------------------------------------------------------------

    def _manifest(self, tag: str) -> dict[str, Any] | None:
        try:
            blob = self.client.get_manifest(self.repo, tag)
        except RegistryError as e:
            if e.status == 404:
                return None
            raise
        body = blob.json()
        config = body.get("config") or {}
        if (body.get("mediaType") != MediaType.OCI_MANIFEST.value
                or config.get("mediaType") != RECORD_MEDIA_TYPE):
            raise ImageError(f"{self.origin}:{tag} is not an ocibuild cache entry")
        return body

    def _record(self, body: dict[str, Any], key: str) -> dict[str, Any]:
        desc = Descriptor.from_json(body["config"])
        if desc.size > MAX_RECORD_BYTES:
            raise ImageError(f"cache record {desc.digest} is larger than {MAX_RECORD_BYTES} "
                             "bytes")
        path = self.client.fetch_blob(self.repo, desc, blob_path(self.blob_dir, desc.digest))
        data = json.loads(path.read_bytes())
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT \
                or data.get("key") != key:
            raise ImageError(f"cache record {desc.digest} is not the record of key {key}")
        return data

    def get(self, key: str) -> Hit | None:
        body = self._manifest(layer_tag(key))
        if body is None:
            return None
        data = self._record(body, key)
        layers = body.get("layers") or []
        if len(layers) != 1:
            raise ImageError(f"cache entry {key} has {len(layers)} layers, not 1")
        desc = Descriptor.from_json(layers[0])
        layer = layer_from_json(data["layer"], _RemoteBlob(self, desc))
        if (layer.digest, layer.size, layer.media_type) != (desc.digest, desc.size,
                                                           str(desc.media_type)):
            raise ImageError(f"cache entry {key}: the record and the manifest name "
                             "different layers")
        return Hit(layer, record_from_json(data), REMOTE)

    def has(self, key: str) -> bool:
        return self.client.has_manifest(self.repo, layer_tag(key))

    def has_verdict(self, key: str) -> bool:
        body = self._manifest(verdict_tag(key))
        return body is not None and self._record(body, key).get("verdict") is True

    def get_note(self, key: str) -> dict[str, Any] | None:
        body = self._manifest(note_tag(key))
        note = self._record(body, key).get("note") if body is not None else None
        return note if isinstance(note, dict) else None

    # -- writing ----------------------------------------------------------------------

    def put(self, key: str, layer: Layer, record: Record) -> None:
        data = canonical_json({"format": RECORD_FORMAT, "key": key, "layer": layer_json(layer),
                               **record_json(record)})
        self._put(layer_tag(key), key, data, [layer])

    def put_verdict(self, key: str) -> None:
        data = canonical_json({"format": RECORD_FORMAT, "key": key, "verdict": True})
        self._put(verdict_tag(key), key, data, [])

    def put_note(self, key: str, note: dict[str, Any]) -> None:
        data = canonical_json({"format": RECORD_FORMAT, "key": key, "note": note})
        self._put(note_tag(key), key, data, [])

    def _put(self, tag: str, key: str, record: bytes, layers: list[Layer]) -> None:
        """Blobs (those the repository lacks), then the manifest under ``tag``.

        Another writer of the same key may be committing the same blobs meanwhile;
        distribution then can refuse the manifest for a moment (MANIFEST_BLOB_UNKNOWN):
        the blobs are checked again and the same bytes put once more.
        """
        import io
        import time

        config = Descriptor(RECORD_MEDIA_TYPE, sha256_digest(record), len(record))
        blobs = [*((x.descriptor, x.opener) for x in layers),
                 (config, lambda: io.BytesIO(record))]
        manifest = canonical_json({
            "schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST.value,
            "config": config.to_json(), "layers": [x.descriptor.to_json() for x in layers],
            "annotations": {KEY_ANNOTATION: key}})
        for attempt in range(PUT_ATTEMPTS):
            for desc, opener in blobs:
                if self.client.blob_size(self.repo, desc.digest) is None:
                    self.client.upload_blob(self.repo, desc, opener)
            try:
                self.client.put_manifest(self.repo, tag, manifest, MediaType.OCI_MANIFEST.value)
                return
            except RegistryError as e:
                if "MANIFEST_BLOB_UNKNOWN" not in e.codes or attempt + 1 == PUT_ATTEMPTS:
                    raise
                time.sleep(0.2 * (attempt + 1))


class _RemoteBlob:
    """Opens a layer blob of the cache repository, fetching it (verified) on first use."""

    def __init__(self, cache: RegistryLayerCache, desc: Descriptor) -> None:
        self._cache, self._desc = cache, desc
        self._lock = threading.Lock()
        self._path: Path | None = None

    @property
    def origin(self) -> str:
        return self._cache.origin

    def __call__(self) -> BinaryIO:
        with self._lock:
            if self._path is None:
                dest = blob_path(self._cache.blob_dir, self._desc.digest)
                if not blob_matches(dest, self._desc):  # another build fetched it already?
                    self._cache.client.fetch_blob(self._cache.repo, self._desc, dest)
                self._path = dest
        return open(self._path, "rb")
