"""cosign's signature objects: the simple-signing payload and the ``.sig`` image.

The payload (sigstore ``pkg/signature/payload``, after containers-signature(5))::

    {"critical":{"identity":{"docker-reference":"REGISTRY/REPO"},
                 "image":{"docker-manifest-digest":"sha256:…"},
                 "type":"cosign container image signature"},
     "optional":{…} | null}

Signatures of ``REPO@sha256:<hex>`` live in the same repository under the tag
``sha256-<hex>.sig``: an OCI image manifest whose layers are payloads of media
type ``application/vnd.dev.cosign.simplesigning.v1+json``, each carrying its
base64 DER ECDSA signature in the ``dev.cosignproject.cosign/signature``
annotation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import SupplyChainError
from ..oci.types import check_digest
from ..registry.reference import DEFAULT_REGISTRY, Reference

SIMPLESIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
SIGNATURE_TYPE = "cosign container image signature"
_HUB_IDENTITY = "index.docker.io"
"""go-containerregistry names Docker Hub's registry so in ``Repository.Name()``."""


def signature_tag(digest: str, suffix: str = "sig") -> str:
    """``sha256:<hex>`` → ``sha256-<hex>.sig`` (cosign's tag scheme; ``.att`` for
    attestations)."""
    algorithm, _, hex_ = check_digest(digest, "image digest").partition(":")
    return f"{algorithm}-{hex_}.{suffix}"


def docker_reference(ref: Reference) -> str:
    """The identity cosign writes: the repository's full name, as ggcr spells it."""
    registry = _HUB_IDENTITY if ref.registry == DEFAULT_REGISTRY else ref.registry
    return f"{registry}/{ref.repository}"


def same_repository(identity: str, ref: Reference) -> bool:
    """Does a payload's ``docker-reference`` name ``ref``'s repository?"""
    name = identity.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:  # a tag in the identity does not change the repository
        name = name.rsplit(":", 1)[0]
    accepted = {docker_reference(ref), ref.name}
    if ref.registry == DEFAULT_REGISTRY:
        accepted |= {f"docker.io/{ref.repository}", ref.repository}
        if ref.repository.startswith("library/"):
            accepted.add(ref.repository[len("library/"):])
    return name in accepted


def make_payload(identity: str, digest: str, optional: dict[str, Any] | None = None) -> bytes:
    """The payload bytes, laid out exactly as Go's ``json.Marshal`` lays out cosign's."""
    body = {
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": check_digest(digest, "image digest")},
            "type": SIGNATURE_TYPE,
        },
        "optional": dict(sorted(optional.items())) if optional else None,
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Payload:
    identity: str
    digest: str
    optional: dict[str, Any]
    raw: dict[str, Any]


def parse_payload(data: bytes) -> Payload:
    """Read a simple-signing payload; raise :class:`SupplyChainError` when malformed."""
    try:
        body = json.loads(data)
        critical = body["critical"]
        kind = critical["type"]
        identity = critical["identity"]["docker-reference"]
        digest = critical["image"]["docker-manifest-digest"]
    except (ValueError, KeyError, TypeError) as e:
        raise SupplyChainError(f"malformed simple-signing payload: {e}") from e
    if kind != SIGNATURE_TYPE:
        raise SupplyChainError(f"payload is of unknown type {kind!r}")
    if not isinstance(identity, str) or not isinstance(digest, str):
        raise SupplyChainError("malformed simple-signing payload: identity and digest "
                               "must be strings")
    optional = body.get("optional") or {}
    if not isinstance(optional, dict):
        raise SupplyChainError("malformed simple-signing payload: optional is not an object")
    return Payload(identity, digest, optional, body)
