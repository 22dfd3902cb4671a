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
from .inventory import Package, inventory
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
    if fmt not in FORMATS:
        raise InputError(f"unknown SBOM format {fmt!r} (choose from {', '.join(FORMATS)})")
    packages = inventory(subject.image)
    created = created_time(subject.image, environ)
    if fmt == "spdx-json":
        return spdx_document(subject, packages, created)
    return cyclonedx_document(subject, packages, created)


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
