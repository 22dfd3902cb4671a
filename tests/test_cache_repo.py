"""A registry repository as the layer cache of many runners (``--cache-repo``).

Runners are simulated by separate cache directories and copies of the checkout in
other directories; the registry is a real docker-registry on 127.0.0.1, faults come
from the loopback fault proxy.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import requests

from builder.layercache.registry import RECORD_MEDIA_TYPE
from builder.layercache.tiered import open_cache
from builder.manifest import load_manifest
from builder.pipeline import BuildContext, build_image
from builder.sources.archive import read_image
from helpers import cli, validate_image, write
from registry_fixtures import (Fault, FaultProxy, free_port, htpasswd_file, registry,
                               start_registry)

MANIFEST = """\
image: t/fleet:1
layers:
  - name: tools
    files:
      - {src: busybox, dest: /bin/busybox, mode: 0o755}
  - name: app
    files:
      - {src: app, dest: /app}
"""


@pytest.fixture
def checkout(tmp_path, busybox):
    root = tmp_path / "runner-a" / "checkout"
    (root / "app").mkdir(parents=True)
    (root / "app" / "main.txt").write_text("hello fleet\n")
    (root / "app" / "data.bin").write_bytes(bytes(range(256)) * 4000)
    shutil.copy(busybox, root / "busybox")
    write(root / "ocibuild.yaml", MANIFEST)
    return root


def _copy(checkout: Path, where: Path) -> Path:
    shutil.copytree(checkout, where)  # new inodes and ctimes: nothing local matches
    return where


def _build(capsys, root: Path, cache: Path, *extra: str, code: int = 0):
    rc, out, err = cli("build", root / "ocibuild.yaml", "-o", root / "image.tar", "--json",
                       "--cache-dir", cache, *extra, capsys=capsys)
    assert rc == code, err
    return (json.loads(out) if rc == 0 else None), err


def _sources(summary):
    return {layer["name"]: layer["cache"] for layer in summary["layers"]}


def _tags(reg, repo):
    resp = requests.get(f"http://{reg.host}/v2/{repo}/tags/list", timeout=10)
    return sorted(resp.json().get("tags") or []) if resp.status_code == 200 else []


def test_a_fresh_runner_reuses_the_layers_and_verdict_another_runner_pushed(
        tmp_path, checkout, registry, capsys):
    repo = f"{registry.host}/fleet/reuse"
    a, _ = _build(capsys, checkout, tmp_path / "cache-a", "--cache-repo", repo)
    assert _sources(a) == {"tools": "built", "app": "built"}
    tags = _tags(registry, "fleet/reuse")
    assert len([t for t in tags if t.startswith("k-")]) == 2
    assert len([t for t in tags if t.startswith("v-")]) == 1  # busybox's closure verdict

    other = _copy(checkout, tmp_path / "runner-b" / "src")
    b, _ = _build(capsys, other, tmp_path / "cache-b", "--cache-repo", repo)
    assert b["digest"] == a["digest"]
    assert _sources(b) == {"tools": "remote", "app": "remote"}
    assert b["cache_repo"]["bytes_fetched"] >= sum(x["size"] for x in a["layers"])
    assert b["cache_repo"]["bytes_pushed"] == 0
    validate_image(read_image(other / "image.tar"))
    assert (tmp_path / "cache-b" / "closure").is_dir()  # the verdict came along

    # runner B again: everything is local now, nothing is fetched
    again, _ = _build(capsys, other, tmp_path / "cache-b", "--cache-repo", repo)
    assert _sources(again) == {"tools": "local", "app": "local"}
    assert again["cache_repo"]["bytes_fetched"] == 0


def test_a_changed_input_misses_and_only_its_layer_is_built(tmp_path, checkout, registry,
                                                             capsys):
    repo = f"{registry.host}/fleet/changed"
    a, _ = _build(capsys, checkout, tmp_path / "cache-a", "--cache-repo", repo)
    other = _copy(checkout, tmp_path / "runner-b" / "src")
    (other / "app" / "main.txt").write_text("hello FLEET\n")  # same size, other bytes
    b, _ = _build(capsys, other, tmp_path / "cache-b", "--cache-repo", repo)
    assert _sources(b) == {"tools": "remote", "app": "built"}
    assert b["digest"] != a["digest"]
    # a changed mode misses too
    write(other / "ocibuild.yaml", MANIFEST.replace("0o755", "0o750"))
    c, _ = _build(capsys, other, tmp_path / "cache-c", "--cache-repo", repo)
    assert c["layers"][0]["cache"] == "built"


def test_the_human_summary_says_where_each_layer_came_from(tmp_path, checkout, registry,
                                                          capsys):
    repo = f"{registry.host}/fleet/summary"
    rc, _, err = cli("build", checkout / "ocibuild.yaml", "-o", checkout / "i.tar",
                     "--cache-dir", tmp_path / "c1", "--cache-repo", repo, capsys=capsys)
    assert rc == 0 and err.count(" built ") == 2
    other = _copy(checkout, tmp_path / "b")
    rc, _, err = cli("build", other / "ocibuild.yaml", "-o", other / "i.tar",
                     "--cache-dir", tmp_path / "c2", "--cache-repo", repo, capsys=capsys)
    assert rc == 0 and err.count("remote hit") == 2
    rc, _, err = cli("build", other / "ocibuild.yaml", "-o", other / "i.tar",
                     "--cache-dir", tmp_path / "c2", "--cache-repo", repo, capsys=capsys)
    assert rc == 0 and err.count("local hit") == 2


def test_the_cache_entry_is_plain_oci_content(tmp_path, checkout, registry, capsys):
    repo = f"{registry.host}/fleet/plain"
    _build(capsys, checkout, tmp_path / "cache-a", "--cache-repo", repo)
    tag = next(t for t in _tags(registry, "fleet/plain") if t.startswith("k-"))
    from registry_fixtures import skopeo
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false",
                            f"docker://{registry.host}/fleet/plain:{tag}"))
    assert raw["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert raw["config"]["mediaType"] == RECORD_MEDIA_TYPE and len(raw["layers"]) == 1
    assert raw["annotations"]["dev.ocibuild.cache.key"] == tag[2:]


def test_readonly_reads_and_never_writes(tmp_path, checkout, registry, capsys):
    proxy = FaultProxy(registry.host)
    try:
        repo = f"{proxy.host}/fleet/readonly"
        a, _ = _build(capsys, checkout, tmp_path / "cache-a", "--cache-repo", repo,
                      "--cache-repo-readonly")
        assert _sources(a) == {"tools": "built", "app": "built"}
        assert proxy.count("PUT") == proxy.count("POST") == proxy.count("PATCH") == 0
        assert _tags(registry, "fleet/readonly") == []
        _build(capsys, checkout, tmp_path / "cache-w", "--cache-repo", repo)  # a trusted writer
        other = _copy(checkout, tmp_path / "b")
        puts = proxy.count("PUT")
        b, _ = _build(capsys, other, tmp_path / "cache-b", "--cache-repo", repo,
                      "--cache-repo-readonly")
        assert _sources(b) == {"tools": "remote", "app": "remote"}
        assert proxy.count("PUT") == puts
    finally:
        proxy.stop()


# -- never the reason a build fails -----------------------------------------------------

def _fault_build(capsys, tmp_path, checkout, repo, *extra, code=0):
    summary, err = _build(capsys, checkout, tmp_path / "cache", "--cache-repo", repo, *extra,
                          code=code)
    return summary, err


def test_an_unreachable_cache_repo_warns_once_and_builds_locally(tmp_path, checkout, capsys):
    repo = f"127.0.0.1:{free_port()}/fleet/nothing"
    summary, err = _fault_build(capsys, tmp_path, checkout, repo)
    assert _sources(summary) == {"tools": "built", "app": "built"}
    assert err.count("warning: cache repository") == 1 and "unreachable" in err
    validate_image(read_image(checkout / "image.tar"))


def test_an_unreachable_cache_repo_fails_the_build_when_required(tmp_path, checkout, capsys):
    repo = f"127.0.0.1:{free_port()}/fleet/nothing"
    _, err = _fault_build(capsys, tmp_path, checkout, repo, "--cache-repo-required", code=1)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--cache-repo-required" in lines[0]
    assert not (checkout / "image.tar").exists()


def test_5xx_from_the_cache_repo_leaves_a_warning_and_a_local_build(tmp_path, checkout,
                                                                    registry, capsys):
    proxy = FaultProxy(registry.host)
    try:
        proxy.add(Fault("GET", "/manifests/", times=100, status=503))
        summary, err = _fault_build(capsys, tmp_path, checkout, f"{proxy.host}/fleet/five")
        assert _sources(summary) == {"tools": "built", "app": "built"}
        assert err.count("warning: cache repository") == 1 and "503" in err
        assert proxy.count("PUT") == 0  # a cache that failed is not written either
    finally:
        proxy.stop()


def test_a_cache_repo_refusing_auth_leaves_a_warning_and_a_local_build(tmp_path, checkout,
                                                                       capsys, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    path = htpasswd_file(tmp_path, {"ci": "secret"})
    reg = start_registry(tmp_path / "auth-registry",
                         auth={"htpasswd": {"realm": "ocibuild-test", "path": str(path)}})
    try:
        summary, err = _fault_build(capsys, tmp_path, checkout, f"{reg.host}/fleet/auth")
        assert _sources(summary) == {"tools": "built", "app": "built"}
        assert err.count("warning: cache repository") == 1 and "unauthorized" in err
    finally:
        reg.stop()


def test_a_remote_blob_whose_bytes_do_not_match_is_ignored_and_built_locally(
        tmp_path, checkout, registry, capsys):
    repo_path = "fleet/corrupt"
    a, _ = _build(capsys, checkout, tmp_path / "cache-a", "--cache-repo",
                  f"{registry.host}/{repo_path}")
    proxy = FaultProxy(registry.host)
    try:
        app = a["layers"][1]["digest"]
        proxy.add(Fault("GET", f"/blobs/{app}", times=100, corrupt=True))
        other = _copy(checkout, tmp_path / "b")
        b, err = _build(capsys, other, tmp_path / "cache-b", "--cache-repo",
                        f"{proxy.host}/{repo_path}")
        assert b["digest"] == a["digest"]
        assert "warning: cache repository" in err and "digest mismatch" in err
        assert "built locally instead" in err
        validate_image(read_image(other / "image.tar"))
    finally:
        proxy.stop()


# -- two runners at once -----------------------------------------------------------------

def test_two_builds_filling_the_same_keys_at_once_corrupt_nothing(tmp_path, checkout,
                                                                  registry):
    repo = f"{registry.host}/fleet/race"
    roots = [_copy(checkout, tmp_path / f"runner-{i}" / "src") for i in range(2)]
    results: list = [None, None]
    start = threading.Barrier(2)

    def runner(i: int) -> None:
        cache_dir = tmp_path / f"cache-{i}"
        ctx = BuildContext(cache_dir=cache_dir, epoch=0,
                           layer_cache=open_cache(cache_dir, repo, required=True))
        manifest = load_manifest(roots[i] / "ocibuild.yaml")
        start.wait()
        results[i] = build_image(manifest, ctx)

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] is not None and results[1] is not None
    assert results[0].image.digest == results[1].image.digest
    assert all(r.cache == "built" or r.cache == "remote" for res in results for r in res.layers)

    third_dir = tmp_path / "cache-3"
    ctx = BuildContext(cache_dir=third_dir, epoch=0,
                       layer_cache=open_cache(third_dir, repo, required=True))
    third = build_image(load_manifest(_copy(checkout, tmp_path / "r3") / "ocibuild.yaml"), ctx)
    assert [r.cache for r in third.layers] == ["remote", "remote"]
    assert third.image.digest == results[0].image.digest
    validate_image(third.image)  # every blob fetched from the registry, verified


def test_notes_travel_through_the_cache_repo(tmp_path, registry):
    repo = f"{registry.host}/fleet/notes"
    a = open_cache(tmp_path / "a", repo, required=True)
    a.put_note("2" * 64, {"parts": [{"name": "app:runtime"}]})
    b = open_cache(tmp_path / "b", repo, required=True)
    assert b.get_note("2" * 64) == {"parts": [{"name": "app:runtime"}]}
    assert b.get_note("3" * 64) is None
    assert open_cache(tmp_path / "b").get_note("2" * 64) is not None  # kept locally


def test_a_runner_with_a_warm_local_cache_fills_a_new_cache_repo_once(tmp_path, checkout,
                                                                      registry, capsys):
    proxy = FaultProxy(registry.host)
    try:
        repo = f"{proxy.host}/fleet/backfill"
        cache = tmp_path / "cache-a"
        _build(capsys, checkout, cache)  # before the fleet had a cache repository
        a, _ = _build(capsys, checkout, cache, "--cache-repo", repo)
        assert _sources(a) == {"tools": "local", "app": "local"}
        assert len([t for t in _tags(registry, "fleet/backfill") if t[:2] in ("k-", "v-")]) == 3
        requests_so_far = len(proxy.seen)
        again, _ = _build(capsys, checkout, cache, "--cache-repo", repo)
        assert _sources(again) == {"tools": "local", "app": "local"}
        assert len(proxy.seen) == requests_so_far  # known to be there: nothing asked
        b, _ = _build(capsys, _copy(checkout, tmp_path / "b"), tmp_path / "cache-b",
                      "--cache-repo", repo)
        assert _sources(b) == {"tools": "remote", "app": "remote"}
        assert b["digest"] == a["digest"]
    finally:
        proxy.stop()
