"""Debian's ``docker-registry`` (distribution 2.8) on a free loopback port.

:func:`start_registry` runs it with its storage in a directory of the caller's,
optionally with authentication (an ``auth`` config section) or TLS with a fresh
self-signed certificate, and waits until it answers; :meth:`Registry.stop` ends it.
"""

from __future__ import annotations

import datetime
import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

INSTALL = "apt-get install -y docker-registry apache2-utils skopeo"
START_TIMEOUT = 20.0  # seconds for the registry to answer


class MissingTool(RuntimeError):
    """A peer tool is not installed; the message says how to install it."""


def require(tool: str) -> str:
    """The path of ``tool``, or :class:`MissingTool` with the install command."""
    path = shutil.which(tool)
    if path is None:
        raise MissingTool(f"{tool} is not installed; install it with: {INSTALL}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Registry:
    host: str
    root: Path
    proc: subprocess.Popen
    log: Path

    @property
    def port(self) -> int:
        return int(self.host.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def self_signed(tmp: Path, ip: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed server certificate (and key) for ``ip``, as PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
                ipaddress.ip_address(ip))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "tls.crt", tmp / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def start_registry(tmp: Path, auth: dict[str, Any] | None = None,
                   tls: bool = False) -> Registry:
    """Start ``docker-registry serve`` on a free loopback port; wait until it answers."""
    exe = require("docker-registry")
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    root = tmp / "storage"
    root.mkdir(exist_ok=True)
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "ocibuild-test-secret"},
    }
    if auth:
        config["auth"] = auth
    if tls:
        cert, key = self_signed(tmp)
        config["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
    cfg = tmp / "config.yml"
    cfg.write_text(json.dumps(config))  # JSON is YAML
    log = tmp / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([exe, "serve", str(cfg)], stdout=out, stderr=subprocess.STDOUT)
    reg = Registry(f"127.0.0.1:{port}", root, proc, log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            requests.get(f"{'https' if tls else 'http'}://{reg.host}/v2/", timeout=1,
                         verify=False)
            return reg
        except requests.ConnectionError:
            time.sleep(0.1)
    reg.stop()
    raise RuntimeError(f"docker-registry did not start: {log.read_text()[-2000:]}")
