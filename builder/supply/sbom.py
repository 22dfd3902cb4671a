"""``ocibuild sbom``: SPDX 2.3 and CycloneDX 1.5 JSON documents of an image.

Deterministic: packages sorted, identifiers derived from the image digest and
each package's purl and location, ``created`` from ``SOURCE_DATE_EPOCH`` or
else the image's own ``created`` time. The same image gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from typing import Any
from urllib.parse import quote

from .. import __version__
from ..errors import InputError
from ..oci.image import Image
from .elfowners import ElfAttribution, ElfFile, attribute_elf_files
from .inventory import Package, deb_purl, inventory, pypi_name
from .licenses import spdx_id
from .source import Subject

FORMATS = ("spdx-json", "cyclonedx-json")
SUFFIX = {"spdx-json": ".spdx.json", "cyclonedx-json": ".cdx.json"}
_NAMESPACE_BASE = "https://spdx.org/spdxdocs/ocibuild"
_SPDXID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def created_time(image: Image, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    epoch = env.get("SOURCE_DATE_EPOCH", "")
    if epoch.isdigit():
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))
    created = str(image.config.get("created") or "")
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", created)
    return match.group(1) + "Z" if match else "1970-01-01T00:00:00Z"


def image_purl(subject: Subject) -> str:
    """``pkg:oci/<name>@sha256%3A…?arch=…&repository_url=…``."""
    name = subject.name or "image"
    repo = name.split("@", 1)[0]
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:
        repo = repo.rsplit(":", 1)[0]
        last = last.split(":", 1)[0]
    qualifiers = [f"arch={quote(subject.image.platform.architecture, safe='')}"]
    if "/" in repo:
        qualifiers.append(f"repository_url={quote(repo, safe='/:')}")
    return f"pkg:oci/{quote(last, safe='')}@{quote(subject.digest, safe='')}?" + "&".join(
        qualifiers)


def _pkg_ref(p: Package) -> str:
    h = hashlib.sha256(f"{p.purl}\0{p.location}".encode()).hexdigest()[:16]
    return f"{p.ecosystem}-{_SPDXID_UNSAFE.sub('-', p.name)}-{h}"


def generate(subject: Subject, fmt: str, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The SBOM of ``subject`` in ``fmt`` (``spdx-json`` or ``cyclonedx-json``)."""
    return generate_attributed(subject, fmt, environ)[0]


def generate_attributed(subject: Subject, fmt: str, environ: dict[str, str] | None = None,
                        ) -> tuple[dict[str, Any], ElfAttribution]:
    """:func:`generate`, and the attribution of the image's ELF files it includes."""
    if fmt not in FORMATS:
        raise InputError(f"unknown SBOM format {fmt!r} (choose from {', '.join(FORMATS)})")
    elf = attribute_elf_files(subject.image)
    packages = sorted({*inventory(subject.image), *elf.packages}, key=lambda p: p.sort_key)
    created = created_time(subject.image, environ)
    if fmt == "spdx-json":
        return spdx_with_elf(spdx_document(subject, packages, created), packages, elf), elf
    return cyclonedx_with_elf(cyclonedx_document(subject, packages, created), packages,
                              elf), elf


def render(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode()


# -- SPDX 2.3 -------------------------------------------------------------------------

def spdx_document(subject: Subject, packages: list[Package], created: str) -> dict[str, Any]:
    hex_ = subject.digest.split(":", 1)[1]
    name = subject.name or subject.digest
    safe_name = _SPDXID_UNSAFE.sub("-", name.split("@", 1)[0]).strip("-") or "image"
    image_pkg = {
        "SPDXID": "SPDXRef-Image",
        "name": name,
        "versionInfo": subject.digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": hex_}],
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                          "referenceLocator": image_purl(subject)}],
    }
    spdx_packages = [image_pkg]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": "SPDXRef-Image"}]
    for p in packages:
        ident = "SPDXRef-Package-" + _pkg_ref(p)
        entry: dict[str, Any] = {
            "SPDXID": ident,
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": p.license_expression or "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "sourceInfo": f"{'dpkg status' if p.ecosystem == 'deb' else 'Python metadata'}"
                          f" at {p.location}",
            "primaryPackagePurpose": "LIBRARY",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": p.purl}],
        }
        if p.licenses and not p.license_expression:
            entry["licenseComments"] = "stated: " + "; ".join(p.licenses)
        spdx_packages.append(entry)
        relationships.append({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS",
                              "relatedSpdxElement": ident})
    document = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": f"{_NAMESPACE_BASE}/{safe_name}-{hex_}",
        "creationInfo": {"created": created, "creators": [f"Tool: ocibuild-{__version__}"]},
        "packages": spdx_packages,
        "relationships": relationships,
    }
    refs: dict[str, str] = {}
    for p in packages:
        for ident, text in p.license_refs:
            refs.setdefault(ident, text)
    if refs:  # each LicenseRef- an expression uses must be defined in the document
        document["hasExtractedLicensingInfos"] = [
            {"licenseId": ident, "extractedText": text,
             "name": ident.removeprefix("LicenseRef-")} for ident, text in sorted(refs.items())]
    return document


