"""Real peers for the registry tests, all on 127.0.0.1.

- :func:`start_registry` runs Debian's ``docker-registry`` (distribution 2.8)
  on a free port with its storage in a temporary directory, optionally with
  htpasswd or token authentication;
- :class:`FaultProxy` forwards to it and injects the faults a test asks for
  (statuses, ``Retry-After``, a connection cut mid-body, corrupted bytes) and
  records every request it sees;
- :class:`TokenIssuer` is a tiny token service signing JWTs the way
  docker/distribution's token auth expects (RS256, ``kid`` in libtrust form,
  ``x5c`` chain);
- :func:`make_image` builds small images in ``tmp_path``.

A missing tool fails the test with how to install it; nothing is skipped.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import http.client
import io
import json
import os
import socket
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest

from builder.oci.image import Image, Layer, append_layers, empty_image
from builder.oci.types import Descriptor, MediaType, Platform
from peers.registry import MissingTool, Registry, free_port, self_signed  # noqa: F401
from peers.registry import require as _require
from peers.registry import start_registry as _start_registry



def require(tool: str) -> str:
    """The path of ``tool``; a missing one fails the test with the install command."""
    try:
        return _require(tool)
    except MissingTool as e:
        pytest.fail(str(e), pytrace=False)


# -- images ---------------------------------------------------------------------

def make_layer(tmp: Path, name: str, files: dict[str, bytes]) -> Layer:
    """A gzip'd tar layer written to ``tmp``, its opener reading the file."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    blob = gzip.compress(tar_bytes, mtime=0)
    path = tmp / f"{name}.tar.gz"
    path.write_bytes(blob)
    desc = Descriptor(MediaType.OCI_LAYER_GZIP.value,
                      "sha256:" + hashlib.sha256(blob).hexdigest(), len(blob))
    return Layer(desc, "sha256:" + hashlib.sha256(tar_bytes).hexdigest(),
                 lambda: path.open("rb"), history={"created_by": f"test {name}"},
                 uncompressed_size=len(tar_bytes), name=name)


def make_image(tmp: Path, tag: str = "a", layers: int = 2, size: int = 2000) -> Image:
    """A small image whose layers hold random bytes (so digests differ per call)."""
    tmp.mkdir(parents=True, exist_ok=True)
    image = empty_image(Platform(), "1970-01-01T00:00:00Z")
    made = [make_layer(tmp, f"{tag}{i}", {f"f{i}.bin": os.urandom(size)})
            for i in range(layers)]
    return append_layers(image, *made)


def big_layer(tmp: Path, size: int) -> Layer:
    """A layer blob of ``size`` random-ish bytes (not a valid gzip; registries don't care)."""
    path = tmp / f"big-{size}.bin"
    h = hashlib.sha256()
    block = os.urandom(1 << 20)
    with path.open("wb") as f:
        left = size
        i = 0
        while left:
            chunk = block[: min(left, len(block))]
            chunk = i.to_bytes(8, "big") + chunk[8:] if len(chunk) > 8 else chunk
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
            i += 1
    digest = "sha256:" + h.hexdigest()
    return Layer(Descriptor(MediaType.OCI_LAYER_GZIP.value, digest, size), digest,
                 lambda: path.open("rb"), name="big")


# -- the registry -----------------------------------------------------------------
# (peers/registry.py: shared with bench/run.py, which must run without pytest)

def start_registry(tmp: Path, auth: dict[str, Any] | None = None,
                   tls: bool = False) -> Registry:
    """:func:`peers.registry.start_registry`; a missing tool fails the test."""
    try:
        return _start_registry(tmp, auth, tls)
    except MissingTool as e:
        pytest.fail(str(e), pytrace=False)


def htpasswd_file(tmp: Path, users: dict[str, str]) -> Path:
    exe = require("htpasswd")
    lines = []
    for user, password in users.items():
        done = subprocess.run([exe, "-Bbn", user, password], capture_output=True, text=True,
                              check=True)
        lines.append(done.stdout.strip())
    path = tmp / "htpasswd"
    path.write_text("\n".join(lines) + "\n")
    return path


def skopeo(*args: str, timeout: float = 120) -> str:
    exe = require("skopeo")
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed: {done.stderr}")
    return done.stdout


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A plain-HTTP docker-registry shared by a test module (import this into it)."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


