"""Read a Debian archive's indexes, trusting only what the signature covers.

``InRelease`` is verified with ``gpgv`` and only the signed text that gpgv
writes out is parsed (never the raw file, so nothing outside the signature is
believed). ``Packages`` is fetched compressed, checked against the size and
SHA256 that the signed ``Release`` lists, and then indexed lazily: stanzas are
split and keyed by ``Package``/``Provides`` with a cheap scan, and only the few
that resolution touches are parsed with python-debian's deb822.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import lzma
import re
import shutil
import subprocess
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Protocol

from debian.deb822 import Packages, Release

from ...errors import DebianError, DigestMismatchError
from ...progress import CountingWriter


SUITE_FIELD = "X-Ocibuild-Suite"

# Preferred first; all are listed in Release and checked against it.
_PACKAGES_NAMES = ("Packages.xz", "Packages.gz", "Packages")


class Transport(Protocol):
    """What the archive needs from HTTP: GET a URL into bytes or into a file."""

    def get_bytes(self, url: str) -> bytes: ...

    def get_file(self, url: str, dest: Path,
                 on_bytes: Callable[[int], None] | None = None) -> None: ...


class RequestsTransport:
    """HTTP(S) through a ``requests.Session``; ``file://`` URLs read locally."""

    def __init__(self, session: object | None = None, timeout: float = 60.0) -> None:
        import requests
        self.session = session or requests.Session()
        self.timeout = timeout

    def get_bytes(self, url: str) -> bytes:
        with tempfile.TemporaryFile() as tmp:
            self._stream(url, tmp)
            tmp.seek(0)
            return tmp.read()

    def get_file(self, url: str, dest: Path,
                 on_bytes: Callable[[int], None] | None = None) -> None:
        """GET ``url`` into ``dest``; ``on_bytes`` hears of every chunk's size."""
        with open(dest, "wb") as raw:
            self._stream(url, CountingWriter(raw, on_bytes) if on_bytes else raw)

    def _stream(self, url: str, out: object) -> None:
        import requests
        if url.startswith("file://"):
            path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
            try:
                with open(path, "rb") as src:
                    shutil.copyfileobj(src, out)  # type: ignore[arg-type]
            except OSError as e:
                raise DebianError(f"cannot read {url}: {e}") from e
            return
        try:
            with self.session.get(url, stream=True, timeout=self.timeout) as resp:  # type: ignore[attr-defined]
                if resp.status_code != 200:
                    raise DebianError(f"GET {url}: HTTP {resp.status_code}")
                for chunk in resp.iter_content(1 << 20):
                    out.write(chunk)  # type: ignore[attr-defined]
        except requests.RequestException as e:
            raise DebianError(f"GET {url}: {e}") from e


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_inrelease(data: bytes, keyring: Path, what: str) -> bytes:
    """Check a clearsigned InRelease with ``gpgv``; return only the signed text."""
    if not keyring.is_file():
        raise DebianError(f"keyring {keyring} not found (name one with 'keyring:' in the "
                          "base definition, or install debian-archive-keyring)")
    if shutil.which("gpgv") is None:
        raise DebianError("gpgv is needed to check InRelease signatures "
                          "(apt-get install -y gpgv)")
    with tempfile.TemporaryDirectory(prefix="ocibuild-gpgv-") as tmp:
        signed = Path(tmp) / "InRelease"
        signed.write_bytes(data)
        out = Path(tmp) / "Release"
        proc = subprocess.run(
            ["gpgv", "--quiet", "--keyring", str(keyring), "--output", str(out), str(signed)],
            capture_output=True, text=True)
        if proc.returncode != 0 or not out.is_file():
            detail = " ".join(proc.stderr.split())[-400:]
            raise DebianError(f"{what}: bad or untrusted signature (keyring {keyring}): {detail}")
        return out.read_bytes()


@dataclass(frozen=True)
class IndexFile:
    """An archive file whose digest went into the lock (``path`` relative to the mirror)."""

    path: str
    size: int
    sha256: str