# -- CycloneDX 1.5 --------------------------------------------------------------------

def _cdx_licenses(p: Package) -> list[dict[str, Any]]:
    """The SPDX expression when one is known (an id alone as ``license.id``), else the
    names as stated."""
    expression = p.license_expression
    if expression:
        if " " in expression or expression.startswith("LicenseRef-"):
            return [{"expression": expression}]
        return [{"license": {"id": expression}}]
    out = []
    for name in p.licenses:
        ident = spdx_id(name)
        out.append({"license": {"id": ident} if ident else {"name": name}})
    unique = {json.dumps(x, sort_keys=True): x for x in out}
    return list(unique.values())


def cyclonedx_document(subject: Subject, packages: list[Package], created: str) -> dict[str, Any]:
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"ocibuild:sbom:{subject.digest}")
    name = subject.name or subject.digest
    components = []
    for p in packages:
        component: dict[str, Any] = {
            "type": "library",
            "bom-ref": _pkg_ref(p),
            "name": p.name,
            "version": p.version,
            "purl": p.purl,
        }
        licenses = _cdx_licenses(p)
        if licenses:
            component["licenses"] = licenses
        properties = [{"name": "ocibuild:location", "value": p.location}]
        if p.source:
            properties.append({"name": "ocibuild:deb:source", "value": p.source})
        component["properties"] = properties
        components.append(component)
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "timestamp": created,
            "tools": {"components": [{"type": "application", "name": "ocibuild",
                                      "version": __version__}]},
            "component": {"type": "container", "bom-ref": "image", "name": name,
                          "version": subject.digest, "purl": image_purl(subject)},
        },
        "components": components,
        "dependencies": [{"ref": "image", "dependsOn": [c["bom-ref"] for c in components]}],
    }


# -- ELF files: who shipped each one -----------------------------------------------------

def _owner_key(kind: str, name: str, version: str) -> tuple[str, str, str]:
    return (kind, pypi_name(name) if kind == "pypi" else name, version)


def _host_purl(f: ElfFile, architecture: str) -> str:
    owner = f.owner
    assert owner is not None
    if owner.kind == "deb":  # a hermetic build root's locked package, of the image's arch
        return deb_purl(owner.name, owner.version, architecture or None)
    if owner.kind == "host-deb":
        return deb_purl(owner.name, owner.version)
    if owner.kind == "python":
        return f"pkg:generic/cpython@{quote(owner.version, safe='')}"
    return f"pkg:pypi/{pypi_name(owner.name)}@{quote(owner.version, safe='')}"


def _by_owner(packages: list[Package]) -> dict[tuple[str, str, str], Package]:
    return {_owner_key(p.ecosystem, p.name, p.version): p for p in packages}


def _elf_comment(f: ElfFile) -> str:
    if f.owner is None:
        return "ocibuild: not attributed to any package"
    where = "copied from the build host; " if f.from_host else ""
    return f"ocibuild: {where}{f.owner.kind} {f.owner.name} {f.owner.version} " \
           f"({f.owner.evidence})"


