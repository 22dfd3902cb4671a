"""Push against a real docker-registry, checked by skopeo."""

from __future__ import annotations

import json

import pytest

from builder.errors import InputError
from builder.registry.push import ClientPool, push_image
from registry_fixtures import FaultProxy, make_image, registry, skopeo



def test_push_then_skopeo_inspect_and_copy_back(registry, tmp_path):
    image = make_image(tmp_path / "img")
    ref = f"{registry.host}/ml/iris:1.0.0"
    digest = push_image(image, [ref])
    assert digest == image.digest

    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}"))
    assert info["Digest"] == digest
    assert info["Layers"] == [layer.digest for layer in image.layers]

    skopeo("copy", "--src-tls-verify=false", "--preserve-digests", f"docker://{ref}",
           f"oci:{tmp_path / 'back'}:t")
    index = json.loads((tmp_path / "back" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
    blob = tmp_path / "back" / "blobs" / "sha256" / digest.split(":")[1]
    assert blob.read_bytes() == image.manifest_bytes


def test_several_tags_in_one_push(registry, tmp_path):
    image = make_image(tmp_path / "img")
    refs = [f"{registry.host}/multi/app:{t}" for t in ("1", "1.0", "latest")]
    pool = ClientPool()
    push_image(image, refs, pool=pool)
    for ref in refs:
        assert json.loads(skopeo("inspect", "--tls-verify=false",
                                 f"docker://{ref}"))["Digest"] == image.digest
    stats = pool.get(registry.host).stats
    assert stats.uploaded == len(image.layers) + 1  # each blob once, however many tags


def test_second_push_uploads_nothing(registry, tmp_path):
    image = make_image(tmp_path / "img")
    proxy = FaultProxy(registry.host)  # counts what really reaches the registry
    try:
        ref = f"{proxy.host}/again/app:1"
        push_image(image, [ref])
        assert proxy.count("POST", "/blobs/uploads/") == len(image.layers) + 1
        proxy.seen.clear()
        pool = ClientPool()
        push_image(image, [ref], pool=pool)
    finally:
        proxy.stop()
    stats = pool.get(proxy.host).stats
    assert (stats.uploaded, stats.mounted, stats.skipped) == (0, 0, len(image.layers) + 1)
    methods = sorted({m for m, _, _ in proxy.seen})
    assert methods == ["GET", "HEAD", "PUT"]  # ping, blob checks, the manifest
    assert proxy.count("PUT", "/blobs/") == 0


def test_push_to_another_repository_mounts(registry, tmp_path):
    image = make_image(tmp_path / "img")
    pool = ClientPool()
    push_image(image, [f"{registry.host}/first/app:1"], pool=pool)
    second = ClientPool()
    push_image(image, [f"{registry.host}/second/app:1"], pool=second,
               mount_from=[f"{registry.host}/first/app"])
    stats = second.get(registry.host).stats
    assert stats.uploaded == 0
    assert stats.mounted == len(image.layers) + 1
    info = json.loads(skopeo("inspect", "--tls-verify=false",
                             f"docker://{registry.host}/second/app:1"))
    assert info["Digest"] == image.digest


def test_two_repositories_in_one_push_mount_the_second(registry, tmp_path):
    image = make_image(tmp_path / "img")
    pool = ClientPool()
    push_image(image, [f"{registry.host}/one/app:1", f"{registry.host}/two/app:1"], pool=pool)
    stats = pool.get(registry.host).stats
    assert stats.uploaded == len(image.layers) + 1
    assert stats.mounted == len(image.layers) + 1


def test_large_blob_goes_in_chunks(registry, tmp_path):
    image = make_image(tmp_path / "img", layers=1, size=300_000)
    pool = ClientPool(chunk_size=64 * 1024)
    ref = f"{registry.host}/chunked/app:1"
    push_image(image, [ref], pool=pool)
    skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp_path / 'o'}:t")
    assert pool.get(registry.host).stats.bytes_uploaded >= image.layers[0].size


def test_pinned_reference_must_match(registry, tmp_path):
    image = make_image(tmp_path / "img")
    with pytest.raises(InputError, match="pinned"):
        push_image(image, [f"{registry.host}/x/y@sha256:" + "0" * 64])