def serve_loopback(handle: Callable[[BaseHTTPRequestHandler], None]) -> ThreadingHTTPServer:
    """An HTTP/1.1 server on a free loopback port calling ``handle`` for every request."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            handle(self)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# -- the fault-injecting proxy -------------------------------------------------------

@dataclass
class Fault:
    """Applied to the next ``times`` requests matching ``method`` and ``path_has``.

    ``status``: answer this status (with ``headers``) without forwarding.
    ``cut_after``: read this many body bytes, then drop the connection; with
    ``forward_partial`` those bytes are first sent on to the registry.
    ``corrupt``: forward, then flip a byte in the response body.
    """

    method: str
    path_has: str = ""
    times: int = 1
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None
    forward_partial: bool = False
    corrupt: bool = False
    skip: int = 0


_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class FaultProxy:
    """A loopback HTTP proxy in front of a registry, under the test's control."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: list[Fault] = []
        self.seen: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self.server = serve_loopback(self._serve)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def count(self, method: str, path_has: str = "") -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.seen if m == method and path_has in p)

    def _match(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.times > 0 and f.method == method and f.path_has in path:
                    if f.skip:
                        f.skip -= 1
                        return None
                    f.times -= 1
                    return f
        return None

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        method, path = h.command, h.path
        length = int(h.headers.get("Content-Length") or 0)
        fault = self._match(method, path)
        status_seen = fault.status if fault and fault.status else 0
        with self.lock:
            self.seen.append((method, path, status_seen))
        if fault and fault.status:
            _drain(h, length)
            body = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "injected"}]}
                              ).encode()
            h.send_response(fault.status)
            for k, v in fault.headers.items():
                h.send_header(k, v)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if method != "HEAD":
                h.wfile.write(body)
            return
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in h.headers.items():
            if k.lower() not in _HOP:
                conn.putheader(k, v)
        conn.endheaders()
        left = length
        if fault and fault.cut_after is not None:
            limit = min(fault.cut_after, length)
            got = 0
            while got < limit:
                data = h.rfile.read(min(65536, limit - got))
                if not data:
                    break
                got += len(data)
                if fault.forward_partial:
                    conn.send(data)
            conn.close()
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        while left:
            data = h.rfile.read(min(65536, left))
            if not data:
                break
            conn.send(data)
            left -= len(data)
        resp = conn.getresponse()
        h.send_response(resp.status, resp.reason)
        headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
        if method == "HEAD" or resp.status in (204, 304):
            for k, v in headers:
                h.send_header(k, v)
            h.end_headers()
            resp.read()
            conn.close()
            return
        body = resp.read()
        if fault and fault.corrupt and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        for k, v in headers:
            if k.lower() != "content-length":
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        conn.close()


def _drain(h: BaseHTTPRequestHandler, length: int) -> None:
    while length:
        data = h.rfile.read(min(65536, length))
        if not data:
            return
        length -= len(data)


# -- the token issuer ------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_kid(public_der: bytes) -> str:
    """docker/libtrust's key id: sha256 of the DER key, 240 bits, base32 in groups of 4."""
    b32 = base64.b32encode(hashlib.sha256(public_der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


class TokenIssuer:
    """Issues registry tokens to known users (anonymous: pull only) on loopback."""

    service = "ocibuild-test-registry"
    issuer = "ocibuild-test-issuer"

    def __init__(self, tmp: Path, users: dict[str, str], ttl: int = 300) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        from cryptography.x509.oid import NameOID

        self.users, self.ttl = users, ttl
        self.requests: list[dict[str, Any]] = []
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ocibuild test token signer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        self.cert_path = tmp / "token-signer.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        header = {"typ": "JWT", "alg": "RS256", "kid": libtrust_kid(der),
                  "x5c": [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)
                                           ).decode()]}
        self._header = _b64url(json.dumps(header).encode())

        def sign(data: bytes) -> bytes:
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())

        self._sign: Callable[[bytes], bytes] = sign
        self.server = serve_loopback(self._token)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def registry_auth(self) -> dict[str, Any]:
        return {"token": {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                          "rootcertbundle": str(self.cert_path)}}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _token(self, h: BaseHTTPRequestHandler) -> None:
        from urllib.parse import parse_qs, urlsplit

        query = parse_qs(urlsplit(h.path).query)
        user = ""
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(user) != password:
                self.requests.append({"user": user, "ok": False})
                _reply(h, 401, {"details": "bad credentials"})
                return
        access = []
        for scope in query.get("scope", []):
            for part in scope.split(" "):
                kind, _, rest = part.partition(":")
                name, _, actions = rest.rpartition(":")
                granted = [a for a in actions.split(",") if user or a == "pull"]
                access.append({"type": kind, "name": name, "actions": granted})
        self.requests.append({"user": user, "ok": True, "scope": query.get("scope", [])})
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + self.ttl,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing_input = f"{self._header}.{_b64url(json.dumps(claims).encode())}"
        token = f"{signing_input}.{_b64url(self._sign(signing_input.encode()))}"
        _reply(h, 200, {"token": token, "expires_in": self.ttl})


def _reply(h: BaseHTTPRequestHandler, status: int, obj: dict[str, Any]) -> None:
    body = json.dumps(obj).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)
