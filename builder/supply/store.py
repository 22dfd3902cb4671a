"""Signatures in the registry: read and write the ``sha256-<hex>.sig`` image.

Attestations live the same way under ``sha256-<hex>.att`` (``suffix="att"``).

The signature image is an OCI manifest (config ``application/vnd.oci.image.
config.v1+json``) whose layers are the signed payloads. Writing appends a layer
to what the tag already holds, so earlier signatures stay, as
``cosign sign`` does; a payload + signature pair already present is not added
twice.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import ImageError, RegistryError, SupplyChainError
from ..oci.types import Descriptor, MediaType, canonical_json, sha256_digest
from ..registry.client import RegistryClient
from .simplesigning import SIGNATURE_ANNOTATION, signature_tag

MAX_PAYLOAD_BYTES = 1 << 20


@dataclass(frozen=True)
class SignatureImage:
    """The layers (payload descriptors) of a ``.sig`` manifest, and its config."""

    layers: tuple[Descriptor, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    manifest_digest: str | None = None


def fetch_signature_image(client: RegistryClient, repo: str, digest: str,
                          suffix: str = "sig") -> SignatureImage | None:
    """The signatures (or ``suffix="att"``: attestations) stored for ``repo@digest``,
    or None when there are none."""
    tag = signature_tag(digest, suffix)
    try:
        blob = client.get_manifest(repo, tag)
    except RegistryError as e:
        if e.status == 404 or "MANIFEST_UNKNOWN" in e.codes or "NAME_UNKNOWN" in e.codes:
            return None
        raise
    body = blob.json()
    if blob.is_index:
        raise SupplyChainError(f"{repo}:{tag} is an index, not a signature manifest")
    try:
        layers = tuple(Descriptor.from_json(d) for d in body.get("layers") or [])
        config_desc = Descriptor.from_json(body["config"])
    except (KeyError, TypeError, ImageError) as e:
        raise SupplyChainError(f"{repo}:{tag}: malformed signature manifest: {e}") from e
    config: dict[str, Any] = {}
    try:
        config = json.loads(read_blob(client, repo, config_desc))
    except (ValueError, SupplyChainError, RegistryError):
        config = {}
    return SignatureImage(layers, config if isinstance(config, dict) else {}, blob.digest)


def read_blob(client: RegistryClient, repo: str, desc: Descriptor,
              limit: int = MAX_PAYLOAD_BYTES) -> bytes:
    """A small blob, verified against its descriptor by the client."""
    if desc.size > limit:
        raise SupplyChainError(f"blob {desc.digest} is {desc.size} bytes; a signature "
                               f"payload is at most {limit}")
    with tempfile.TemporaryDirectory(prefix="ocibuild-sig-") as tmp:
        path = client.fetch_blob(repo, desc, Path(tmp) / "blob")
        return path.read_bytes()


def _created() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
            and epoch.isdigit() else datetime.datetime.now(datetime.timezone.utc))
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def append_signature(client: RegistryClient, repo: str, digest: str, payload_desc: Descriptor,
                     payload: bytes, suffix: str = "sig",
                     signed_by_us: Callable[[str], bool] | None = None) -> tuple[str, bool]:
    """Add one signed payload layer to ``repo:sha256-<hex>.sig`` (or ``.<suffix>``).

    Returns the new signature manifest's digest and whether a layer was added
    (False when the same payload was already there with the same signature, or,
    as cosign does, with a signature ``signed_by_us`` accepts: signing twice with
    one key adds nothing).
    """
    existing = fetch_signature_image(client, repo, digest, suffix) or SignatureImage()
    sig = payload_desc.annotations.get(SIGNATURE_ANNOTATION)
    for layer in existing.layers:
        theirs = layer.annotations.get(SIGNATURE_ANNOTATION)
        if layer.digest == payload_desc.digest and (theirs == sig or (
                theirs is not None and signed_by_us is not None and signed_by_us(theirs))):
            assert existing.manifest_digest is not None
            return existing.manifest_digest, False
    if client.blob_size(repo, payload_desc.digest) is None:
        client.upload_blob(repo, payload_desc, lambda: io.BytesIO(payload))
    layers = existing.layers + (payload_desc,)
    config = {
        "architecture": "",
        "created": existing.config.get("created") or _created(),
        "os": "",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [d.digest for d in layers]},
    }
    config_bytes = canonical_json(config)
    config_desc = Descriptor(MediaType.OCI_CONFIG.value, sha256_digest(config_bytes),
                             len(config_bytes))
    if client.blob_size(repo, config_desc.digest) is None:
        client.upload_blob(repo, config_desc, lambda: io.BytesIO(config_bytes))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_MANIFEST.value,
        "config": config_desc.to_json(),
        "layers": [d.to_json() for d in layers],
    }
    data = canonical_json(manifest)
    got = client.put_manifest(repo, signature_tag(digest, suffix), data,
                              MediaType.OCI_MANIFEST.value)
    return got, True