@dataclass
class PackageIndex:
    """The ``Packages`` of one suite/component/arch, parsed on demand."""

    # name -> [(suite, data, start, end)]: stanzas are slices of the Packages bytes,
    # kept as offsets so indexing a 45 MB Packages file copies none of it (and no
    # str of it is made: descriptions in UTF-8 would make that 2-4 times larger).
    _chunks: dict[str, list[tuple[str, bytes, int, int]]] = field(default_factory=dict)
    _providers: dict[str, set[str]] = field(default_factory=dict)  # virtual -> names
    _parsed: dict[str, list[Packages]] = field(default_factory=dict)

    _GAP = re.compile(rb"\n(?:[ \t]*\n)+")
    _NAME = re.compile(rb"^Package:[ \t]*(\S+)", re.M)
    _PROVIDES = re.compile(rb"^Provides:[ \t]*(.*(?:\n[ \t].*)*)", re.M)

    def add_text(self, text: bytes, suite: str = "") -> None:
        """Index a ``Packages`` file; ``suite`` is remembered as each stanza's origin."""
        start = 0
        for gap in self._GAP.finditer(text):
            if gap.start() > start:
                self._index_stanza(text, start, gap.start(), suite)
            start = gap.end()
        if start < len(text):
            self._index_stanza(text, start, len(text), suite)

    def _index_stanza(self, text: bytes, start: int, end: int, suite: str) -> None:
        m = self._NAME.search(text, start, end)
        if not m:
            return
        name = m.group(1).decode("ascii", errors="replace")
        self._chunks.setdefault(name, []).append((suite, text, start, end))
        p = self._PROVIDES.search(text, start, end)
        if p:
            for item in p.group(1).decode("ascii", errors="replace").replace("\n", " ").split(","):
                virtual = item.strip().split(" ", 1)[0].split("(", 1)[0].strip()
                if virtual:
                    self._providers.setdefault(virtual, set()).add(name)
        self._parsed.pop(name, None)

    def __len__(self) -> int:
        return len(self._chunks)

    def candidates(self, name: str) -> list[Packages]:
        """Every stanza for a real package ``name`` (usually one per suite).

        Each carries its origin suite in the extra field ``X-Ocibuild-Suite``.
        """
        if name not in self._parsed:
            parsed = []
            for suite, text, start, end in self._chunks.get(name, []):
                stanza = Packages(text[start:end].decode("utf-8", errors="replace"))
                stanza[SUITE_FIELD] = suite
                parsed.append(stanza)
            self._parsed[name] = parsed
        return self._parsed[name]

    def merge(self, other: "PackageIndex") -> None:
        for name, chunks in other._chunks.items():
            self._chunks.setdefault(name, []).extend(chunks)
            self._parsed.pop(name, None)
        for virtual, names in other._providers.items():
            self._providers.setdefault(virtual, set()).update(names)

    def providers(self, virtual: str) -> list[str]:
        return sorted(self._providers.get(virtual, ()))


@dataclass
class ArchiveIndex:
    """What ``load_index`` read: the package index plus the facts the lock records."""

    packages: PackageIndex
    files: list[IndexFile]
    codename: str
    suite: str
    version: str


def _decompress(name: str, data: bytes) -> bytes:
    try:
        if name.endswith(".xz"):
            return lzma.decompress(data)
        if name.endswith(".gz"):
            return gzip.decompress(data)
    except (lzma.LZMAError, OSError, EOFError) as e:
        raise DebianError(f"{name}: cannot decompress: {e}") from e
    return data


def _fetch_index(transport: Transport, base: str, name: str, digest: str,
                 by_hash: bool) -> bytes:
    """GET an index by hash when the archive offers it, else (or if gone) by name."""
    if by_hash:
        rel_dir = name.rsplit("/", 1)[0]
        try:
            return transport.get_bytes(f"{base}/{rel_dir}/by-hash/SHA256/{digest}")
        except DebianError:
            pass  # some mirrors prune by-hash early; the digest check below still holds
    return transport.get_bytes(f"{base}/{name}")


