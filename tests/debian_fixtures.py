"""A tiny, real Debian archive built in ``tmp_path``: for the tests of builder.sources.debian.

``make_deb`` builds a ``.deb`` with ``dpkg-deb --build``; ``DebArchive`` lays out
``pool/``, ``dists/<suite>/main/binary-amd64/Packages{,.xz}``, ``Release`` and an
``InRelease`` clearsigned with a throwaway key (made once per session in a
temporary GNUPGHOME); ``serve`` publishes a directory on 127.0.0.1.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import lzma
import os
import subprocess
import textwrap
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


def _run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, env=env)


def make_deb(out_dir: Path, name: str, version: str = "1.0", arch: str = "amd64", *,
             depends: str = "", pre_depends: str = "", provides: str = "",
             files: dict[str, bytes] | None = None, modes: dict[str, int] | None = None,
             symlinks: dict[str, str] | None = None, hardlinks: dict[str, str] | None = None,
             compression: str = "xz") -> Path:
    """Build ``<name>_<version>_<arch>.deb``; ``files`` maps image paths to contents."""
    stage = out_dir / f"stage-{name}-{version}"
    (stage / "DEBIAN").mkdir(parents=True)
    fields = [f"Package: {name}", f"Version: {version}", f"Architecture: {arch}",
              "Maintainer: Test <test@example.invalid>"]
    if pre_depends:
        fields.append(f"Pre-Depends: {pre_depends}")
    if depends:
        fields.append(f"Depends: {depends}")
    if provides:
        fields.append(f"Provides: {provides}")
    fields.append(f"Description: test package {name}\n second line of the description")
    (stage / "DEBIAN" / "control").write_text("\n".join(fields) + "\n")
    for path, data in (files or {}).items():
        target = stage / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod((modes or {}).get(path, 0o644))
    for path, dest in (symlinks or {}).items():
        target = stage / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(dest, target)
    for path, existing in (hardlinks or {}).items():
        os.link(stage / existing.lstrip("/"), stage / path.lstrip("/"))
    deb = out_dir / f"{name}_{version}_{arch}.deb"
    _run("dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(stage), str(deb))
    return deb


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class GpgKey:
    home: Path
    keyring: Path          # exported public key, usable with gpgv --keyring

    def env(self) -> dict[str, str]:
        return {**os.environ, "GNUPGHOME": str(self.home)}


def make_gpg_key(directory: Path,
                 uid: str = "ocibuild test archive <archive@example.invalid>") -> GpgKey:
    home = directory / "gnupg"
    home.mkdir(mode=0o700, parents=True)
    key = GpgKey(home, directory / "archive-keyring.gpg")
    _run("gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign",
         "never", env=key.env())
    key.keyring.write_bytes(_run("gpg", "--batch", "--export", env=key.env()).stdout)
    return key


@dataclass
class DebArchive:
    """A signed archive at ``root`` for one suite, component ``main``, the
    ``architectures`` given (a package of ``Architecture: all`` is in each)."""

    root: Path
    key: GpgKey
    suite: str = "testing-ocibuild"
    debs: list[Path] = field(default_factory=list)
    by_hash: bool = False     # also publish indexes under by-hash/SHA256/ (as Debian does)
    valid_until: str = ""     # a Valid-Until date for Release, e.g. in the past
    architectures: tuple[str, ...] = ("amd64",)

    def add(self, deb: Path) -> None:
        self.debs.append(deb)

    def publish(self) -> None:
        """Write pool/, Packages, Packages.xz, Release and InRelease."""
        stanzas: dict[str, list[str]] = {arch: [] for arch in self.architectures}
        for deb in sorted(self.debs):
            name = deb.name.split("_", 1)[0]
            pool = self.root / "pool" / "main" / name[0] / name
            pool.mkdir(parents=True, exist_ok=True)
            dest = pool / deb.name
            dest.write_bytes(deb.read_bytes())
            control = _run("dpkg-deb", "--field", str(dest)).stdout.decode().rstrip("\n")
            rel = dest.relative_to(self.root).as_posix()
            arch = deb.stem.rsplit("_", 1)[1]
            for each in self.architectures if arch == "all" else [arch]:
                stanzas.setdefault(each, []).append(
                    f"{control}\nFilename: {rel}\nSize: {dest.stat().st_size}\n"
                    f"SHA256: {sha256_file(dest)}\n")
        dist = self.root / "dists" / self.suite
        lines = []
        for arch in self.architectures:
            bin_dir = dist / "main" / f"binary-{arch}"
            bin_dir.mkdir(parents=True, exist_ok=True)
            packages = "\n".join(stanzas[arch]).encode()
            (bin_dir / "Packages").write_bytes(packages)
            (bin_dir / "Packages.xz").write_bytes(lzma.compress(packages))
            for f in sorted(p for p in bin_dir.iterdir() if p.is_file()):
                rel = f.relative_to(dist).as_posix()
                lines.append(f" {sha256_file(f)} {f.stat().st_size:>8} {rel}")
                if self.by_hash:
                    (bin_dir / "by-hash" / "SHA256").mkdir(parents=True, exist_ok=True)
                    (bin_dir / "by-hash" / "SHA256" / sha256_file(f)).write_bytes(
                        f.read_bytes())
        release = textwrap.dedent(f"""\
            Origin: ocibuild-test
            Suite: {self.suite}
            Codename: {self.suite}
            Version: 99.1
            Architectures: {" ".join(self.architectures)}
            Components: main
            No-Support-for-Architecture-all: Packages
            """) + ("Acquire-By-Hash: yes\n" if self.by_hash else "")
        if self.valid_until:
            release += f"Valid-Until: {self.valid_until}\n"
        release += "SHA256:\n"
        release += "\n".join(lines) + "\n"
        (dist / "Release").write_text(release)
        inrelease = dist / "InRelease"
        inrelease.unlink(missing_ok=True)
        _run("gpg", "--batch", "--yes", "--clearsign", "--output", str(inrelease),
             str(dist / "Release"), env=self.key.env())

    def packages_path(self) -> Path:
        return self.root / "dists" / self.suite / "main" / "binary-amd64" / "Packages.xz"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


BASE_YAML = """\
name: {name}
debian:
  suite: {suite}
  architecture: amd64
  components: [main]
  keyring: {keyring}
