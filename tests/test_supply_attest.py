"""Attest and verify attestations against a real docker-registry, checked independently.

The independent check reads ``sha256-<hex>.att`` over plain HTTP with ``requests``,
decodes the DSSE envelope, rebuilds DSSE's pre-authentication encoding here (not
with ocibuild's code) and asks ``openssl dgst -verify`` about the signature.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from builder.oci.types import Descriptor
from builder.registry.client import RegistryClient
from builder.registry.push import push_image
from builder.supply.attest import verify_attestations
from helpers import cli
from registry_fixtures import make_image
from test_supply_sign import fetch_blob, keys, openssl_verify, registry  # noqa: F401

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
INTOTO = "application/vnd.in-toto+json"
SPDX_URI = "https://spdx.dev/Document"
CDX_URI = "https://cyclonedx.org/bom"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OCIBUILD_CACHE", str(tmp_path / "cache"))


def att_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".att"


def fetch_att_manifest(host: str, repo: str, digest: str) -> dict:
    resp = requests.get(f"http://{host}/v2/{repo}/manifests/{att_tag(digest)}",
                        headers={"Accept": OCI_MANIFEST}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 PAE, written from the spec for the test."""
    t = payload_type.encode()
    return b"DSSEv1 " + str(len(t)).encode() + b" " + t + b" " + str(len(body)).encode() \
        + b" " + body


def push(registry, tmp_path: Path, ref: str, tag: str = "a") -> str:
    return push_image(make_image(tmp_path / tag, tag=tag), [f"{registry.host}/{ref}"])


def sbom_of(ref: str, fmt: str, out: Path, capsys) -> Path:
    code, _, err = cli("sbom", ref, "--format", fmt, "-o", out, capsys=capsys)
    assert code == 0, err
    return out


def test_attested_sbom_is_cosign_format_and_openssl_verifies_it(registry, tmp_path, keys,
                                                                capsys):
    key, pub = keys
    ref = f"{registry.host}/att/iris:1.0.0"
    digest = push(registry, tmp_path, "att/iris:1.0.0")
    sbom = sbom_of(ref, "spdx-json", tmp_path / "iris.spdx.json", capsys)

    code, out, err = cli("attest", ref, "--key", key, "--predicate", sbom, "--type",
                         "spdxjson", capsys=capsys)
    assert code == 0, err
    assert out.strip() == f"{registry.host}/att/iris:{att_tag(digest)}"

    manifest = fetch_att_manifest(registry.host, "att/iris", digest)
    assert manifest["mediaType"] == OCI_MANIFEST
    [layer] = manifest["layers"]
    assert layer["mediaType"] == DSSE
    assert layer["annotations"] == {"predicateType": SPDX_URI,
                                    "dev.cosignproject.cosign/signature": ""}
    envelope = json.loads(fetch_blob(registry.host, "att/iris", layer["digest"]))
    assert envelope["payloadType"] == INTOTO
    body = base64.b64decode(envelope["payload"])
    [signature] = envelope["signatures"]
    sig = base64.b64decode(signature["sig"])

    done = openssl_verify(pub, sig, pae(INTOTO, body), tmp_path)
    assert done.returncode == 0 and "Verified OK" in done.stdout, done.stderr
    # the signature is over the PAE, not over the bare statement
    assert openssl_verify(pub, sig, body, tmp_path).returncode != 0

    statement = json.loads(body)
    assert statement["_type"] == "https://in-toto.io/Statement/v0.1"
    assert statement["predicateType"] == SPDX_URI
    assert statement["subject"] == [{"name": f"{registry.host}/att/iris",
                                     "digest": {"sha256": digest.split(":", 1)[1]}}]
    assert statement["predicate"] == json.loads(sbom.read_bytes())
    assert statement["predicate"]["spdxVersion"] == "SPDX-2.3"

    code, out, err = cli("verify-attestation", ref, "--key", pub, "--type", "spdxjson",
                         "--json", capsys=capsys)
    assert code == 0, err
    assert json.loads(out) == [statement]


def test_attestations_are_appended_and_filtered_by_type(registry, tmp_path, keys, capsys):
    key, pub = keys
    ref = f"{registry.host}/att/multi:1"
    digest = push(registry, tmp_path, "att/multi:1")
    spdx = sbom_of(ref, "spdx-json", tmp_path / "a.spdx.json", capsys)
    cdx = sbom_of(ref, "cyclonedx-json", tmp_path / "a.cdx.json", capsys)
    assert cli("attest", ref, "--key", key, "--predicate", spdx, "--type", "spdxjson",
               capsys=capsys)[0] == 0
    assert cli("attest", ref, "--key", key, "--predicate", cdx, "--type", "cyclonedx",
               capsys=capsys)[0] == 0
    layers = fetch_att_manifest(registry.host, "att/multi", digest)["layers"]
    assert [la["annotations"]["predicateType"] for la in layers] == [SPDX_URI, CDX_URI]

    assert len(verify_attestations(ref, pub).statements) == 2
    [only] = verify_attestations(ref, pub, CDX_URI).statements
    assert only["predicate"]["bomFormat"] == "CycloneDX"
    code, _, err = cli("verify-attestation", ref, "--key", pub, "--type", "link",
                       capsys=capsys)
    assert code == 1 and "not https://in-toto.io/Link/v1" in err
    # a bad --type is a usage error before anything is fetched
    code, _, err = cli("attest", ref, "--key", key, "--predicate", spdx, "--type", "nope",
                       capsys=capsys)
    assert code == 1 and "predicate type 'nope'" in err