def _release_sha256(release: Release) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for item in release.get("SHA256", []):
        out[item["name"]] = (int(item["size"]), item["sha256"].lower())
    return out


def ensure_not_expired(release: Release, what: str, now: datetime | None = None) -> None:
    """Refuse a Release past its ``Valid-Until`` (as apt does): a mirror replaying an
    old, correctly signed Release would otherwise pin packages with known holes."""
    text = release.get("Valid-Until")
    if not text:
        return
    try:
        until = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError) as e:
        raise DebianError(f"{what}: unreadable Valid-Until {text!r}") from e
    if until.tzinfo is None:
        until = until.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    if now > until:
        raise DebianError(f"{what}: the signed Release expired on {text} (Valid-Until); the "
                          "mirror is stale or replaying an old index (for a snapshot mirror, "
                          "lock with check_valid_until=False)")


def load_index(mirror: str, suite: str, components: tuple[str, ...], architecture: str,
               keyring: Path, transport: Transport | None = None, *,
               check_valid_until: bool = True) -> ArchiveIndex:
    """Fetch, verify and index ``dists/<suite>`` for ``architecture`` (plus ``all``)."""
    transport = transport or RequestsTransport()
    base = f"{mirror.rstrip('/')}/dists/{suite}"
    inrelease_path = f"dists/{suite}/InRelease"
    raw = transport.get_bytes(f"{base}/InRelease")
    signed = verify_inrelease(raw, keyring, f"{mirror}/{inrelease_path}")
    release = Release(signed.decode("utf-8", errors="replace"))
    names = {release.get("Suite", ""), release.get("Codename", "")}
    if suite not in names:
        raise DebianError(f"{mirror}/{inrelease_path}: signed Release is for "
                          f"{release.get('Suite')}/{release.get('Codename')}, not {suite}")
    if check_valid_until:
        ensure_not_expired(release, f"{mirror}/{inrelease_path}")
    listed = _release_sha256(release)
    files = [IndexFile(inrelease_path, len(raw), sha256_bytes(raw))]
    index = PackageIndex()
    # As apt does: binary-all is read only when Release lists "all" among its
    # Architectures; "No-Support-for-Architecture-all: Packages" says that
    # binary-<arch> holds the arch:all packages anyway, so binary-all would only
    # repeat them.
    # With "Acquire-By-Hash: yes", indexes are fetched by their digest, as apt
    # does, so a mirror caught mid-sync cannot hand out a Packages file newer or
    # older than the Release that was verified.
    by_hash = release.get("Acquire-By-Hash", "").strip().lower() == "yes"
    arches = [architecture]
    if ("all" in release.get("Architectures", "").split()
            and release.get("No-Support-for-Architecture-all", "").strip() != "Packages"):
        arches.append("all")
    for component in components:
        for arch in arches:
            rel_dir = f"{component}/binary-{arch}"
            found = [n for n in _PACKAGES_NAMES if f"{rel_dir}/{n}" in listed]
            if not found:
                if arch == "all":
                    continue  # most suites fold arch:all into binary-<arch>
                raise DebianError(f"{mirror}/{inrelease_path}: lists no Packages for "
                                  f"{component}/binary-{arch}")
            name = f"{rel_dir}/{found[0]}"
            size, digest = listed[name]
            data = _fetch_index(transport, base, name, digest, by_hash)
            actual = sha256_bytes(data)
            if len(data) != size or actual != digest:
                raise DigestMismatchError(f"{mirror}/dists/{suite}/{name} (checked against "
                                          "the signed Release)", f"sha256:{digest} ({size} bytes)",
                                          f"sha256:{actual} ({len(data)} bytes)")
            files.append(IndexFile(f"dists/{suite}/{name}", size, digest))
            text = _decompress(name, data)
            del data
            index.add_text(text, suite)
    return ArchiveIndex(index, files, release.get("Codename", suite),
                        release.get("Suite", suite), release.get("Version", ""))
