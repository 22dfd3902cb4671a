"""``ocibuild verify REF --key cosign.pub``: check cosign signatures of an image.

``REF`` is resolved to the digest it names now; the signatures stored under
``sha256-<hex>.sig`` are each checked for (1) a valid ECDSA signature by the
key over the payload's exact bytes, (2) a payload digest equal to the
resolved digest, and (3) the ``optional`` annotations asked for. These are
cosign's claims: an image promoted with its ``.sig`` tag to another registry
or repository (``skopeo copy``, ``crane copy``) still verifies. With
``check_reference`` the payload's ``docker-reference`` must also name the
repository verified (the stricter containers-policy check). At least one
signature must pass every check; otherwise :class:`SupplyChainError` says why
each one failed.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import SupplyChainError
from ..registry.push import ClientPool
from .keys import load_public_key, read_key_file, verify_bytes
from .sign import index_manifests, resolve
from .simplesigning import (SIGNATURE_ANNOTATION, SIMPLESIGNING_MEDIA_TYPE, parse_payload,
                            same_repository, signature_tag)
from .store import fetch_signature_image, read_blob


@dataclass(frozen=True)
class Verified:
    payload_digest: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class VerifyResult:
    reference: str
    digest: str
    verified: tuple[Verified, ...]
    rejected: tuple[str, ...]
    manifests: tuple["VerifyResult", ...] = ()
    """For an image index: the result for each of its manifests."""

    def to_json(self) -> list[dict[str, Any]]:
        """What ``--json`` prints: the verified payloads, as cosign prints them (an
        index's first, then its manifests')."""
        return [v.payload for r in (self, *self.manifests) for v in r.verified]


def verify(ref: str, key_path: Path | str, *, annotations: Mapping[str, str] | None = None,
           check_reference: bool = False, insecure: bool = False,
           pool: ClientPool | None = None) -> VerifyResult:
    key = load_public_key(read_key_file(key_path, "key"), f"key {key_path}")
    return verify_with_key(ref, key, annotations=annotations, check_reference=check_reference,
                           insecure=insecure, pool=pool)


def verify_with_key(ref: str, key: ec.EllipticCurvePublicKey, *,
                    annotations: Mapping[str, str] | None = None,
                    check_reference: bool = False, insecure: bool = False,
                    pool: ClientPool | None = None) -> VerifyResult:
    """Verify what ``ref`` names; for an image index, the index and each manifest it
    lists must carry a valid signature (what ``sign`` writes for an index)."""
    reference, client, digest = resolve(ref, pool or ClientPool(insecure=insecure))
    top = _verify_digest(reference, client, digest, key, annotations, check_reference)
    children = []
    for child in index_manifests(client, reference.repository, digest):
        try:
            children.append(_verify_digest(reference, client, child, key, annotations,
                                           check_reference))
        except SupplyChainError as e:
            raise SupplyChainError(f"{reference.name}@{digest} is an image index, and its "
                                   f"manifest {e}") from e
    return replace(top, manifests=tuple(children))


def _verify_digest(reference: Any, client: Any, digest: str, key: ec.EllipticCurvePublicKey,
                   annotations: Mapping[str, str] | None,
                   check_reference: bool) -> VerifyResult:
    repo = reference.repository
    sigs = fetch_signature_image(client, repo, digest)
    where = f"{reference.name}@{digest}"
    if sigs is None or not sigs.layers:
        raise SupplyChainError(f"{where}: no signatures found "
                               f"(no {reference.name}:{signature_tag(digest)})")
    verified: list[Verified] = []
    rejected: list[str] = []
    for index, desc in enumerate(sigs.layers):
        label = f"signature {index + 1} ({desc.digest[:19]}…)"
        if str(desc.media_type) != SIMPLESIGNING_MEDIA_TYPE:
            rejected.append(f"{label}: media type {desc.media_type} is not a simple-signing "
                            "payload")
            continue
        encoded = desc.annotations.get(SIGNATURE_ANNOTATION)
        if not encoded:
            rejected.append(f"{label}: no {SIGNATURE_ANNOTATION} annotation")
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            rejected.append(f"{label}: the signature annotation is not base64")
            continue
        payload = read_blob(client, repo, desc)
        if not verify_bytes(key, signature, payload):
            rejected.append(f"{label}: the signature does not match the key and payload")
            continue
        try:
            parsed = parse_payload(payload)
        except SupplyChainError as e:
            rejected.append(f"{label}: {e}")
            continue
        if parsed.digest != digest:
            rejected.append(f"{label}: signs {parsed.digest}, but {reference} is {digest}")
            continue
        if check_reference and not same_repository(parsed.identity, reference):
            rejected.append(f"{label}: signed for {parsed.identity}, not {reference.name} "
                            "(--check-reference)")
            continue
        missing = {k: v for k, v in (annotations or {}).items()
                   if str(parsed.optional.get(k)) != v}
        if missing:
            rejected.append(f"{label}: annotations do not match: "
                            + ", ".join(f"{k}={v}" for k, v in sorted(missing.items())))
            continue
        verified.append(Verified(desc.digest, parsed.raw))
    if not verified:
        raise SupplyChainError(f"{where}: no valid signature: " + "; ".join(rejected))
    return VerifyResult(str(reference.with_digest(digest)), digest, tuple(verified),
                        tuple(rejected))
