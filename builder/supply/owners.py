"""Who shipped a file: the Debian package whose file list names it, or the Python
distribution whose ``RECORD`` (or wheel ``.libs`` dir) holds it.

Pure functions over the small metadata files an image carries (path -> bytes):

* ``/var/lib/dpkg/status.d/<pkg>`` + ``<pkg>.md5sums`` (distroless-style, what
  ocibuild's Debian bases write) and the classic ``/var/lib/dpkg/status`` +
  ``/var/lib/dpkg/info/<pkg>[:arch].list`` / ``.md5sums``;
* ``*.dist-info/RECORD`` (paths relative to the dir holding the dist-info).

Paths come back as the lists spell them (``/lib/x86_64-linux-gnu/libc.so.6``); a
caller that has the image's symlinks resolves them (``/lib -> usr/lib``).
:func:`host_dpkg_owner` reads the same database on the build host.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .inventory import NOT_STANZA, parse_stanzas, pypi_name

STATUS_D = "/var/lib/dpkg/status.d/"
DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_INFO = "/var/lib/dpkg/info/"
_RECORD = re.compile(r"^(.*)/([^/]+)-([^/-]+)\.dist-info/RECORD$")


@dataclass(frozen=True)
class Owner:
    """Where a file comes from: ``kind`` is ``deb``, ``pypi`` or ``host``."""

    kind: str
    name: str
    version: str
    evidence: str  # the metadata file (or host database) that says so


def is_owner_metadata(path: str) -> bool:
    """Whether :func:`file_owners` reads ``path``."""
    if path.startswith(STATUS_D) or path == DPKG_STATUS:
        return True
    if path.startswith(DPKG_INFO):
        return path.endswith((".list", ".md5sums"))
    return path.endswith(".dist-info/RECORD")


def file_owners(metadata: Mapping[str, bytes]) -> dict[str, Owner]:
    """Image path (as listed) -> owner, for every file a package database names."""
    versions: dict[str, str] = {}
    for path, data in metadata.items():
        # a stanza file is named after its package, which may hold dots (libpython3.11)
        if (path.startswith(STATUS_D) and not path.endswith(NOT_STANZA)) or (
                path == DPKG_STATUS):
            for stanza in parse_stanzas(data):
                status = stanza.get("Status", "install ok installed")
                if stanza.get("Package") and status.endswith(" installed"):
                    versions[stanza["Package"]] = stanza.get("Version", "")
    owners: dict[str, Owner] = {}
    for path in sorted(metadata):
        data = metadata[path]
        if path.startswith((STATUS_D, DPKG_INFO)):
            base = posixpath.basename(path)
            package, _, suffix = base.rpartition(".")
            package = package.split(":", 1)[0]
            if suffix not in ("md5sums", "list") or package not in versions:
                continue
            owner = Owner("deb", package, versions[package], path)
            for listed in _listed(data, suffix):
                owners.setdefault(listed, owner)
        elif m := _RECORD.match(path):
            site, name, version = m.group(1) or "/", m.group(2), m.group(3)
            owner = Owner("pypi", pypi_name(name), version, path)
            for row in data.decode("utf-8", "replace").splitlines():
                rel = row.rsplit(",", 2)[0] if row.count(",") >= 2 else row
                full = posixpath.normpath(posixpath.join(site, rel.strip('"')))
                if full.startswith(site.rstrip("/") + "/"):  # not ../../bin of a venv
                    owners.setdefault(full, owner)
    return owners


def _listed(data: bytes, suffix: str) -> list[str]:
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        if suffix == "md5sums":
            _, _, line = line.partition("  ")
        line = line.strip()
        if line and line != "/.":
            out.append("/" + line.lstrip("/"))
    return out


def wheel_libs_owner(path: str, owners: Mapping[str, Owner]) -> Owner | None:
    """The distribution of a library under ``<dist>.libs/`` (auditwheel's vendored
    libraries) whose dist-info sits beside that dir, found through another file
    of the same distribution (``<site>/<dist>/...``)."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if part.endswith(".libs") and i > 0:
            site = "/".join(parts[:i])
            top = pypi_name(part[:-len(".libs")])
            for listed, owner in owners.items():
                if owner.kind == "pypi" and listed.startswith(site + "/") and (
                        owner.name == top or listed.startswith(f"{site}/{part[:-5]}/")):
                    return owner
    return None


class HostDpkg:
    """The build host's dpkg database: which package ships a host file (as ``dpkg -S``
    would say), with its installed version. Indexed once, by file name."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root
        self._index: dict[str, list[tuple[str, str]]] | None = None
        self._versions: dict[str, str] | None = None

    def owner(self, path: str) -> Owner | None:
        """The package of host ``path`` (a symlink or a merged-/usr alias included)."""
        real = self._real(path)
        for listed, package in self.index().get(posixpath.basename(path), []):
            if listed == path or (real is not None and self._real(listed) == real):
                return Owner("host", package, self.versions().get(package, ""),
                             f"{DPKG_INFO}{package}.list (build host)")
        if real is not None and posixpath.basename(real) != posixpath.basename(path):
            return self.owner(real)
        return None

    def index(self) -> dict[str, list[tuple[str, str]]]:
        if self._index is None:
            self._index = {}
            info = self.root / DPKG_INFO.lstrip("/")
            for lst in sorted(info.glob("*.list")) if info.is_dir() else []:
                package = lst.name[:-len(".list")].split(":", 1)[0]
                try:
                    listed = _listed(lst.read_bytes(), "list")
                except OSError:
                    continue
                for name in listed:
                    self._index.setdefault(posixpath.basename(name), []).append((name, package))
        return self._index

    def versions(self) -> dict[str, str]:
        if self._versions is None:
            self._versions = {}
            try:
                data = (self.root / DPKG_STATUS.lstrip("/")).read_bytes()
            except OSError:
                data = b""
            for stanza in parse_stanzas(data):
                if stanza.get("Package") and stanza.get("Status", "").endswith(" installed"):
                    self._versions[stanza["Package"]] = stanza.get("Version", "")
        return self._versions

    def _real(self, path: str) -> str | None:
        try:
            real = (self.root / path.lstrip("/")).resolve(strict=True)
            return "/" + str(real.relative_to(self.root.resolve())).lstrip("/")
        except (OSError, ValueError):
            return None
