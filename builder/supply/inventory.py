"""What software an image holds: Debian packages and Python distributions.

One streaming pass over the layers, bottom to top, keeps only the small
metadata files that describe packages (never a layer, nor a large file):

* ``/var/lib/dpkg/status.d/<pkg>`` stanzas (distroless-style bases; ocibuild's
  own Debian bases write them) and the classic ``/var/lib/dpkg/status``;
* ``/usr/share/doc/<pkg>/copyright`` for Debian licenses (DEP-5 ``License:``);
* ``*.dist-info/METADATA`` and ``*.egg-info/PKG-INFO`` anywhere, which covers
  site-packages, virtualenvs and a PyInstaller onedir bundle's ``_internal/``;
* ``/etc/os-release`` for the distro qualifier of Debian purls.

Whiteouts are honoured: a package deleted by a later layer is not listed.
"""

from __future__ import annotations

import email.parser
import re
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import quote

from ..layers.reader import iter_members
from ..oci.image import Image
from .licenses import debian_copyright, spdx_expression, spdx_id
from ..layers.whiteouts import apply_whiteouts, whiteout_target

MAX_METADATA_BYTES = 1 << 20
_STATUS_D = re.compile(r"^/var/lib/dpkg/status\.d/([^/]+)$")
_COPYRIGHT = re.compile(r"^/usr/share/doc/([^/]+)/copyright$")
_PY_METADATA = re.compile(r"/[^/]+\.(?:dist-info/METADATA|egg-info/PKG-INFO)$")
NOT_STANZA = (".md5sums", ".list", ".conffiles", ".preinst", ".postinst", ".prerm",
               ".postrm", ".triggers", ".shlibs", ".symbols", ".templates")


@dataclass(frozen=True)
class Package:
    """One package found in the image."""

    ecosystem: str          # "deb" | "pypi"
    name: str
    version: str
    purl: str
    location: str           # the metadata file it was read from
    licenses: tuple[str, ...] = ()      # as stated (names)
    license_expression: str | None = None  # a valid SPDX expression, when known
    license_refs: tuple[tuple[str, str], ...] = ()  # (LicenseRef-…, text) it uses
    arch: str | None = None
    source: str | None = None  # Debian source package
    supplier: str | None = None

    @property
    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.ecosystem, self.name.lower(), self.version, self.location)


def _interesting(path: str) -> bool:
    if path == "/var/lib/dpkg/status" or path == "/etc/os-release":
        return True
    m = _STATUS_D.match(path)
    if m:
        return not m.group(1).endswith(NOT_STANZA)
    return bool(_COPYRIGHT.match(path) or _PY_METADATA.search(path))


def collect_metadata(image: Image) -> dict[str, bytes]:
    """The final content of every package-metadata file (whiteouts applied)."""
    files: dict[str, bytes] = {}
    for index, layer in enumerate(image.layers):
        whiteouts: list[tuple[str, bool]] = []
        added: dict[str, bytes | None] = {}
        for member, tar, info in iter_members(layer, index):
            hidden = whiteout_target(member.path)
            if hidden is not None:
                whiteouts.append(hidden)
            elif _interesting(member.path):
                data = None
                if info.isfile() and info.size <= MAX_METADATA_BYTES:
                    stream = tar.extractfile(info)
                    data = stream.read() if stream else None
                added[member.path] = data
            elif member.path in files:  # replaced by something we do not read
                added[member.path] = None
        apply_whiteouts(files, whiteouts)
        for path, data in added.items():
            if data is None:
                files.pop(path, None)
            else:
                files[path] = data
    return files


def inventory(image: Image) -> list[Package]:
    """Every Debian package and Python distribution in ``image``, sorted."""
    files = collect_metadata(image)
    distro = _distro(files.get("/etc/os-release", b""))
    copyrights = {m.group(1): files[p] for p in files if (m := _COPYRIGHT.match(p))}
    stanzas = [(path, stanza) for path in sorted(files)
               if _STATUS_D.match(path) or path == "/var/lib/dpkg/status"
               for stanza in parse_stanzas(files[path])]
    # Debian links /usr/share/doc/<pkg> of libgcc-s1, libstdc++6… to a sibling built from
    # the same source (gcc-12-base); a base that drops the links keeps the sibling's file.
    by_source: dict[str, bytes] = {}
    for _, stanza in stanzas:
        data = copyrights.get(stanza.get("Package", ""))
        if data is not None:
            by_source.setdefault(_source_name(stanza), data)
    packages: set[Package] = set()
    for path, stanza in stanzas:
        name = stanza.get("Package", "")
        copyright = copyrights.get(name, by_source.get(_source_name(stanza), b""))
        pkg = _deb(stanza, path, distro, copyright)
        if pkg is not None:
            packages.add(pkg)
    for path in sorted(files):
        if _PY_METADATA.search(path):
            pkg = _python(files[path], path)
            if pkg is not None:
                packages.add(pkg)
    return sorted(packages, key=lambda p: p.sort_key)


