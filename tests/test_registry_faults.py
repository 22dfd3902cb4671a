"""Faults between client and a real registry, injected by a loopback proxy."""

from __future__ import annotations

import json
import time

import pytest

from builder.errors import DigestMismatchError, RegistryError
from builder.registry.client import RegistryClient
from builder.registry.pull import BlobCache, pull
from builder.registry.push import ClientPool, push_image
from builder.registry.transport import RetryPolicy
from registry_fixtures import Fault, FaultProxy, free_port, make_image, registry, skopeo

FAST = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2, deadline=20)



@pytest.fixture
def proxy(registry):
    p = FaultProxy(registry.host)
    yield p
    p.stop()


def _inspect(registry, repo_tag):
    return json.loads(skopeo("inspect", "--tls-verify=false",
                             f"docker://{registry.host}/{repo_tag}"))


def test_500s_are_retried(proxy, registry, tmp_path):
    image = make_image(tmp_path / "img")
    proxy.add(Fault("HEAD", "/blobs/", times=2, status=500))
    proxy.add(Fault("PUT", "/manifests/", times=1, status=503))
    push_image(image, [f"{proxy.host}/faults/five:1"], pool=ClientPool(retry=FAST))
    assert _inspect(registry, "faults/five:1")["Digest"] == image.digest
    assert proxy.count("PUT", "/manifests/") == 2


def test_429_with_retry_after_is_honoured(proxy, registry, tmp_path):
    image = make_image(tmp_path / "img", layers=1)
    proxy.add(Fault("POST", "/blobs/uploads/", times=1, status=429,
                    headers={"Retry-After": "1"}))
    start = time.monotonic()
    push_image(image, [f"{proxy.host}/faults/many:1"], pool=ClientPool(retry=FAST), jobs=1)
    assert time.monotonic() - start >= 1.0  # waited as told, not FAST's 0.05 s
    assert _inspect(registry, "faults/many:1")["Digest"] == image.digest


def test_persistent_500_gives_up_with_clear_error(proxy, tmp_path):
    image = make_image(tmp_path / "img", layers=1)
    proxy.add(Fault("HEAD", "/blobs/", times=100, status=500))
    with pytest.raises(RegistryError) as info:
        push_image(image, [f"{proxy.host}/faults/dead:1"], pool=ClientPool(retry=FAST))
    assert info.value.status == 500
    assert "gave up after 4 attempts" in str(info.value)
    assert image.layers[0].digest in str(info.value)


@pytest.mark.parametrize("forward_partial", [False, True],
                         ids=["resume-from-offset", "registry-dropped-session"])
def test_connection_cut_mid_upload_then_success(proxy, registry, tmp_path, forward_partial):
    """Cut the second chunk half-way; the blob still lands with the right digest.

    Without forwarding, the registry still holds the first chunk and the client
    resumes at its reported offset; with the partial bytes forwarded,
    distribution 2.8 invalidates the session and the client starts over.
    """
    image = make_image(tmp_path / "img", layers=1, size=400_000)
    chunk = 64 * 1024
    proxy.add(Fault("PATCH", "/blobs/uploads/", skip=1, cut_after=chunk // 2,
                    forward_partial=forward_partial))
    pool = ClientPool(retry=FAST, chunk_size=chunk)
    push_image(image, [f"{proxy.host}/faults/cut:{int(forward_partial)}"], pool=pool)
    stats = pool.get(proxy.host).stats
    if forward_partial:
        assert stats.restarted == 1
    else:
        assert stats.resumed == 1 and stats.restarted == 0
    info = _inspect(registry, f"faults/cut:{int(forward_partial)}")
    assert info["Digest"] == image.digest
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/faults/cut:"
           f"{int(forward_partial)}", f"oci:{tmp_path / 'o'}:t")  # skopeo verifies digests


def test_corrupt_blob_is_refused_and_nothing_is_cached(proxy, registry, tmp_path):
    image = make_image(tmp_path / "img", layers=1)
    push_image(image, [f"{registry.host}/faults/corrupt:1"])
    layer = image.layers[0]
    proxy.add(Fault("GET", f"/blobs/{layer.digest}", times=10, corrupt=True))
    cache = tmp_path / "cache"
    with pytest.raises(DigestMismatchError, match=layer.digest):
        pull(f"{proxy.host}/faults/corrupt:1", cache_dir=cache,
             pool=ClientPool(retry=FAST))
    blob_dir = cache / "blobs" / "sha256"
    assert not (blob_dir / layer.digest.split(":")[1]).exists()
    assert not [p for p in blob_dir.iterdir() if p.name.endswith(".part")]


def test_corrupt_cache_entry_is_refetched(registry, tmp_path):
    image = make_image(tmp_path / "img", layers=1)
    ref = f"{registry.host}/faults/cache:1"
    push_image(image, [ref])
    cache = tmp_path / "cache"
    pull(ref, cache_dir=cache)
    path = BlobCache(cache).path(image.layers[0].digest)
    path.write_bytes(b"x" * path.stat().st_size)
    pulled = pull(ref, cache_dir=cache)
    with pulled.image.layers[0].opener() as f:
        assert f.read() == image.layers[0].opener().read()


def test_registry_down_fails_fast_and_clearly(tmp_path):
    image = make_image(tmp_path / "img", layers=1)
    host = f"127.0.0.1:{free_port()}"  # nothing listens here
    start = time.monotonic()
    with pytest.raises(RegistryError) as info:
        push_image(image, [f"{host}/down/app:1"],
                   pool=ClientPool(retry=RetryPolicy(attempts=3, base_delay=0.2,
                                                      deadline=10)))
    assert time.monotonic() - start < 10
    assert "unreachable" in str(info.value) and host in str(info.value)
    assert info.value.temporary


def test_registry_down_with_default_policy_is_bounded(tmp_path):
    client = RegistryClient.for_registry(f"127.0.0.1:{free_port()}")
    start = time.monotonic()
    with pytest.raises(RegistryError, match="unreachable"):
        client.resolve("down/app", "1")
    assert time.monotonic() - start < 30


def test_401_on_a_chunk_resends_the_same_bytes(proxy, registry, tmp_path):
    """A re-authenticated chunk is the same chunk, not the next bytes of the stream."""
    image = make_image(tmp_path / "img", layers=1, size=300_000)
    proxy.add(Fault("PATCH", "/blobs/uploads/", skip=1, status=401,
                    headers={"WWW-Authenticate": 'Basic realm="again"'}))
    pool = ClientPool(retry=FAST, chunk_size=64 * 1024)
    push_image(image, [f"{proxy.host}/faults/reauth:1"], pool=pool)
    stats = pool.get(proxy.host).stats
    assert (stats.resumed, stats.restarted) == (0, 0)
    assert _inspect(registry, "faults/reauth:1")["Digest"] == image.digest