packages: [{packages}]
exclude: [{exclude}]
users:
  - {{name: app, uid: 1000, gid: 1000}}
directories:
  - {{path: /tmp, mode: "1777"}}
timezone: Etc/UTC
config:
  user: nonroot
  env: {{SSL_CERT_FILE: /etc/ssl/certs/ca-certificates.crt}}
"""


def write_definition(directory: Path, archive: DebArchive, packages: list[str],
                     exclude: tuple[str, ...] | list[str] = (), name: str = "tiny") -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(BASE_YAML.format(name=name, suite=archive.suite, keyring=archive.key.keyring,
                                     packages=", ".join(packages), exclude=", ".join(exclude)))
    return path


# ---------------------------------------------------------------- pytest fixtures
# Test modules import these names; pytest finds fixtures in the module namespace.
import pytest  # noqa: E402

CERT_A = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
CERT_B = b"-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----"   # no final newline


@pytest.fixture(scope="session")
def gpg_key(tmp_path_factory) -> GpgKey:
    return make_gpg_key(tmp_path_factory.mktemp("gpg"))


def build_tiny_archive(root: Path, key: GpgKey) -> DebArchive:
    """The archive most tests use: a dependency chain, an alternative, a virtual package."""
    debs = root / "debs"
    debs.mkdir(parents=True)
    archive = DebArchive(root / "archive", key)
    add = archive.add
    add(make_deb(debs, "tiny-libc", "1.5"))
    add(make_deb(debs, "tiny-libc", "2.0", compression="zstd",
                 files={"/usr/lib/libtiny.so.1": b"\x7fELF tiny", "/usr/bin/tool": b"#tool\n",
                        "/usr/share/doc/tiny-libc/copyright": b"MIT\n",
                        "/usr/share/doc/tiny-libc/changelog.gz": b"log",
                        "/usr/share/man/man1/tool.1.gz": b"man",
                        "/usr/share/locale/de/LC_MESSAGES/tool.mo": b"mo"},
                 modes={"/usr/bin/tool": 0o755},
                 symlinks={"/usr/lib/libtiny.so": "libtiny.so.1"},
                 hardlinks={"/usr/bin/tool2": "/usr/bin/tool"}))
    add(make_deb(debs, "app", "1.0", depends="tiny-libc:any (>= 2.0), missing-pkg | tiny-alt, "
                 "www-browser", pre_depends="debconf (>= 0.5) | debconf-2.0",
                 files={"/usr/bin/app": b"#!app\n"}, modes={"/usr/bin/app": 0o755}))
    add(make_deb(debs, "tiny-alt", "1.0", arch="all", compression="gzip",
                 files={"/usr/share/tiny-alt/data": b"alt\n"}))
    add(make_deb(debs, "tiny-browser", "3.0", provides="www-browser",
                 files={"/usr/bin/browse": b"b"}))
    add(make_deb(debs, "debconf", "1.5", arch="all", files={"/usr/bin/debconf": b"d"}))
    add(make_deb(debs, "ca-certificates", "2024", arch="all", depends="debconf",
                 files={"/usr/share/ca-certificates/test/b.crt": CERT_B,
                        "/usr/share/ca-certificates/test/a.crt": CERT_A}))
    add(make_deb(debs, "tzdata", "2024a", arch="all",
                 files={"/usr/share/zoneinfo/Etc/UTC": b"TZif2 utc"}))
    add(make_deb(debs, "unused", "1.0", files={"/usr/bin/unused": b"u"}))
    archive.publish()
    return archive


@pytest.fixture
def tiny_archive(tmp_path, gpg_key) -> DebArchive:
    return build_tiny_archive(tmp_path / "repo", gpg_key)


@pytest.fixture
def mirror(tiny_archive) -> Iterator[str]:
    with serve(tiny_archive.root) as url:
        yield url
