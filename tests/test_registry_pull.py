"""Pull from a real registry: images pushed by skopeo, Docker v2 and OCI, indexes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from builder.errors import ImageError
from builder.oci.types import MediaType, Platform, canonical_json, sha256_digest
from builder.registry import commands
from builder.registry.client import RegistryClient
from builder.registry.pull import BlobCache, pull, pull_image
from builder.registry.push import push_image
from builder.sinks.tarball import write_tarball
from registry_fixtures import make_image, registry, skopeo



def _skopeo_push(image, tmp_path, dest, *extra):
    tar = tmp_path / "src.tar"
    write_tarball(image, tar, "src:1")
    skopeo("copy", "--dest-tls-verify=false", *extra, f"oci-archive:{tar}", f"docker://{dest}")
    return json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{dest}"))["Digest"]


@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_pull_what_skopeo_pushed(registry, tmp_path, fmt):
    image = make_image(tmp_path / "img", layers=2)
    ref = f"{registry.host}/skopeo/{fmt}:1"
    remote_digest = _skopeo_push(image, tmp_path, ref, "--format", fmt)
    cache = tmp_path / "cache"
    pulled = pull(ref, cache_dir=cache)
    assert pulled.manifest_digest == remote_digest
    expected_type = (MediaType.OCI_MANIFEST if fmt == "oci" else MediaType.DOCKER_MANIFEST).value
    assert pulled.manifest.media_type == expected_type
    assert [layer.digest for layer in pulled.image.layers] == [l.digest for l in image.layers]
    assert [layer.diff_id for layer in pulled.image.layers] == [l.diff_id for l in image.layers]
    for mine, theirs in zip(image.layers, pulled.image.layers):
        with mine.opener() as a, theirs.opener() as b:
            assert a.read() == b.read()
        assert BlobCache(cache).path(theirs.digest).is_file()


def test_pull_by_digest_and_resolve(registry, tmp_path):
    image = make_image(tmp_path / "img")
    ref = f"{registry.host}/pin/app:1"
    push_image(image, [ref])
    assert commands.resolve(ref) == image.digest
    pinned = f"{registry.host}/pin/app@{image.digest}"
    got = pull_image(pinned, cache_dir=tmp_path / "c")
    assert got.digest == image.digest  # canonical config and OCI manifest round-trip exactly


def test_pull_picks_platform_from_index(registry, tmp_path):
    amd = make_image(tmp_path / "amd")
    arm = make_image(tmp_path / "arm")
    arm = replace(arm, config={**arm.config, "architecture": "arm64", "variant": "v8"})
    push_image(amd, [f"{registry.host}/multi/app:amd"])
    push_image(arm, [f"{registry.host}/multi/app:arm"])
    index = {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX.value, "manifests": [
        arm.manifest_descriptor().to_json(), amd.manifest_descriptor().to_json()]}
    client = RegistryClient.for_registry(registry.host)
    client.put_manifest("multi/app", "1", canonical_json(index), MediaType.OCI_INDEX.value)
    ref = f"{registry.host}/multi/app:1"
    assert pull_image(ref, Platform("linux", "amd64"), tmp_path / "c").digest == amd.digest
    assert pull_image(ref, Platform("linux", "arm64"), tmp_path / "c").digest == arm.digest
    with pytest.raises(ImageError, match="linux/amd64, linux/arm64/v8"):
        pull_image(ref, Platform("linux", "s390x"), tmp_path / "c")
    assert commands.resolve(ref) == sha256_digest(canonical_json(index))


def test_pull_command_writes_a_tarball_skopeo_reads(registry, tmp_path):
    image = make_image(tmp_path / "img")
    ref = f"{registry.host}/cmd/app:2"
    push_image(image, [ref])
    out = tmp_path / "out.tar"
    result = commands.pull(ref, out, "linux/amd64", cache_dir=tmp_path / "c")
    assert result["manifest_digest"] == image.digest
    info = json.loads(skopeo("inspect", f"oci-archive:{out}"))
    assert info["Digest"] == image.digest


def test_push_command_from_tarball(registry, tmp_path):
    image = make_image(tmp_path / "img")
    tar = tmp_path / "img.tar"
    write_tarball(image, tar, "x:1")
    refs = [f"{registry.host}/cmd/push:1", f"{registry.host}/cmd/push:latest"]
    result = commands.push(tar, refs)
    assert result["digest"] == image.digest
    assert result["blobs"]["uploaded"] == len(image.layers) + 1
    again = commands.push(tar, refs)
    assert again["blobs"] == {"uploaded": 0, "mounted": 0, "skipped": len(image.layers) + 1,
                              "bytes_uploaded": 0}
    assert json.loads(skopeo("inspect", "--tls-verify=false",
                             f"docker://{refs[1]}"))["Digest"] == image.digest


def test_missing_tag_is_a_clear_error(registry, tmp_path):
    from builder.errors import RegistryError
    with pytest.raises(RegistryError) as info:
        pull(f"{registry.host}/nothing/here:1", cache_dir=tmp_path / "c")
    assert info.value.status == 404
    assert "NAME_UNKNOWN" in info.value.codes or "MANIFEST_UNKNOWN" in info.value.codes
