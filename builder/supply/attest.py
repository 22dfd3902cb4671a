"""``ocibuild attest`` / ``verify-attestation``: cosign attestations of an image.

``attest`` resolves a tag to the digest it names now, makes the in-toto
statement (subject = the repository and that digest), signs it in a DSSE
envelope and appends the envelope, as cosign does, as a layer of
``REPO:sha256-<hex>.att`` (media type ``application/vnd.dsse.envelope.v1+json``,
annotations ``predicateType`` and an empty ``dev.cosignproject.cosign/signature``).

``verify_attestations`` accepts an envelope when one of its signatures
verifies with the key over the DSSE PAE, the statement is in-toto and one of
its subjects is the digest the reference resolves to now (as cosign checks:
the subject's digest, not its name), and its predicate type is the one asked
for. At least one must pass; otherwise :class:`SupplyChainError` says why each
was rejected. An image index passes when each of its manifests does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import SupplyChainError
from ..oci.types import Descriptor, sha256_digest
from ..registry.push import ClientPool
from ..registry.reference import Reference
from .dsse import (DSSE_MEDIA_TYPE, INTOTO_PAYLOAD_TYPE, envelope_verifies, make_predicate,
                   make_statement, parse_envelope, parse_statement, predicate_type_uri,
                   sign_envelope)
from .keys import PasswordSource, cosign_password, load_public_key, read_key_file
from .sign import index_manifests, load_signing_key, resolve
from .simplesigning import SIGNATURE_ANNOTATION, docker_reference, signature_tag
from .store import append_signature, fetch_signature_image, read_blob

ATT = "att"
PREDICATE_TYPE_ANNOTATION = "predicateType"
MAX_ENVELOPE_BYTES = 64 << 20
"""An SBOM predicate can be large; an envelope bigger than this is refused."""


@dataclass(frozen=True)
class AttestResult:
    reference: str
    """``REGISTRY/REPO@sha256:…``: the attested image."""
    digest: str
    predicate_type: str
    attestation_ref: str
    """``REGISTRY/REPO:sha256-<hex>.att``."""
    attestation_manifest: str
    envelope_digest: str
    added: bool

    def to_json(self) -> dict[str, Any]:
        return {"reference": self.reference, "digest": self.digest,
                "predicateType": self.predicate_type, "attestation": self.attestation_ref,
                "attestation_manifest": self.attestation_manifest,
                "envelope_digest": self.envelope_digest, "added": self.added}


def attest(ref: str | Reference, predicate: Path | str | bytes, predicate_type: str,
           key: ec.EllipticCurvePrivateKey | Path | str, *,
           password: PasswordSource = cosign_password, insecure: bool = False,
           pool: ClientPool | None = None) -> AttestResult:
    """Attest ``predicate`` (a file or its bytes) of ``predicate_type`` (a cosign ``--type``
    name or a URI) about the image ``ref`` names, signed with ``key`` (a key file or a
    loaded key), and append the envelope to ``sha256-<hex>.att``."""
    uri = predicate_type_uri(predicate_type)
    body = make_predicate(predicate if isinstance(predicate, bytes)
                          else read_key_file(predicate, "predicate"), predicate_type)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        key = load_signing_key(key, password)
    reference, client, digest = resolve(ref, pool or ClientPool(insecure=insecure))
    repo = reference.repository
    statement = make_statement(docker_reference(reference), digest, uri, body)
    envelope = sign_envelope(key, statement)
    desc = Descriptor(DSSE_MEDIA_TYPE, sha256_digest(envelope), len(envelope),
                      {SIGNATURE_ANNOTATION: "", PREDICATE_TYPE_ANNOTATION: uri})
    manifest_digest, added = append_signature(client, repo, digest, desc, envelope, ATT)
    return AttestResult(str(reference.with_digest(digest)), digest, uri,
                        f"{reference.name}:{signature_tag(digest, ATT)}", manifest_digest,
                        desc.digest, added)


@dataclass(frozen=True)
class AttestationsResult:
    reference: str
    digest: str
    statements: tuple[dict[str, Any], ...]
    rejected: tuple[str, ...]

    def to_json(self) -> list[dict[str, Any]]:
        """What ``--json`` prints: the verified in-toto statements."""
        return list(self.statements)


def verify_attestations(ref: str, key: ec.EllipticCurvePublicKey | Path | str,
                        predicate_type: str | None = None, *, insecure: bool = False,
                        pool: ClientPool | None = None) -> AttestationsResult:
    """The statements about what ``ref`` names now that ``key`` signed (of one type if
    ``predicate_type`` is given); :class:`SupplyChainError` when there are none.

    For an image index: the index's own statements, if any, then each manifest's;
    every manifest must have one (an SBOM describes one platform's image, so
    ``sign --attach-sbom`` attests each manifest of an index)."""
    if not isinstance(key, ec.EllipticCurvePublicKey):
        key = load_public_key(read_key_file(key, "key"), f"key {key}")
    wanted = predicate_type_uri(predicate_type) if predicate_type else None
    reference, client, digest = resolve(ref, pool or ClientPool(insecure=insecure))
    children = index_manifests(client, reference.repository, digest, images_only=True)
    statements: list[dict[str, Any]] = []
    rejected: list[str] = []
    if children:
        try:
            statements, rejected = _verified(client, reference, digest, key, wanted)
        except SupplyChainError:
            pass  # an index need not be attested itself
    for child in children:
        try:
            more, why = _verified(client, reference, child, key, wanted)
        except SupplyChainError as e:
            raise SupplyChainError(f"{reference.name}@{digest} is an image index, and its "
                                   f"manifest {child}: {e}") from None
        statements += more
        rejected += why
    if not children:
        statements, rejected = _verified(client, reference, digest, key, wanted)
    return AttestationsResult(str(reference.with_digest(digest)), digest, tuple(statements),
                              tuple(rejected))


def _verified(client: Any, reference: Reference, digest: str,
              key: ec.EllipticCurvePublicKey, wanted: str | None,
              ) -> tuple[list[dict[str, Any]], list[str]]:
    """The valid statements about ``digest`` and why the others were rejected;
    :class:`SupplyChainError` when none is valid."""
    repo = reference.repository
    atts = fetch_signature_image(client, repo, digest, ATT)
    where = f"{reference.name}@{digest}"
    if atts is None or not atts.layers:
        raise SupplyChainError(f"{where}: no attestations found "
                               f"(no {reference.name}:{signature_tag(digest, ATT)})")
    statements: list[dict[str, Any]] = []
    rejected: list[str] = []
    for index, desc in enumerate(atts.layers):
        label = f"attestation {index + 1} ({desc.digest[:19]}…)"
        try:
            statements.append(_check(client, repo, desc, key, digest, wanted))
        except SupplyChainError as e:
            rejected.append(f"{label}: {e}")
    if not statements:
        raise SupplyChainError(f"{where}: no valid attestation: " + "; ".join(rejected))
    return statements, rejected


def _check(client: Any, repo: str, desc: Descriptor, key: ec.EllipticCurvePublicKey,
           digest: str, wanted: str | None) -> dict[str, Any]:
    """One ``.att`` layer's statement, or :class:`SupplyChainError` saying what is wrong."""
    if str(desc.media_type) != DSSE_MEDIA_TYPE:
        raise SupplyChainError(f"media type {desc.media_type} is not a DSSE envelope")
    envelope = parse_envelope(read_blob(client, repo, desc, MAX_ENVELOPE_BYTES))
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
        raise SupplyChainError(f"payload type {envelope.payload_type!r} is not in-toto")
    if not envelope_verifies(envelope, key):
        raise SupplyChainError("no signature matches the key and the envelope's payload")
    statement = parse_statement(envelope.body)
    if digest not in statement.subject_digests:
        claimed = ", ".join(statement.subject_digests) or "no sha256 subject"
        raise SupplyChainError(f"attests {claimed}, not {digest}")
    if wanted and statement.predicate_type != wanted:
        raise SupplyChainError(f"predicate type {statement.predicate_type}, not {wanted}")
    return statement.raw