def spdx_with_elf(document: dict[str, Any], packages: list[Package],
                  elf: ElfAttribution) -> dict[str, Any]:
    """Add every ELF file (SPDX ``files``, with SHA-1/SHA-256), each CONTAINed by the
    package that shipped it; host packages become packages of their own."""
    known = _by_owner(packages)
    ids = {_owner_key(p.ecosystem, p.name, p.version): "SPDXRef-Package-" + _pkg_ref(p)
           for p in packages}
    files, rels = [], []
    for f in elf.files:
        ident = "SPDXRef-File-" + hashlib.sha256(f.path.encode()).hexdigest()[:16]
        files.append({"SPDXID": ident, "fileName": "." + f.path,
                      "fileTypes": ["BINARY"],
                      "checksums": [{"algorithm": "SHA1", "checksumValue": f.sha1},
                                    {"algorithm": "SHA256", "checksumValue": f.sha256}],
                      "licenseConcluded": "NOASSERTION", "copyrightText": "NOASSERTION",
                      "comment": _elf_comment(f)})
        owner = f.owner
        parent = "SPDXRef-Image"
        if owner is not None:
            key = _owner_key("deb" if owner.kind == "deb" else owner.kind, owner.name,
                             owner.version)
            if key not in ids and key not in known:
                ident_pkg = "SPDXRef-Package-host-" + hashlib.sha256(
                    repr(key).encode()).hexdigest()[:16]
                ids[key] = ident_pkg
                document["packages"].append({
                    "SPDXID": ident_pkg, "name": owner.name, "versionInfo": owner.version,
                    "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
                    "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION",
                    "copyrightText": "NOASSERTION", "primaryPackagePurpose": "LIBRARY",
                    "sourceInfo": f"ocibuild: {owner.evidence}",
                    "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER",
                                      "referenceType": "purl",
                                      "referenceLocator": _host_purl(f, elf.architecture)}]})
                document["relationships"].append({
                    "spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS",
                    "relatedSpdxElement": ident_pkg})
            parent = ids.get(key, parent)
        rels.append({"spdxElementId": parent, "relationshipType": "CONTAINS",
                     "relatedSpdxElement": ident})
    if files:
        document["files"] = files
        document["relationships"].extend(rels)
        _mark_analyzed(document, rels, {f["SPDXID"]: f for f in files})
    document["comment"] = "ocibuild: " + elf.summary()
    return document


def _mark_analyzed(document: dict[str, Any], rels: list[dict[str, str]],
                   files: dict[str, dict[str, Any]]) -> None:
    """A package that CONTAINS files has them analyzed (SPDX 2.3): its verification
    code is over the ELF files listed for it (their SHA-1s, sorted)."""
    sha1s: dict[str, list[str]] = {}
    for rel in rels:
        file = files[rel["relatedSpdxElement"]]
        sha1s.setdefault(rel["spdxElementId"], []).append(file["checksums"][0]["checksumValue"])
    for package in document["packages"]:
        listed = sha1s.get(package["SPDXID"])
        if listed:
            package["filesAnalyzed"] = True
            package["packageVerificationCode"] = {
                "packageVerificationCodeValue": hashlib.sha1(
                    "".join(sorted(listed)).encode()).hexdigest()}
            package["comment"] = "ocibuild: only its ELF files are listed and analyzed"


def cyclonedx_with_elf(document: dict[str, Any], packages: list[Package],
                       elf: ElfAttribution) -> dict[str, Any]:
    """Add every ELF file as an occurrence (evidence) of the component that shipped
    it; host packages become components of their own; what no package shipped is a
    ``file`` component."""
    refs = {_owner_key(p.ecosystem, p.name, p.version): _pkg_ref(p) for p in packages}
    components = {c["bom-ref"]: c for c in document["components"]}
    for f in elf.files:
        owner = f.owner
        if owner is None:
            ref = "file-" + hashlib.sha256(f.path.encode()).hexdigest()[:16]
            components[ref] = {"type": "file", "bom-ref": ref, "name": f.path,
                               "hashes": [{"alg": "SHA-1", "content": f.sha1},
                                          {"alg": "SHA-256", "content": f.sha256}],
                               "properties": [{"name": "ocibuild:attribution",
                                               "value": "none"}]}
            continue
        key = _owner_key(owner.kind, owner.name, owner.version)
        ref = refs.get(key)
        if ref is None:
            ref = refs[key] = "host-" + hashlib.sha256(repr(key).encode()).hexdigest()[:16]
            components[ref] = {"type": "library", "bom-ref": ref, "name": owner.name,
                               "version": owner.version, "purl": _host_purl(f, elf.architecture),
                               "properties": [{"name": "ocibuild:origin",
                                               "value": owner.evidence}]}
        component = components[ref]
        occurrences = component.setdefault("evidence", {}).setdefault("occurrences", [])
        occurrences.append({"location": f.path})
    document["components"] = list(components.values())
    document["dependencies"] = [{"ref": "image",
                                 "dependsOn": [c["bom-ref"] for c in components.values()]}]
    done = elf.attributed
    document["metadata"]["properties"] = [
        {"name": "ocibuild:elf:files", "value": str(len(elf.files))},
        {"name": "ocibuild:elf:attributed-files", "value": str(len(done))},
        {"name": "ocibuild:elf:bytes", "value": str(sum(f.size for f in elf.files))},
        {"name": "ocibuild:elf:attributed-bytes", "value": str(sum(f.size for f in done))},
    ]
    return document