def test_verify_attestation_fails_with_the_wrong_key(registry, tmp_path, keys, capsys):
    key, _ = keys
    ref = f"{registry.host}/att/wrongkey:1"
    push(registry, tmp_path, "att/wrongkey:1")
    (tmp_path / "p.json").write_text('{"ok": true}')
    assert cli("attest", ref, "--key", key, "--predicate", tmp_path / "p.json", "--type",
               "https://example.com/ok/v1", capsys=capsys)[0] == 0
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "other.pub").write_bytes(other)
    code, out, err = cli("verify-attestation", ref, "--key", tmp_path / "other.pub",
                         capsys=capsys)
    assert code == 1 and out == ""
    assert "no valid attestation" in err and "no signature matches the key" in err


def test_verify_attestation_fails_on_a_tampered_envelope(registry, tmp_path, keys, capsys):
    key, pub = keys
    ref = f"{registry.host}/att/tamper:1"
    digest = push(registry, tmp_path, "att/tamper:1")
    sbom = sbom_of(ref, "spdx-json", tmp_path / "t.spdx.json", capsys)
    assert cli("attest", ref, "--key", key, "--predicate", sbom, "--type", "spdxjson",
               capsys=capsys)[0] == 0
    manifest = fetch_att_manifest(registry.host, "att/tamper", digest)
    layer = manifest["layers"][0]
    envelope = json.loads(fetch_blob(registry.host, "att/tamper", layer["digest"]))
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["packages"] = []  # hide every package, keep the old signature
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    forged = json.dumps(envelope).encode()
    desc = Descriptor(DSSE, "sha256:" + hashlib.sha256(forged).hexdigest(), len(forged),
                      layer["annotations"])
    client = RegistryClient.for_registry(registry.host)
    client.upload_blob("att/tamper", desc, lambda: io.BytesIO(forged))
    manifest["layers"] = [desc.to_json()]
    client.put_manifest("att/tamper", att_tag(digest), json.dumps(manifest).encode(),
                        OCI_MANIFEST)

    code, _, err = cli("verify-attestation", ref, "--key", pub, capsys=capsys)
    assert code == 1 and "no signature matches the key" in err


def test_verify_attestation_fails_after_the_tag_is_repointed(registry, tmp_path, keys,
                                                            capsys):
    key, pub = keys
    ref = f"{registry.host}/att/moving:stable"
    first = push(registry, tmp_path, "att/moving:stable", "a")
    (tmp_path / "p.json").write_text('{"reviewed": true}')
    assert cli("attest", ref, "--key", key, "--predicate", tmp_path / "p.json", "--type",
               "https://example.com/review/v1", capsys=capsys)[0] == 0
    assert cli("verify-attestation", ref, "--key", pub, capsys=capsys)[0] == 0

    second = push(registry, tmp_path, "att/moving:stable", "b")
    code, _, err = cli("verify-attestation", ref, "--key", pub, capsys=capsys)
    assert code == 1 and "no attestations found" in err and second in err

    # copying the old attestations over to the new digest does not help
    old = fetch_att_manifest(registry.host, "att/moving", first)
    RegistryClient.for_registry(registry.host).put_manifest(
        "att/moving", att_tag(second), json.dumps(old).encode(), OCI_MANIFEST)
    code, _, err = cli("verify-attestation", ref, "--key", pub, capsys=capsys)
    assert code == 1 and f"attests {first}, not {second}" in err
    # the first image, by digest, still verifies
    assert verify_attestations(f"{registry.host}/att/moving@{first}", pub).digest == first


def test_sign_attach_sbom_signs_and_attests(registry, tmp_path, keys, capsys):
    key, pub = keys
    ref = f"{registry.host}/att/signed:1"
    digest = push(registry, tmp_path, "att/signed:1")
    code, out, err = cli("sign", ref, "--key", key, "--attach-sbom", "cyclonedx-json",
                         "--json", capsys=capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["signature"]["digest"] == result["attestation"]["digest"] == digest
    assert result["attestation"]["predicateType"] == CDX_URI
    assert cli("verify", ref, "--key", pub, capsys=capsys)[0] == 0
    code, out, err = cli("verify-attestation", ref, "--key", pub, "--type", "cyclonedx",
                         "--json", capsys=capsys)
    assert code == 0, err
    [statement] = json.loads(out)
    assert statement["predicate"]["bomFormat"] == "CycloneDX"
    assert statement["predicate"]["metadata"]["component"]["purl"].startswith(
        f"pkg:oci/signed@{digest.replace(':', '%3A')}")
    # plain sign still works as before
    code, out, _ = cli("sign", ref, "--key", key, capsys=capsys)
    assert code == 0 and out.strip().endswith(".sig")
