"""Hostile image tarballs given to inspect, audit, sbom and push: each is refused with
one clear error, quickly, in bounded memory (issue 12).

Each starts from a real tarball built by ocibuild, rewritten in code: a deeply
nested ``index.json``, a config descriptor lying about its size, a layer with a
``../`` member or one that does not match its diff_id.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from hostile import assert_unchanged, refused as _refused, run_cli, small_project, snapshot

def refused(args, *, cwd: Path, **kwargs):
    """:func:`hostile.refused`, checking too that nothing in ``cwd`` but the cache
    changed."""
    cache = cwd / "cache"
    before = snapshot(cwd, skip=[cache])
    out = _refused(args, cwd=cwd, env={"OCIBUILD_CACHE": str(cache)}, **kwargs)
    assert_unchanged(before, snapshot(cwd, skip=[cache]))
    return out


COMMANDS = [["inspect"], ["audit"], ["sbom", "--format", "spdx-json"]]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, bytes]:
    """The members of a small image tarball ocibuild built."""
    folder = tmp_path_factory.mktemp("good")
    manifest = small_project(folder)
    out = run_cli(["build", manifest, "-o", folder / "img.tar"], cwd=folder,
                  env={"OCIBUILD_CACHE": str(folder / "cache")})
    assert out.code == 0, out.stderr
    with tarfile.open(folder / "img.tar") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def _write(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _blob(data: bytes) -> tuple[str, str]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return digest, "blobs/sha256/" + digest[7:]


def _manifest(members: dict[str, bytes]) -> tuple[dict, str]:
    index = json.loads(members["index.json"])
    name = "blobs/sha256/" + index["manifests"][0]["digest"][7:]
    return json.loads(members[name]), name


def _with_manifest(members: dict[str, bytes], manifest: dict) -> dict[str, bytes]:
    """``members`` with ``manifest`` stored and index.json pointing at it."""
    out = dict(members)
    data = json.dumps(manifest).encode()
    digest, name = _blob(data)
    out[name] = data
    index = json.loads(members["index.json"])
    index["manifests"][0].update(digest=digest, size=len(data))
    out["index.json"] = json.dumps(index).encode()
    return out


def _with_layer(members: dict[str, bytes], tar_bytes: bytes, diff_id: str | None = None):
    """``members`` with a top layer of ``tar_bytes`` (gzip'd) appended, diff_id as given."""
    manifest, _ = _manifest(members)
    config_name = "blobs/sha256/" + manifest["config"]["digest"][7:]
    config = json.loads(members[config_name])
    blob = gzip.compress(tar_bytes, mtime=0)
    digest, name = _blob(blob)
    out = dict(members)
    out[name] = blob
    config["rootfs"]["diff_ids"].append(diff_id or "sha256:" + hashlib.sha256(tar_bytes).hexdigest())
    config_data = json.dumps(config).encode()
    config_digest, config_blob = _blob(config_data)
    out[config_blob] = config_data
    manifest["config"].update(digest=config_digest, size=len(config_data))
    manifest["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                               "digest": digest, "size": len(blob)})
    return _with_manifest(out, manifest)


def _tar_of(name: str, data: bytes = b"x") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_deeply_nested_index_json_is_a_clear_error(tmp_path, good, command):
    members = dict(good, **{"index.json": b"[" * 100_000 + b"]" * 100_000})
    image = _write(tmp_path / "nested.tar", members)
    refused([*command, image], match=r"index\.json is nested too deeply", cwd=tmp_path)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_config_descriptor_claiming_2_gib_is_refused(tmp_path, good, command):
    manifest, _ = _manifest(good)
    manifest["config"]["size"] = 2 << 30
    image = _write(tmp_path / "lying.tar", _with_manifest(good, manifest))
    refused([*command, image], match=r"config descriptor claims 2147483648 bytes",
            cwd=tmp_path)


@pytest.mark.parametrize("size", [-5, "12", 1.5, 2**70])
def test_descriptor_with_a_bad_size_is_refused(tmp_path, good, size):
    manifest, _ = _manifest(good)
    manifest["layers"][0]["size"] = size
    image = _write(tmp_path / "size.tar", _with_manifest(good, manifest))
    out = refused(["inspect", image], match=r"malformed descriptor .*size", cwd=tmp_path)
    assert "digest mismatch" not in out.error


def test_descriptor_with_a_malformed_digest_is_refused(tmp_path, good):
    manifest, _ = _manifest(good)
    manifest["layers"][0]["digest"] = "sha256:../../../../etc/passwd"
    image = _write(tmp_path / "digest.tar", _with_manifest(good, manifest))
    refused(["inspect", image], match=r"digest .* is not sha256:<64 hex digits>",
            cwd=tmp_path)


@pytest.mark.parametrize("command", [*COMMANDS, ["push"]], ids=lambda c: c[0])
def test_layer_with_a_climbing_member_is_refused(tmp_path, good, command):
    image = _write(tmp_path / "climb.tar", _with_layer(good, _tar_of("../../etc/passwd")))
    args = [*command, image] + (["127.0.0.1:9/x:1"] if command == ["push"] else [])
    refused(args, match=r"member '\.\./\.\./etc/passwd' escapes the image root", cwd=tmp_path)


@pytest.mark.parametrize("command", [["inspect"], ["push"]], ids=lambda c: c[0])
def test_layer_not_matching_its_diff_id_is_refused(tmp_path, good, command):
    image = _write(tmp_path / "diff.tar",
                   _with_layer(good, _tar_of("f"), diff_id="sha256:" + "0" * 64))
    args = [*command, image] + (["127.0.0.1:9/x:1"] if command == ["push"] else [])
    refused(args, match=r"diff_id.*digest mismatch: expected sha256:0{64}", cwd=tmp_path)
