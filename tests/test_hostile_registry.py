"""A malicious registry: each of its tricks ends in one clear error, quickly, in
bounded memory, with nothing outside the output and the cache touched (issue 12).

:class:`EvilRegistry` is a small fake server on 127.0.0.1 (a real registry will
not send endless bodies, stall mid-blob or lie in descriptors). Every loop it
runs is bounded and it stops with the test. Images it serves are made in code.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import socket
import tarfile
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from hostile import assert_unchanged, refused, run_cli, snapshot
from registry_fixtures import free_port, serve_loopback

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
FAST = {"OCIBUILD_REGISTRY_TIMEOUT": "2"}
_CHUNK = b"x" * 65536


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class EvilRegistry:
    """Serves blobs and manifests put into it; ``tricks`` override any request whose
    method and path match (``("GET", "/blobs/")``) with a handler of their own."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[bytes, str]] = {}
        self.tricks: dict[tuple[str, str], Callable] = {}
        self.stop = threading.Event()
        self.server = serve_loopback(self._handle)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()

    # -- content ---------------------------------------------------------------------

    def image(self, layers: list[bytes], *, diff_ids: list[str] | None = None,
              layer_descs: list[dict] | None = None, config_desc: dict | None = None) -> str:
        """Store an image of ``layers`` (tar bytes, gzip'd here); the reference
        ``evil/base@sha256:…`` to it. Descriptors may be overridden to lie."""
        blobs = [gzip.compress(t, mtime=0) for t in layers]
        config = json.dumps({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers",
                       "diff_ids": diff_ids or [_digest(t) for t in layers]}}).encode()
        for blob in [*blobs, config]:
            self.blobs[_digest(blob)] = blob
        descs = [{"mediaType": OCI_LAYER, "digest": _digest(b), "size": len(b)} for b in blobs]
        for desc, override in zip(descs, layer_descs or []):
            desc.update(override)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": _digest(config),
                               "size": len(config), **(config_desc or {})},
                    "layers": descs}
        return self.manifest(json.dumps(manifest).encode())

    def manifest(self, data: bytes, media_type: str = OCI_MANIFEST) -> str:
        digest = _digest(data)
        self.manifests[digest] = self.manifests["1"] = (data, media_type)
        return f"{self.host}/evil/base@{digest}"

    # -- serving ---------------------------------------------------------------------

    def _handle(self, h) -> None:  # type: ignore[no-untyped-def]
        for (method, needle), trick in self.tricks.items():
            if h.command == method and needle in h.path:
                return trick(self, h)
        if h.path == "/v2/":
            return reply(h, 200, b"{}")
        m = re.match(r"^/v2/.+/(manifests|blobs)/([^/?]+)$", h.path)
        if m and m.group(1) == "manifests" and m.group(2) in self.manifests:
            data, media_type = self.manifests[m.group(2)]
            return reply(h, 200, data, {"Content-Type": media_type,
                                        "Docker-Content-Digest": _digest(data)})
        if m and m.group(1) == "blobs" and m.group(2) in self.blobs:
            return reply(h, 200, self.blobs[m.group(2)])
        if h.command == "HEAD" and "/blobs/" in h.path:
            return reply(h, 404, b"")
        return reply(h, 404, json.dumps({"errors": [{"code": "NOT_FOUND"}]}).encode())