# -- Debian ---------------------------------------------------------------------------

def parse_stanzas(data: bytes) -> list[dict[str, str]]:
    """RFC 822-style control stanzas (continuation lines joined with newlines)."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = None
    for line in data.decode("utf-8", "replace").splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key:
            current[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def _distro(os_release: bytes) -> str | None:
    fields = {}
    for line in os_release.decode("utf-8", "replace").splitlines():
        k, sep, v = line.partition("=")
        if sep:
            fields[k.strip()] = v.strip().strip('"')
    if fields.get("ID") and fields.get("VERSION_ID"):
        return f"{fields['ID']}-{fields['VERSION_ID']}"
    return None


def _source_name(stanza: dict[str, str]) -> str:
    return (stanza.get("Source") or stanza.get("Package") or "").split(" ")[0]


def deb_purl(name: str, version: str, arch: str | None = None, distro: str | None = None,
             vendor: str = "debian") -> str:
    """The purl of a Debian package, by the purl spec's deb type: the epoch stays in the
    version (``pkg:deb/debian/attr@1:2.4.47-2%2Bb1?arch=amd64``; ``:`` is never
    percent-encoded), qualifiers sorted by key."""
    qualifiers = {k: v for k, v in (("arch", arch), ("distro", distro)) if v}
    purl = f"pkg:deb/{vendor}/{quote(name.lower(), safe='')}@{quote(version, safe=':')}"
    if qualifiers:
        purl += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(qualifiers.items()))
    return purl


def _deb(stanza: dict[str, str], path: str, distro: str | None,
         copyright: bytes) -> Package | None:
    name, version = stanza.get("Package"), stanza.get("Version")
    if not name or not version:
        return None
    status = stanza.get("Status")
    if status and not status.endswith(" installed"):
        return None
    arch = stanza.get("Architecture") or None
    stated = debian_copyright(copyright)
    source = (stanza.get("Source") or "").split(" ")[0] or None
    return Package("deb", name, version, deb_purl(name, version, arch, distro), path,
                   stated.names, stated.expression, stated.refs, arch, source,
                   stanza.get("Maintainer") or None)


# -- Python ---------------------------------------------------------------------------

def pypi_name(name: str) -> str:
    """The purl / PEP 503 normal form: lowercase, runs of ``-_.`` become ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _python(data: bytes, path: str) -> Package | None:
    headers = email.parser.HeaderParser().parsestr(data.decode("utf-8", "replace"))
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return None
    names: list[str] = []
    expression = None
    declared = (headers.get("License-Expression") or "").strip()
    if declared:
        names.append(declared)
        expression = spdx_expression(declared)
    license_field = (headers.get("License") or "").strip()
    if license_field and "\n" not in license_field and len(license_field) <= 80:
        if not names:
            names.append(license_field)
        expression = expression or spdx_expression(license_field)
    for classifier in headers.get_all("Classifier") or []:
        if classifier.startswith("License ::"):
            label = classifier.split("::")[-1].strip()
            if label not in names and label not in ("OSI Approved",):
                names.append(label)
            if expression is None and spdx_id(label):
                expression = spdx_id(label)
    purl = f"pkg:pypi/{pypi_name(name)}@{quote(version, safe='')}"
    return Package("pypi", name, version, purl, path, tuple(names), expression,
                   supplier=headers.get("Author") or None)


python_package = _python
"""A :class:`Package` from a METADATA file's bytes (None without a name and version)."""


def describe(packages: Iterable[Package]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in packages:
        counts[p.ecosystem] = counts.get(p.ecosystem, 0) + 1
    return counts
