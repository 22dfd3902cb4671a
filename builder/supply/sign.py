"""``ocibuild sign REF --key cosign.key``: cosign-compatible image signatures.

A reference by tag is first resolved to the manifest digest it names now;
the digest is what gets signed. The simple-signing payload is signed with
ECDSA-P256/SHA-256 and appended to ``REPO:sha256-<hex>.sig``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import InputError
from ..oci.types import Descriptor, sha256_digest
from ..registry.client import RegistryClient
from ..registry.push import ClientPool
from ..registry.reference import Reference, parse_reference
from .keys import (PasswordSource, cosign_password, load_private_key, read_key_file, sign_bytes,
                   verify_bytes)
from .simplesigning import (SIGNATURE_ANNOTATION, SIMPLESIGNING_MEDIA_TYPE, docker_reference,
                            make_payload, signature_tag)
from .store import append_signature


@dataclass(frozen=True)
class SignResult:
    reference: str
    """``REGISTRY/REPO@sha256:…``: what was signed."""
    digest: str
    signature_ref: str
    """``REGISTRY/REPO:sha256-<hex>.sig``."""
    signature_manifest: str
    payload_digest: str
    added: bool
    manifests: tuple["SignResult", ...] = ()
    """For an image index: the signature of each of its manifests."""

    def to_json(self) -> dict[str, Any]:
        out = {"reference": self.reference, "digest": self.digest,
               "signature": self.signature_ref, "signature_manifest": self.signature_manifest,
               "payload_digest": self.payload_digest, "added": self.added}
        if self.manifests:
            out["manifests"] = [m.to_json() for m in self.manifests]
        return out


def parse_annotations(pairs: list[str] | None) -> dict[str, str]:
    """``["k=v", …]`` (the ``-a`` flags) → a dict; a pair without ``=`` is an error."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"annotation {pair!r}: expected key=value")
        out[key] = value
    return out


def load_signing_key(key_path: Path | str,
                     password: PasswordSource = cosign_password) -> ec.EllipticCurvePrivateKey:
    return load_private_key(read_key_file(key_path, "key"), password, f"key {key_path}")


def resolve(ref: str | Reference, pool: ClientPool) -> tuple[Reference, RegistryClient, str]:
    """``ref``, its registry's client, and the manifest digest ``ref`` names now (a
    reference by digest must get that digest back)."""
    reference = ref if isinstance(ref, Reference) else parse_reference(ref)
    client = pool.get(reference.registry)
    digest = client.resolve(reference.repository, reference.identifier)
    if reference.digest and digest != reference.digest:
        raise InputError(f"{reference}: the registry serves {digest} for this digest")
    return reference, client, digest


def sign(ref: str, key_path: Path | str, *, annotations: Mapping[str, str] | None = None,
         password: PasswordSource = cosign_password, insecure: bool = False,
         pool: ClientPool | None = None) -> SignResult:
    """Sign the image ``ref`` names (resolved to its digest) and push the signature."""
    key = load_signing_key(key_path, password)
    return sign_with_key(ref, key, annotations=annotations, insecure=insecure, pool=pool)


def index_manifests(client: RegistryClient, repo: str, digest: str, *,
                    images_only: bool = False) -> list[str]:
    """The manifest digests of the index ``repo@digest`` (none if it is an image);
    ``images_only``: without the entries for no platform (``unknown/unknown``: the
    attestation manifests buildx adds), which hold no image to describe."""
    top = client.get_manifest(repo, digest)
    if not top.is_index:
        return []
    listed = [m for m in top.json().get("manifests") or [] if isinstance(m, dict)]
    if images_only:
        listed = [m for m in listed
                  if (m.get("platform") or {}).get("os") != "unknown"]  # type: ignore[union-attr]
    return [Descriptor.from_json(m).digest for m in listed]


def sign_with_key(ref: str | Reference, key: ec.EllipticCurvePrivateKey, *,
                  annotations: Mapping[str, str] | None = None, insecure: bool = False,
                  pool: ClientPool | None = None) -> SignResult:
    """Sign what ``ref`` names; an image index and, as ``cosign sign --recursive``
    does, each manifest it lists."""
    reference, client, digest = resolve(ref, pool or ClientPool(insecure=insecure))
    children = tuple(_sign_digest(reference, client, child, key, annotations)
                     for child in index_manifests(client, reference.repository, digest))
    return replace(_sign_digest(reference, client, digest, key, annotations),
                   manifests=children)


def _sign_digest(reference: Reference, client: RegistryClient, digest: str,
                 key: ec.EllipticCurvePrivateKey,
                 annotations: Mapping[str, str] | None) -> SignResult:
    repo = reference.repository
    payload = make_payload(docker_reference(reference), digest, dict(annotations or {}))
    signature = base64.b64encode(sign_bytes(key, payload)).decode("ascii")
    desc = Descriptor(SIMPLESIGNING_MEDIA_TYPE, sha256_digest(payload), len(payload),
                      {SIGNATURE_ANNOTATION: signature})
    public = key.public_key()

    def signed_by_us(existing: str) -> bool:
        try:
            return verify_bytes(public, base64.b64decode(existing, validate=True), payload)
        except ValueError:
            return False

    manifest_digest, added = append_signature(client, repo, digest, desc, payload,
                                              signed_by_us=signed_by_us)
    pinned = reference.with_digest(digest)
    return SignResult(str(pinned), digest, f"{reference.name}:{signature_tag(digest)}",
                      manifest_digest, desc.digest, added)
