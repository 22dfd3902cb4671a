"""An image index through a real docker-registry: push, pick a platform, pull, sign.

Checked independently with ``skopeo inspect docker://…`` (``--raw`` and
``--override-arch``) and by reading the registry with plain ``requests``.
"""

from __future__ import annotations

import json

import requests

from builder.oci.index import Index
from builder.sources.archive import read_artifact, read_image
from helpers import cli
from registry_fixtures import registry, skopeo  # noqa: F401  (the module's registry)
from test_platforms_build import _manifest
from test_supply_sign import keys  # noqa: F401

INDEX = "application/vnd.oci.image.index.v1+json"


def _built_index(tmp_path, capsys) -> Index:
    manifest = _manifest(tmp_path)
    assert cli("build", manifest, "-o", tmp_path / "i.tar", capsys=capsys)[0] == 0
    index = read_artifact(tmp_path / "i.tar")
    assert isinstance(index, Index)
    return index


def test_push_index_then_peers_and_pull_pick_the_arm64_image(registry, tmp_path,  # noqa: F811
                                                              capsys):
    index = _built_index(tmp_path, capsys)
    ref = f"{registry.host}/multi/app:1"
    code, out, err = cli("push", tmp_path / "i.tar", ref, "--json", capsys=capsys)
    assert code == 0, err
    assert json.loads(out)["digest"] == index.digest

    raw = skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{ref}")
    assert raw.encode() == index.manifest_bytes
    arm = index.manifests[1].image
    inspected = json.loads(skopeo("inspect", "--tls-verify=false", "--override-arch", "arm64",
                                  f"docker://{ref}"))
    assert inspected["Architecture"] == "arm64" and inspected["Digest"] == index.digest
    assert inspected["Layers"] == [layer.digest for layer in arm.layers]
    config = json.loads(skopeo("inspect", "--tls-verify=false", "--override-arch", "arm64",
                               "--config", f"docker://{ref}"))
    assert config == arm.config
    # every manifest is in the registry under its digest
    for m in index.manifests:
        resp = requests.get(f"http://{registry.host}/v2/multi/app/manifests/{m.image.digest}",
                            headers={"Accept": m.image.manifest_media_type}, timeout=10)
        assert resp.status_code == 200 and resp.content == m.image.manifest_bytes

    code, out, err = cli("pull", ref, "-o", tmp_path / "arm.tar", "--platform", "linux/arm64",
                         "--json", capsys=capsys)
    assert code == 0, err
    pulled = read_image(tmp_path / "arm.tar")
    assert pulled.digest == arm.digest and pulled.config["architecture"] == "arm64"
    assert [layer.digest for layer in pulled.layers] == [layer.digest for layer in arm.layers]
    assert json.loads(out)["pinned"] == f"{registry.host}/multi/app@{index.digest}"

    # a registry index as an SBOM subject needs a platform, as a local one does
    code, _, err = cli("sbom", ref, capsys=capsys)
    assert code == 1 and "linux/amd64, linux/arm64; choose one with --platform" in err


def test_signing_an_index_signs_it_and_each_manifest(registry, tmp_path, keys,  # noqa: F811
                                                     capsys):
    key, pub = keys
    index = _built_index(tmp_path, capsys)
    ref = f"{registry.host}/multi/signed:1"
    assert cli("push", tmp_path / "i.tar", ref, capsys=capsys)[0] == 0
    code, out, err = cli("sign", ref, "--key", key, "--json", capsys=capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["digest"] == index.digest
    assert [m["digest"] for m in result["manifests"]] == [m.image.digest
                                                          for m in index.manifests]
    for digest in [index.digest] + [m.image.digest for m in index.manifests]:
        tag = digest.replace(":", "-") + ".sig"
        resp = requests.get(f"http://{registry.host}/v2/multi/signed/manifests/{tag}",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
                            timeout=10)
        assert resp.status_code == 200, (tag, resp.text)

    code, out, err = cli("verify", ref, "--key", pub, "--json", capsys=capsys)
    assert code == 0, err
    signed = [p["critical"]["image"]["docker-manifest-digest"] for p in json.loads(out)]
    assert signed == [index.digest] + [m.image.digest for m in index.manifests]

    # an index whose arm64 manifest lost its signature does not verify
    arm = index.manifests[1].image.digest
    tag = arm.replace(":", "-") + ".sig"
    head = requests.head(f"http://{registry.host}/v2/multi/signed/manifests/{tag}",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
                         timeout=10)
    sig_digest = head.headers["Docker-Content-Digest"]
    assert requests.delete(f"http://{registry.host}/v2/multi/signed/manifests/{sig_digest}",
                           timeout=10).status_code == 202
    code, _, err = cli("verify", ref, "--key", pub, capsys=capsys)
    assert code == 1 and f"is an image index, and its manifest " in err and arm in err, err


def test_sign_attach_sbom_of_an_index_attests_each_platforms_sbom(registry, tmp_path,  # noqa: F811
                                                                  keys, capsys):
    key, pub = keys
    index = _built_index(tmp_path, capsys)
    ref = f"{registry.host}/multi/attested:1"
    assert cli("push", tmp_path / "i.tar", ref, capsys=capsys)[0] == 0
    code, out, err = cli("sign", ref, "--key", key, "--attach-sbom", "spdx-json", "--json",
                         capsys=capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["signature"]["digest"] == index.digest
    assert [(a["platform"], a["digest"]) for a in result["attestations"]] == [
        (str(m.image.platform), m.image.digest) for m in index.manifests]

    code, out, err = cli("verify-attestation", ref, "--key", pub, "--type", "spdxjson",
                         "--json", capsys=capsys)
    assert code == 0, err
    statements = json.loads(out)
    assert [s["subject"][0]["digest"]["sha256"] for s in statements] == [
        m.image.digest.split(":", 1)[1] for m in index.manifests]
    # each platform's SBOM names its own image
    for statement, m in zip(statements, index.manifests):
        assert m.image.digest.split(":", 1)[1] in json.dumps(statement["predicate"])

    # an index whose arm64 manifest lost its attestation does not verify
    arm = index.manifests[1].image.digest
    tag = arm.replace(":", "-") + ".att"
    head = requests.head(f"http://{registry.host}/v2/multi/attested/manifests/{tag}",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
                         timeout=10)
    assert requests.delete(f"http://{registry.host}/v2/multi/attested/manifests/"
                           f"{head.headers['Docker-Content-Digest']}", timeout=10
                           ).status_code == 202
    code, _, err = cli("verify-attestation", ref, "--key", pub, capsys=capsys)
    assert code == 1 and "is an image index, and its manifest" in err and arm in err, err
