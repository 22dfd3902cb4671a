"""in-toto statements in DSSE envelopes, as ``cosign attest`` writes them.

The statement (in-toto Statement v0.1, what cosign's ``GenerateStatement`` makes)::

    {"_type":"https://in-toto.io/Statement/v0.1",
     "predicateType":"https://spdx.dev/Document",
     "subject":[{"name":"REGISTRY/REPO","digest":{"sha256":"<hex>"}}],
     "predicate":{…}}

is serialized to JSON and wrapped in a DSSE envelope::

    {"payloadType":"application/vnd.in-toto+json","payload":"<base64 statement>",
     "signatures":[{"keyid":"","sig":"<base64 DER ECDSA signature>"}]}

where each signature is over DSSE's pre-authentication encoding
``PAE(type, body) = "DSSEv1" SP len(type) SP type SP len(body) SP body``
(lengths in bytes, as ASCII decimals), never over the payload alone.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import InputError, SupplyChainError
from .keys import sign_bytes, verify_bytes

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v0.1"
STATEMENT_TYPES = (STATEMENT_TYPE, "https://in-toto.io/Statement/v1")
SPDX_PREDICATE = "https://spdx.dev/Document"
CYCLONEDX_PREDICATE = "https://cyclonedx.org/bom"
CUSTOM_PREDICATE = "https://cosign.sigstore.dev/attestation/v1"
PREDICATE_TYPES = {
    "spdx": SPDX_PREDICATE,
    "spdxjson": SPDX_PREDICATE,
    "cyclonedx": CYCLONEDX_PREDICATE,
    "custom": CUSTOM_PREDICATE,
    "slsaprovenance": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance1": "https://slsa.dev/provenance/v1",
    "link": "https://in-toto.io/Link/v1",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
}
"""cosign's ``--type`` names (``options.PredicateTypeMap``) → predicate type URIs."""


def predicate_type_uri(name: str) -> str:
    """``spdxjson`` → ``https://spdx.dev/Document``; a URI is taken as it is."""
    if name in PREDICATE_TYPES:
        return PREDICATE_TYPES[name]
    parts = urlsplit(name)
    if parts.scheme and (parts.netloc or parts.path.startswith("/")):
        return name
    raise InputError(f"predicate type {name!r}: expected one of "
                     f"{', '.join(sorted(PREDICATE_TYPES))} or a URI")


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the bytes that are actually signed."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def _go_json(value: Any) -> bytes:
    """JSON as Go's ``json.Marshal`` writes it: compact, ``<>&`` escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace(
        "&", "\\u0026").encode("utf-8")


def make_predicate(data: bytes, name: str, now: float | None = None) -> Any:
    """The predicate for cosign's ``--type NAME``: parsed JSON, or for ``spdx`` (tag-value)
    the text, or for ``custom`` cosign's ``{"Data": …, "Timestamp": …}`` wrapper."""
    if name == "spdx":
        return data.decode("utf-8", "replace")
    if name == "custom":
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {"Data": data.decode("utf-8", "replace"), "Timestamp": stamp}
    try:
        return json.loads(data)
    except ValueError as e:
        raise InputError(f"predicate for type {name}: not valid JSON: {e}") from e


def make_statement(subject_name: str, digest: str, predicate_type: str,
                   predicate: Any) -> bytes:
    """The in-toto statement bytes binding ``predicate`` to ``subject_name@digest``."""
    algorithm, _, hex_ = digest.partition(":")
    if algorithm != "sha256" or len(hex_) != 64:
        raise InputError(f"attestation subject {digest!r}: expected a sha256 digest")
    return _go_json({
        "_type": STATEMENT_TYPE,
        "predicateType": predicate_type,
        "subject": [{"name": subject_name, "digest": {"sha256": hex_}}],
        "predicate": predicate,
    })


def sign_envelope(key: ec.EllipticCurvePrivateKey, body: bytes,
                  payload_type: str = INTOTO_PAYLOAD_TYPE) -> bytes:
    """A DSSE envelope around ``body`` with one signature over its PAE."""
    signature = sign_bytes(key, pae(payload_type, body))
    return _go_json({
        "payloadType": payload_type,
        "payload": base64.b64encode(body).decode("ascii"),
        "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode("ascii")}],
    })


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    body: bytes
    signatures: tuple[bytes, ...]


def _b64(text: Any, what: str) -> bytes:
    """Standard or URL-safe base64, as DSSE allows either."""
    if not isinstance(text, str):
        raise SupplyChainError(f"malformed DSSE envelope: {what} is not a string")
    try:
        padded = text + "=" * (-len(text) % 4)
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (ValueError, binascii.Error) as e:
        raise SupplyChainError(f"malformed DSSE envelope: {what} is not base64") from e


def parse_envelope(data: bytes) -> Envelope:
    try:
        body = json.loads(data)
        kind, payload, sigs = body["payloadType"], body["payload"], body["signatures"]
    except (ValueError, KeyError, TypeError) as e:
        raise SupplyChainError(f"malformed DSSE envelope: {e}") from e
    if not isinstance(kind, str) or not isinstance(sigs, list):
        raise SupplyChainError("malformed DSSE envelope: payloadType or signatures")
    signatures = tuple(_b64(s.get("sig") if isinstance(s, dict) else None, "a sig")
                       for s in sigs)
    return Envelope(kind, _b64(payload, "the payload"), signatures)


def envelope_verifies(envelope: Envelope, key: ec.EllipticCurvePublicKey) -> bool:
    """Does any of the envelope's signatures verify over PAE(type, body) with ``key``?"""
    signed = pae(envelope.payload_type, envelope.body)
    return any(verify_bytes(key, sig, signed) for sig in envelope.signatures)


@dataclass(frozen=True)
class Statement:
    predicate_type: str
    subject_digests: tuple[str, ...]
    """``sha256:<hex>`` of every subject."""
    raw: dict[str, Any]


def parse_statement(body: bytes) -> Statement:
    try:
        statement = json.loads(body)
        kind, predicate_type = statement["_type"], statement["predicateType"]
        subjects = statement["subject"]
        digests = tuple(f"sha256:{s['digest']['sha256']}" for s in subjects
                        if "sha256" in (s.get("digest") or {}))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SupplyChainError(f"malformed in-toto statement: {e}") from e
    if kind not in STATEMENT_TYPES:
        raise SupplyChainError(f"statement is of unknown type {kind!r}")
    if not isinstance(predicate_type, str):
        raise SupplyChainError("malformed in-toto statement: predicateType is not a string")
    return Statement(predicate_type, digests, statement)
