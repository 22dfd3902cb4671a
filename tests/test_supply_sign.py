"""Sign and verify against a real docker-registry; signatures checked independently.

The independent check reads the registry over plain HTTP with ``requests``,
decodes cosign's signature annotation to DER and asks ``openssl dgst -verify``.
Keys are made in cosign's format by the test itself (test_supply_keys).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from builder.oci.types import Descriptor
from builder.registry.client import RegistryClient
from builder.registry.push import push_image
from builder.supply.verify import verify
from helpers import cli, write
from registry_fixtures import make_image, skopeo, start_registry
from test_supply_keys import cosign_style_key

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
ANNOTATION = "dev.cosignproject.cosign/signature"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture
def keys(tmp_path, monkeypatch) -> tuple[Path, Path]:
    private, public, _ = cosign_style_key(b"s3cret")
    (tmp_path / "cosign.key").write_bytes(private)
    (tmp_path / "cosign.pub").write_bytes(public)
    monkeypatch.setenv("COSIGN_PASSWORD", "s3cret")
    return tmp_path / "cosign.key", tmp_path / "cosign.pub"


def fetch_sig_manifest(host: str, repo: str, digest: str) -> dict:
    tag = digest.replace(":", "-") + ".sig"
    resp = requests.get(f"http://{host}/v2/{repo}/manifests/{tag}",
                        headers={"Accept": OCI_MANIFEST}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def fetch_blob(host: str, repo: str, digest: str) -> bytes:
    resp = requests.get(f"http://{host}/v2/{repo}/blobs/{digest}", timeout=10)
    assert resp.status_code == 200
    assert "sha256:" + hashlib.sha256(resp.content).hexdigest() == digest
    return resp.content


def openssl_verify(pub: Path, signature: bytes, payload: bytes, tmp: Path) -> subprocess.CompletedProcess:
    (tmp / "sig.der").write_bytes(signature)
    (tmp / "payload.json").write_bytes(payload)
    return subprocess.run(["openssl", "dgst", "-sha256", "-verify", pub, "-signature",
                           tmp / "sig.der", tmp / "payload.json"], capture_output=True, text=True)


def test_signature_is_cosign_format_and_openssl_verifies_it(registry, tmp_path, keys, capsys):
    key, pub = keys
    image = make_image(tmp_path / "img")
    digest = push_image(image, [f"{registry.host}/ml/iris:1.0.0"])

    code, out, err = cli("sign", f"{registry.host}/ml/iris:1.0.0", "--key", key,
                         capsys=capsys)
    assert code == 0, err
    assert out.strip() == f"{registry.host}/ml/iris:{digest.replace(':', '-')}.sig"

    manifest = fetch_sig_manifest(registry.host, "ml/iris", digest)
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    [layer] = manifest["layers"]
    assert layer["mediaType"] == SIMPLESIGNING
    payload = fetch_blob(registry.host, "ml/iris", layer["digest"])
    signature = base64.b64decode(layer["annotations"][ANNOTATION])
    done = openssl_verify(pub, signature, payload, tmp_path)
    assert done.returncode == 0 and "Verified OK" in done.stdout, done.stderr

    body = json.loads(payload)
    assert body["critical"] == {
        "identity": {"docker-reference": f"{registry.host}/ml/iris"},
        "image": {"docker-manifest-digest": digest},
        "type": "cosign container image signature"}
    config = json.loads(fetch_blob(registry.host, "ml/iris", manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [layer["digest"]]

    # and openssl refuses the same signature over other bytes
    assert openssl_verify(pub, signature, payload + b" ", tmp_path).returncode != 0


def test_signing_adds_to_existing_signatures(registry, tmp_path, keys, capsys):
    key, pub = keys
    image = make_image(tmp_path / "img")
    digest = push_image(image, [f"{registry.host}/multi/sig:1"])
    ref = f"{registry.host}/multi/sig@{digest}"
    assert cli("sign", ref, "--key", key, "-a", "build=1", capsys=capsys)[0] == 0
    assert cli("sign", ref, "--key", key, "-a", "build=2", capsys=capsys)[0] == 0
    manifest = fetch_sig_manifest(registry.host, "multi/sig", digest)
    assert len(manifest["layers"]) == 2
    # signing the same payload again with the same key adds nothing (as cosign)
    assert cli("sign", ref, "--key", key, "-a", "build=2", capsys=capsys)[0] == 0
    assert fetch_sig_manifest(registry.host, "multi/sig", digest) == manifest

    code, out, err = cli("verify", f"{registry.host}/multi/sig:1", "--key", pub, "--json",
                         capsys=capsys)
    assert code == 0, err
    payloads = json.loads(out)
    assert sorted(p["optional"]["build"] for p in payloads) == ["1", "2"]
    assert all(p["critical"]["image"]["docker-manifest-digest"] == digest for p in payloads)
    # an annotation can be required
    code, _, err = cli("verify", ref, "--key", pub, "-a", "build=3", capsys=capsys)
    assert code == 1 and "annotations do not match" in err


def test_verify_fails_with_the_wrong_key(registry, tmp_path, keys, capsys):
    key, _ = keys
    image = make_image(tmp_path / "img")
    push_image(image, [f"{registry.host}/wrong/key:1"])
    assert cli("sign", f"{registry.host}/wrong/key:1", "--key", key, capsys=capsys)[0] == 0
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "other.pub").write_bytes(other)
    code, out, err = cli("verify", f"{registry.host}/wrong/key:1", "--key",
                         tmp_path / "other.pub", capsys=capsys)
    assert code == 1 and out == ""
    assert "no valid signature" in err and "does not match the key" in err


def test_verify_fails_on_a_tampered_payload(registry, tmp_path, keys, capsys):
    key, pub = keys
    image = make_image(tmp_path / "img")
    digest = push_image(image, [f"{registry.host}/tamper/app:1"])
    assert cli("sign", f"{registry.host}/tamper/app:1", "--key", key, capsys=capsys)[0] == 0
    manifest = fetch_sig_manifest(registry.host, "tamper/app", digest)
    layer = manifest["layers"][0]
    payload = json.loads(fetch_blob(registry.host, "tamper/app", layer["digest"]))
    payload["optional"] = {"approved": "yes"}  # same digest, extra claim, old signature
    forged = json.dumps(payload).encode()
    desc = Descriptor(SIMPLESIGNING, "sha256:" + hashlib.sha256(forged).hexdigest(),
                      len(forged), {ANNOTATION: layer["annotations"][ANNOTATION]})
    client = RegistryClient.for_registry(registry.host)
    client.upload_blob("tamper/app", desc, lambda: io.BytesIO(forged))
    manifest["layers"] = [desc.to_json()]
    client.put_manifest("tamper/app", digest.replace(":", "-") + ".sig",
                        json.dumps(manifest).encode(), OCI_MANIFEST)

    code, _, err = cli("verify", f"{registry.host}/tamper/app:1", "--key", pub, capsys=capsys)
    assert code == 1
    assert "does not match the key and payload" in err


def test_verify_fails_after_the_tag_is_repointed(registry, tmp_path, keys, capsys):
    key, pub = keys
    first = make_image(tmp_path / "a", tag="a")
    first_digest = push_image(first, [f"{registry.host}/moving/app:stable"])
    assert cli("sign", f"{registry.host}/moving/app:stable", "--key", key,
               capsys=capsys)[0] == 0
    assert cli("verify", f"{registry.host}/moving/app:stable", "--key", pub,
               capsys=capsys)[0] == 0

    second = make_image(tmp_path / "b", tag="b")
    second_digest = push_image(second, [f"{registry.host}/moving/app:stable"])
    code, _, err = cli("verify", f"{registry.host}/moving/app:stable", "--key", pub,
                       capsys=capsys)
    assert code == 1 and "no signatures found" in err and second_digest in err

    # copying the old signature over to the new digest does not help an attacker
    old = fetch_sig_manifest(registry.host, "moving/app", first_digest)
    RegistryClient.for_registry(registry.host).put_manifest(
        "moving/app", second_digest.replace(":", "-") + ".sig", json.dumps(old).encode(),
        OCI_MANIFEST)
    code, _, err = cli("verify", f"{registry.host}/moving/app:stable", "--key", pub,
                       capsys=capsys)
    assert code == 1 and f"signs {first_digest}" in err
    # the first image, by digest, still verifies
    assert verify(f"{registry.host}/moving/app@{first_digest}", pub).digest == first_digest


def test_a_copy_promoted_with_its_signature_verifies_as_with_cosign(registry, tmp_path, keys,
                                                                    capsys):
    """skopeo copies the image and its .sig tag to another registry and to another
    repository: verify accepts both by default (cosign checks digest and annotations, not
    docker-reference); --check-reference refuses them and says for what they were signed."""
    key, pub = keys
    other = start_registry(tmp_path / "other-registry")
    try:
        digest = push_image(make_image(tmp_path / "img"), [f"{registry.host}/origin/app:1"])
        assert cli("sign", f"{registry.host}/origin/app:1", "--key", key, "-a", "build=7",
                   capsys=capsys)[0] == 0
        sig_tag = digest.replace(":", "-") + ".sig"
        for dest in (f"{other.host}/promoted/app", f"{registry.host}/copied/app"):
            for tag in ("1", sig_tag):
                skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                       "--preserve-digests", f"docker://{registry.host}/origin/app:{tag}",
                       f"docker://{dest}:{tag}")
            code, out, err = cli("verify", f"{dest}:1", "--key", pub, "-a", "build=7",
                                 "--json", capsys=capsys)
            assert code == 0, err
            [payload] = json.loads(out)
            assert payload["critical"]["image"]["docker-manifest-digest"] == digest
            assert payload["critical"]["identity"]["docker-reference"] == \
                f"{registry.host}/origin/app"
            code, _, err = cli("verify", f"{dest}:1", "--key", pub, "--check-reference",
                               capsys=capsys)
            assert code == 1
            assert f"signed for {registry.host}/origin/app, not {dest}" in err
            # the claims cosign does check still hold on the copy
            code, _, err = cli("verify", f"{dest}:1", "--key", pub, "-a", "build=8",
                               capsys=capsys)
            assert code == 1 and "annotations do not match: build=8" in err
        assert cli("verify", f"{registry.host}/origin/app:1", "--key", pub,
                   "--check-reference", capsys=capsys)[0] == 0
    finally:
        other.stop()


def test_build_push_sign_and_sbom_in_one_command(registry, tmp_path, keys, capsys):
    key, pub = keys
    (tmp_path / "app.txt").write_text("hello\n")
    manifest = write(tmp_path / "ocibuild.yaml", """
        image: test/signed:1
        layers:
          - name: app
            files:
              - {src: app.txt, dest: /app/app.txt}
        config:
          user: "65532"
        """)
    ref = f"{registry.host}/built/app:1"
    code, out, err = cli("build", manifest, "-o", tmp_path / "app.tar", "--cache-dir",
                         tmp_path / "cache", "--push", ref, "--sign-key", key, "--sbom",
                         "cyclonedx-json", "--json", capsys=capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["signatures"][0]["digest"] == summary["pushed"]
    assert Path(summary["sbom"]) == tmp_path / "app.cdx.json"
    assert json.loads((tmp_path / "app.cdx.json").read_text())["bomFormat"] == "CycloneDX"
    assert verify(ref, pub).digest == summary["pushed"]
    # --sign-key without --push is a usage mistake, said plainly
    code, _, err = cli("build", manifest, "--cache-dir", tmp_path / "cache", "--sign-key", key,
                       capsys=capsys)
    assert code == 1 and "--push" in err


def test_sbom_and_audit_read_an_image_from_the_registry(registry, tmp_path, capsys,
                                                       monkeypatch):
    monkeypatch.setenv("OCIBUILD_CACHE", str(tmp_path / "cache"))
    (tmp_path / "meta").write_text("Metadata-Version: 2.1\nName: Flask\nVersion: 3.0.3\n")
    manifest = write(tmp_path / "ocibuild.yaml", """
        image: test/remote:1
        layers:
          - name: app
            files:
              - {src: meta, dest: /app/_internal/flask-3.0.3.dist-info/METADATA}
        config:
          user: "65532"
        """)
    ref = f"{registry.host}/remote/app:1"
    assert cli("build", manifest, "-q", "--push", ref, "--cache-dir", tmp_path / "c",
               capsys=capsys)[0] == 0
    code, out, err = cli("sbom", ref, "--format", "cyclonedx-json", capsys=capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert [c["purl"] for c in doc["components"]] == ["pkg:pypi/flask@3.0.3"]
    assert doc["metadata"]["component"]["purl"].endswith(
        f"repository_url={registry.host}/remote/app")
    code, out, err = cli("audit", ref, "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["passed"] is True