def reply(h, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    h.send_response(status)
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def endless(status: int = 200, headers: dict[str, str] | None = None, *, pause: float = 0,
            block: bytes = _CHUNK):
    """A trick answering ``status`` with a body that never ends (until the client goes,
    the test ends, or 4 GiB: every loop here is bounded)."""
    def trick(reg: EvilRegistry, h) -> None:  # type: ignore[no-untyped-def]
        h.send_response(status)
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        try:
            for _ in range((4 << 30) // len(block)):
                if reg.stop.is_set():
                    return
                h.wfile.write(block)
                if pause:
                    time.sleep(pause)
        except OSError:
            return
    return trick


def stall_after(data: bytes, first: int = 10):
    """A trick sending the headers and ``first`` bytes of ``data``, then nothing (for
    at most 30 s, or until the test ends)."""
    def trick(reg: EvilRegistry, h) -> None:  # type: ignore[no-untyped-def]
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data[:first])
        h.wfile.flush()
        reg.stop.wait(30)
        h.close_connection = True
    return trick


def trickle(data: bytes, pause: float):
    """A trick sending ``data`` a byte at a time, ``pause`` seconds apart: never a stall,
    never done (until the client goes or the test ends)."""
    def trick(reg: EvilRegistry, h) -> None:  # type: ignore[no-untyped-def]
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.close_connection = True
        try:
            for i in range(len(data)):
                if reg.stop.wait(pause):
                    return
                h.wfile.write(data[i:i + 1])
                h.wfile.flush()
        except OSError:
            return
    return trick


def cut(reg: EvilRegistry, h) -> None:  # type: ignore[no-untyped-def]
    """Accept, then close the connection without a word."""
    h.close_connection = True
    try:
        h.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


@pytest.fixture
def evil():
    reg = EvilRegistry()
    yield reg
    reg.close()


def _tar(*members: tuple[str, bytes, dict]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, attrs in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            for key, value in attrs.items():
                setattr(info, key, value)
            if info.isreg():
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return raw.getvalue()


def _pull(tmp_path: Path, ref: str, match: str, env: dict | None = None):
    cache = tmp_path / "cache"
    before = snapshot(tmp_path, skip=[cache])
    out = refused(["pull", ref, "-o", tmp_path / "out.tar"], match=match, cwd=tmp_path,
                  env={"OCIBUILD_CACHE": str(cache), **(env or {})})
    assert_unchanged(before, snapshot(tmp_path, skip=[cache]))
    return out


# -- endless and stalled answers ---------------------------------------------------------

def test_endless_ping_body_is_never_read(tmp_path, evil):
    evil.tricks[("GET", "/v2/")] = lambda reg, h: (endless()(reg, h) if h.path == "/v2/"
                                                   else reply(h, 404, b""))
    out = _pull(tmp_path, f"{evil.host}/evil/base:1", match=r"manifest .*: 404")
    assert out.rss < 150 << 20


def test_endless_token_answer_is_capped(tmp_path, evil):
    realm = f"http://{evil.host}/token"
    evil.tricks[("GET", "/v2/")] = lambda reg, h: reply(
        h, 401, b"", {"WWW-Authenticate": f'Bearer realm="{realm}",service="evil"'})
    evil.tricks[("GET", "/token")] = endless()
    _pull(tmp_path, f"{evil.host}/evil/base:1",
          match=r"token service: the answer is larger than 1048576 bytes")


def test_endless_error_body_is_capped(tmp_path, evil):
    evil.tricks[("GET", "/manifests/")] = endless(404)
    _pull(tmp_path, f"{evil.host}/evil/base:1", match=r"manifest .*: 404 Not Found")


def test_endless_manifest_is_capped(tmp_path, evil):
    evil.tricks[("GET", "/manifests/")] = endless(200, {"Content-Type": OCI_MANIFEST})
    _pull(tmp_path, f"{evil.host}/evil/base:1", match=r"larger than 4194304 bytes")


def test_trickled_manifest_is_cut_off_at_the_timeout(tmp_path, evil):
    evil.tricks[("GET", "/manifests/")] = endless(200, {"Content-Type": OCI_MANIFEST},
                                                  pause=0.05, block=b"[")
    out = _pull(tmp_path, f"{evil.host}/evil/base:1", match=r"took longer than 2 s",
                env=FAST)
    assert out.seconds < 8


def test_blob_stalling_after_a_few_bytes_says_stalled_within_the_policy(tmp_path, evil):
    ref = evil.image([_tar(("f", b"hello" * 1000, {}))])
    layer = [d for d in evil.blobs.values() if d[:2] == b"\x1f\x8b"][0]
    evil.tricks[("GET", "/blobs/" + _digest(layer))] = stall_after(layer)
    out = _pull(tmp_path, ref, match=r"download failed after 10 bytes: stalled: no data for "
                                     r"2 s \(gave up after 1 attempt\)", env=FAST)
    assert "connection error" not in out.error.lower()
    assert out.seconds < 6


def test_blob_trickled_a_byte_at_a_time_is_cut_off_as_too_slow(tmp_path, evil):
    ref = evil.image([_tar(("f", b"hello" * 1000, {}))])
    layer = [d for d in evil.blobs.values() if d[:2] == b"\x1f\x8b"][0]
    evil.tricks[("GET", "/blobs/" + _digest(layer))] = trickle(layer, pause=0.2)
    out = _pull(tmp_path, ref, match=r"download too slow after \d+ bytes: \d+ bytes in the "
                                     r"last 2 s \(under 1024 bytes/s\)", env=FAST)
    assert out.seconds < 8


def test_connection_cut_after_connecting_is_not_cannot_connect(tmp_path, evil):
    evil.tricks[("GET", "/v2/")] = cut
    out = _pull(tmp_path, f"{evil.host}/evil/base:1",
                match=r"connection dropped by the registry after connecting", env=FAST)
    assert "cannot connect" not in out.error


def test_nothing_listening_says_cannot_connect(tmp_path):
    _pull(tmp_path, f"127.0.0.1:{free_port()}/evil/base:1", match=r"cannot connect", env=FAST)


def test_permanent_push_failure_says_gave_up_once(tmp_path, evil):
    image = _built(tmp_path)
    evil.tricks[("POST", "/blobs/uploads/")] = lambda reg, h: reply(h, 503, b"")
    out = refused(["push", image, f"{evil.host}/evil/app:1"], cwd=tmp_path,
                  match=r"503 .*\(gave up after \d attempts\)$", env=FAST)
    assert out.error.count("gave up after") == 1


def test_refused_push_does_not_say_gave_up(tmp_path, evil):
    image = _built(tmp_path)
    evil.tricks[("POST", "/blobs/uploads/")] = lambda reg, h: reply(
        h, 400, json.dumps({"errors": [{"code": "DENIED", "message": "no"}]}).encode())
    out = refused(["push", image, f"{evil.host}/evil/app:1"], cwd=tmp_path,
                  match=r"400 DENIED: no$")
    assert "gave up" not in out.error


def _built(tmp_path: Path) -> Path:
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "m.yaml").write_text("image: evil/app:1\nlayers:\n  - name: a\n"
                                     "    files: [{src: a.txt, dest: /a.txt}]\n")
    out = run_cli(["build", tmp_path / "m.yaml", "-o", tmp_path / "app.tar"], cwd=tmp_path,
                  env={"OCIBUILD_CACHE": str(tmp_path / "cache")})
    assert out.code == 0, out.stderr
    return tmp_path / "app.tar"


def test_bad_registry_timeout_setting_is_an_error(tmp_path, evil):
    _pull(tmp_path, f"{evil.host}/evil/base:1", match=r"OCIBUILD_REGISTRY_TIMEOUT='soon'",
          env={"OCIBUILD_REGISTRY_TIMEOUT": "soon"})


def test_deeply_nested_manifest_is_a_clear_error(tmp_path, evil):
    ref = evil.manifest(b"[" * 200_000 + b"]" * 200_000)
    _pull(tmp_path, ref, match=r"nested too deeply")


# -- lying descriptors -----------------------------------------------------------------

def _cached(tmp_path: Path, data: bytes) -> Path:
    """``data`` as a valid blob in the test's cache (as an earlier pull left it)."""
    path = tmp_path / "cache" / "blobs" / "sha256" / _digest(data)[7:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_negative_size_does_not_evict_a_cached_blob(tmp_path, evil):
    layer = gzip.compress(_tar(("f", b"precious", {})), mtime=0)
    blob = _cached(tmp_path, layer)
    ref = evil.image([_tar(("f", b"precious", {}))], layer_descs=[{"size": -5}])
    out = _pull(tmp_path, ref, match=r"size -5 is not a byte count from 0 to")
    assert "digest mismatch" not in out.error
    assert blob.read_bytes() == layer


def test_wrong_size_for_a_cached_blob_keeps_the_blob(tmp_path, evil):
    ref = evil.image([_tar(("f", b"x", {}))])
    config = [d for d in evil.blobs.values() if d.startswith(b"{")][0]
    blob = _cached(tmp_path, config)
    manifest = json.loads(evil.manifests[ref.rsplit("@", 1)[1]][0])
    manifest["config"]["size"] += 7
    ref = evil.manifest(json.dumps(manifest).encode())
    _pull(tmp_path, ref, match=rf"says {len(config) + 7} bytes; the blob is {len(config)} bytes")
    assert blob.read_bytes() == config


@pytest.mark.parametrize("override, match", [
    ({"digest": "sha256:../../../../etc/passwd"}, r"is not sha256:<64 hex digits>"),
    ({"digest": "md5:" + "0" * 32}, r"is not sha256:<64 hex digits>"),
    ({"size": "100"}, r"size '100' is not a byte count"),
    ({"size": 1 << 50}, r"size 1125899906842624 is not a byte count"),
    ({"mediaType": "application/x-evil"}, r"unsupported media type 'application/x-evil'"),
    ({"mediaType": "not a media type\n"}, r"is not a media type"),
])
def test_malformed_layer_descriptor_is_refused_before_any_fetch(tmp_path, evil, override, match):
    ref = evil.image([_tar(("f", b"x", {}))], layer_descs=[override])
    _pull(tmp_path, ref, match=match)
    assert not (tmp_path / "cache" / "blobs").exists()


def test_config_descriptor_claiming_2_gib_is_refused(tmp_path, evil):
    ref = evil.image([_tar(("f", b"x", {}))], config_desc={"size": 2 << 30})
    _pull(tmp_path, ref, match=r"config .* claims 2147483648 bytes")


def test_blob_longer_than_its_descriptor_is_refused(tmp_path, evil):
    ref = evil.image([_tar(("f", b"x", {}))])
    layer = [d for d in evil.blobs.values() if d[:2] == b"\x1f\x8b"][0]
    evil.tricks[("GET", "/blobs/" + _digest(layer))] = lambda reg, h: reply(h, 200, layer * 3)
    _pull(tmp_path, ref, match=r"sent more than the \d+ bytes its descriptor says")


# -- hostile bases: checked exactly like tar: layers -------------------------------------

def _build_on(tmp_path: Path, base: str, match: str):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "a.txt").write_text("a\n")
    (folder / "m.yaml").write_text(f"image: evil/app:1\nbase: {base}\nlayers:\n  - name: a\n"
                                   "    files: [{src: a.txt, dest: /a.txt}]\n")
    cache = tmp_path / "cache"
    before = snapshot(tmp_path, skip=[cache])
    out = refused(["build", folder / "m.yaml", "-o", folder / "out.tar"], match=match,
                  cwd=folder, env={"OCIBUILD_CACHE": str(cache)})
    assert_unchanged(before, snapshot(tmp_path, skip=[cache]))
    return out


@pytest.mark.parametrize("members, match", [
    ([("h", b"", {"type": tarfile.LNKTYPE, "linkname": "../../etc/shadow"})],
     r"'h' -> '\.\./\.\./etc/shadow' escapes the image root"),
    ([("h", b"", {"type": tarfile.LNKTYPE, "linkname": "etc/shadow"})],
     r"not an earlier regular file"),
    ([("a", b"", {"type": tarfile.SYMTYPE, "linkname": "/"}), ("a/x", b"x", {})],
     r"'a/x' lies below the symlink /a"),
    ([("dev/sda", b"", {"type": tarfile.BLKTYPE, "devmajor": 8})], r"is a device or FIFO"),
    ([("etc/.wh...", b"", {})], r"'etc/\.wh\.\.\.' escapes the image root"),
    ([("f", b"x", {"uid": 2**40})], r"uid 1099511627776, outside"),
], ids=["hardlink-outside", "hardlink-missing", "below-symlink", "device", "whiteout-dotdot",
        "uid-2**40"])
def test_hostile_base_member_is_refused(tmp_path, evil, members, match):
    _build_on(tmp_path, evil.image([_tar(("etc/passwd", b"root:x:0:0::/:\n", {}), *members)]),
              match)


def test_base_layer_not_matching_its_diff_id_is_refused(tmp_path, evil):
    ref = evil.image([_tar(("f", b"x", {}))], diff_ids=["sha256:" + "0" * 64])
    _build_on(tmp_path, ref, match=r"diff_id.*digest mismatch: expected sha256:0{64}, got")


def test_pull_refuses_a_layer_not_matching_its_diff_id(tmp_path, evil):
    ref = evil.image([_tar(("f", b"x", {}))], diff_ids=["sha256:" + "0" * 64])
    _pull(tmp_path, ref, match=r"diff_id.*digest mismatch: expected sha256:0{64}, got")
    assert not (tmp_path / "out.tar").exists()


def test_pull_refuses_a_layer_with_a_climbing_member(tmp_path, evil):
    _pull(tmp_path, evil.image([_tar(("../../x", b"x", {}))]), match=r"escapes the image root")


def test_base_gzip_bomb_with_a_bogus_diff_id_stops_at_its_header(tmp_path, evil):
    info = tarfile.TarInfo("zeros")
    info.size = 12 << 30
    head = info.tobuf(tarfile.PAX_FORMAT)
    comp = __import__("zlib").compressobj(9, 8, 31)
    bomb = comp.compress(head) + comp.compress(b"\0" * (64 << 20)) + comp.flush()
    evil.blobs[_digest(bomb)] = bomb
    ref = evil.image([b""], diff_ids=["sha256:" + "1" * 64],
                     layer_descs=[{"digest": _digest(bomb), "size": len(bomb)}])
    out = _build_on(tmp_path, ref, match=r"'zeros' ends past 8589934592 bytes of tar")
    assert out.seconds < 5
