"""SBOMs of an image built from a tiny Debian-like status.d and Python dist-info."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from builder.sources.archive import read_image
from builder.supply.inventory import inventory
from helpers import cli, write

LIBC6 = """\
Package: libc6
Version: 2.36-9+deb12u4
Architecture: amd64
Maintainer: GNU Libc Maintainers <glibc-maintainers@example.invalid>
Source: glibc
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs.
"""
TZDATA = """\
Package: tzdata
Version: 1:2024a-0+deb12u1
Architecture: all
Description: time zone and daylight-saving time data
"""
CURL = "Package: curl\nVersion: 7.88.1-10\nArchitecture: amd64\n"
COPYRIGHT = """\
Format: https://example.invalid/copyright-format/1.0/

Files: *
License: LGPL-2.1+

Files: debian/*
License: GPL-2+
"""
SKLEARN = """\
Metadata-Version: 2.1
Name: scikit-learn
Version: 1.5.2
Summary: A set of python modules for machine learning and data mining
License: new BSD
Classifier: License :: OSI Approved :: BSD License
"""
FLASK = """\
Metadata-Version: 2.1
Name: Flask
Version: 3.0.3
Classifier: License :: OSI Approved :: BSD License
"""
MARKUPSAFE = """\
Metadata-Version: 2.4
Name: MarkupSafe
Version: 3.0.2
License-Expression: BSD-3-Clause
"""

MANIFEST = """\
image: test/sbom:1.0
layers:
  - name: debian
    files:
      - {src: status.d, dest: /var/lib/dpkg/status.d}
      - {src: copyright, dest: /usr/share/doc/libc6/copyright}
  - name: app
    files:
      - {src: sklearn-meta, dest: /app/_internal/scikit_learn-1.5.2.dist-info/METADATA}
      - {src: flask-meta, dest: /usr/lib/python3/dist-packages/flask-3.0.3.dist-info/METADATA}
      - {src: markupsafe-meta, dest: /venv/lib/python3.11/site-packages/MarkupSafe-3.0.2.dist-info/METADATA}
  - name: cleanup
    files:
      - {src: empty, dest: /var/lib/dpkg/status.d/.wh.curl}
config:
  user: "65532"
"""


def make_project(root: Path, extra_layer: str = "") -> Path:
    for name, text in {"status.d/libc6": LIBC6, "status.d/tzdata": TZDATA,
                       "status.d/curl": CURL, "status.d/libc6.md5sums": "",
                       "copyright": COPYRIGHT, "sklearn-meta": SKLEARN, "flask-meta": FLASK,
                       "markupsafe-meta": MARKUPSAFE, "empty": ""}.items():
        write(root / name, text)
    return write(root / "ocibuild.yaml", MANIFEST.replace("config:", extra_layer + "config:"))


@pytest.fixture(scope="module")
def image_tar(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sbom")
    manifest = make_project(root)
    out = root / "image.tar"
    assert cli("build", manifest, "-o", out, "-q", "--cache-dir", root / "cache")[0] == 0
    return out


def sbom(image_tar: Path, fmt: str, capsys, **env: str) -> dict:
    code, out, err = cli("sbom", image_tar, "--format", fmt, capsys=capsys)
    assert code == 0, err
    return json.loads(out)


def test_inventory_finds_debian_and_python_packages(image_tar):
    found = {(p.ecosystem, p.name): p for p in inventory(read_image(image_tar))}
    assert set(found) == {("deb", "libc6"), ("deb", "tzdata"), ("pypi", "scikit-learn"),
                          ("pypi", "Flask"), ("pypi", "MarkupSafe")}  # curl was whited out
    libc = found["deb", "libc6"]
    assert libc.purl == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64"
    assert libc.license_expression == "GPL-2.0-or-later AND LGPL-2.1-or-later"
    assert libc.source == "glibc"
    assert found["deb", "tzdata"].purl == "pkg:deb/debian/tzdata@1:2024a-0%2Bdeb12u1?arch=all"
    sk = found["pypi", "scikit-learn"]
    assert sk.purl == "pkg:pypi/scikit-learn@1.5.2"
    assert sk.location == "/app/_internal/scikit_learn-1.5.2.dist-info/METADATA"
    assert sk.license_expression == "BSD-3-Clause"
    assert found["pypi", "Flask"].purl == "pkg:pypi/flask@3.0.3"
    assert found["pypi", "Flask"].license_expression is None  # "BSD License" is ambiguous
    assert found["pypi", "MarkupSafe"].purl == "pkg:pypi/markupsafe@3.0.2"


def test_spdx_document_has_the_required_fields_and_packages(image_tar, capsys):
    doc = sbom(image_tar, "spdx-json", capsys)
    for key in ("spdxVersion", "dataLicense", "SPDXID", "name", "documentNamespace",
                "creationInfo", "packages", "relationships"):
        assert key in doc, key
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["dataLicense"] == "CC0-1.0"
    assert doc["SPDXID"] == "SPDXRef-DOCUMENT"
    image = read_image(image_tar)
    assert doc["documentNamespace"].endswith(image.digest.split(":")[1])
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", doc["creationInfo"]["created"])
    assert doc["creationInfo"]["creators"][0].startswith("Tool: ocibuild-")
    ids = set()
    for pkg in doc["packages"]:
        assert {"SPDXID", "name", "downloadLocation"} <= set(pkg)
        assert re.match(r"^SPDXRef-[A-Za-z0-9.-]+$", pkg["SPDXID"])
        ids.add(pkg["SPDXID"])
        for ref in pkg.get("externalRefs", []):
            assert ref["referenceCategory"] == "PACKAGE-MANAGER"
            assert ref["referenceType"] == "purl"
    assert len(ids) == len(doc["packages"])
    for rel in doc["relationships"]:
        assert rel["spdxElementId"] in ids | {"SPDXRef-DOCUMENT"}
        assert rel["relatedSpdxElement"] in ids
    purls = {ref["referenceLocator"] for p in doc["packages"] for ref in p["externalRefs"]}
    assert "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64" in purls
    assert "pkg:pypi/scikit-learn@1.5.2" in purls
    by_name = {p["name"]: p for p in doc["packages"]}
    assert by_name["libc6"]["versionInfo"] == "2.36-9+deb12u4"
    assert by_name["scikit-learn"]["licenseDeclared"] == "BSD-3-Clause"
    assert by_name["Flask"]["licenseDeclared"] == "NOASSERTION"
    assert by_name["test/sbom:1.0"]["primaryPackagePurpose"] == "CONTAINER"


def test_cyclonedx_document_has_the_required_fields_and_components(image_tar, capsys):
    doc = sbom(image_tar, "cyclonedx-json", capsys)
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.5"
    assert re.match(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
                    doc["serialNumber"])
    assert doc["version"] == 1
    assert doc["metadata"]["component"]["type"] == "container"
    refs = set()
    for c in doc["components"]:
        assert {"type", "name", "bom-ref"} <= set(c)
        assert c["type"] == "library"
        refs.add(c["bom-ref"])
        for lic in c.get("licenses", []):
            assert set(lic) in ({"license"}, {"expression"})
            if "license" in lic:
                assert set(lic["license"]) in ({"id"}, {"name"})
    assert len(refs) == len(doc["components"])
    assert set(doc["dependencies"][0]["dependsOn"]) == refs
    by_name = {c["name"]: c for c in doc["components"]}
    assert by_name["libc6"]["purl"] == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64"
    assert by_name["libc6"]["licenses"] == [{"expression": "GPL-2.0-or-later AND "
                                                           "LGPL-2.1-or-later"}]
    assert by_name["scikit-learn"]["version"] == "1.5.2"
    assert by_name["scikit-learn"]["purl"] == "pkg:pypi/scikit-learn@1.5.2"
    assert by_name["Flask"]["licenses"] == [{"license": {"name": "BSD License"}}]
    assert "curl" not in by_name


def test_sbom_is_deterministic_and_dated_by_source_date_epoch(image_tar, capsys, monkeypatch,
                                                              tmp_path):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = cli("sbom", image_tar, capsys=capsys)[1]
    assert first == cli("sbom", image_tar, capsys=capsys)[1]
    created = read_image(image_tar).config["created"]
    assert json.loads(first)["creationInfo"]["created"] == created
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert cli("sbom", image_tar, "-o", tmp_path / "x.json", capsys=capsys)[0] == 0
    doc = json.loads((tmp_path / "x.json").read_text())
    assert doc["creationInfo"]["created"] == "2023-11-14T22:13:20Z"


def test_os_release_adds_the_distro_qualifier(tmp_path):
    root = tmp_path / "p"
    manifest = make_project(root, textwrap.indent(textwrap.dedent("""\
        - name: os
          files:
            - {src: os-release, dest: /etc/os-release}
        """), "  "))
    write(root / "os-release", 'ID=debian\nVERSION_ID="12"\n')
    assert cli("build", manifest, "-o", tmp_path / "i.tar", "-q", "--cache-dir",
               tmp_path / "cache")[0] == 0
    purls = {p.purl for p in inventory(read_image(tmp_path / "i.tar"))}
    assert "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12" in purls


def validate(image_tar: Path, capsys, tmp_path: Path) -> None:
    """The SPDX and CycloneDX projects' own validators (spdx-tools; cyclonedx-python-lib's
    strict validator with the 1.5 JSON schema) find nothing wrong."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    assert cli("sbom", image_tar, "-o", tmp_path / "i.spdx.json", capsys=capsys)[0] == 0
    problems = validate_full_spdx_document(parse_file(str(tmp_path / "i.spdx.json")))
    assert not problems, [p.validation_message for p in problems]
    cdx = cli("sbom", image_tar, "--format", "cyclonedx-json", capsys=capsys)[1]
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(cdx) is None


def test_documents_pass_the_official_validators(image_tar, capsys, tmp_path):
    validate(image_tar, capsys, tmp_path)


SPEC_DEB_PURLS = [  # the purl spec's own build tests for the deb type (tests/types/deb-test.json)
    (("curl", "7.50.3-1", "i386", "jessie"), "pkg:deb/debian/curl@7.50.3-1?arch=i386&distro=jessie"),
    (("dpkg", "1.19.0.4", "amd64", "stretch"),
     "pkg:deb/debian/dpkg@1.19.0.4?arch=amd64&distro=stretch"),
    (("attr", "1:2.4.47-2", "source", None), "pkg:deb/debian/attr@1:2.4.47-2?arch=source"),
    (("attr", "1:2.4.47-2+b1", "amd64", None), "pkg:deb/debian/attr@1:2.4.47-2%2Bb1?arch=amd64"),
]


@pytest.mark.parametrize("args,expected", SPEC_DEB_PURLS)
def test_deb_purls_follow_the_purl_spec(args, expected):
    """The deb type keeps the epoch in the version, its colon not percent-encoded (the
    ``epoch`` qualifier belongs to rpm); a purl parser reads the dpkg version back whole."""
    from packageurl import PackageURL

    from builder.supply.inventory import deb_purl

    assert deb_purl(*args) == expected
    parsed = PackageURL.from_string(expected)
    assert (parsed.name, parsed.version, parsed.qualifiers["arch"]) == args[:3]


GCC_COPYRIGHT = """\
This is the Debian GNU/Linux prepackaged version of the GNU compiler collection.

The following runtime libraries are licensed under the terms of the
GNU General Public License (v3 or later) with version 3.1 of the GCC
Runtime Library Exception (included in this file):

 - libgcc (libgcc/, gcc/libgcc2.[ch], gcc/unwind*, gcc/gthr*,
   gcc/coretypes.h, gcc/crtstuff.c, gcc/defaults.h, gcc/dwarf2.h,
   gcc/emults.c, gcc/gbl-ctors.h, gcc/gcov-io.h, gcc/libgcov.c,
   gcc/tsystem.h, gcc/typeclass.h).
 - libstdc++-v3

The documentation is licensed under the GNU Free Documentation License (v1.2).
On Debian GNU/Linux systems, the complete text of this license is in
`/usr/share/common-licenses/GFDL-1.2'.
"""
BASE_FILES_COPYRIGHT = """\
This is the Debian prepackaged version of the Debian Base System
Miscellaneous files.

The Artistic License in /usr/share/common-licenses is the one coming
from Perl and its SPDX name is "Artistic License 1.0 (Perl)".

This program is free software; you can redistribute it and/or modify
it under the terms of the GNU General Public License as published by
the Free Software Foundation; either version 2 of the License, or
(at your option) any later version.

On Debian systems, the complete text of the GNU General
Public License can be found in `/usr/share/common-licenses/GPL'.
"""
MEDIA_TYPES_COPYRIGHT = """\
Format: https://example.invalid/copyright-format/1.0/

Files: *
Copyright: public-domain
License: ad-hoc
 This package contains public information compiled from around the 'net and
 many people.
"""
WAITRESS = """\
Metadata-Version: 2.1
Name: waitress
Version: 3.0.2
License: ZPL 2.1
Classifier: License :: OSI Approved :: Zope Public License
"""


def test_licenses_are_spdx_identifiers_where_a_mapping_exists(tmp_path, capsys):
    """Copyright files in prose (base-files, gcc-12-base) give their grants; packages whose
    doc directory Debian links to a sibling (libgcc-s1 → gcc-12-base) share its file; a
    DEP-5 name SPDX lacks is a LicenseRef with its text; "ZPL 2.1" is ZPL-2.1, once."""
    stanzas = {
        "base-files": "Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n",
        "gcc-12-base": "Package: gcc-12-base\nVersion: 12.2.0-14\nArchitecture: amd64\n"
                       "Source: gcc-12\n",
        "libgcc-s1": "Package: libgcc-s1\nVersion: 12.2.0-14\nArchitecture: amd64\n"
                     "Source: gcc-12 (12.2.0-14)\n",
        "media-types": "Package: media-types\nVersion: 10.0.0\nArchitecture: all\n",
    }
    for name, text in stanzas.items():
        write(tmp_path / "status.d" / name, text)
    write(tmp_path / "gcc", GCC_COPYRIGHT)
    write(tmp_path / "base-files", BASE_FILES_COPYRIGHT)
    write(tmp_path / "media-types", MEDIA_TYPES_COPYRIGHT)
    write(tmp_path / "waitress", WAITRESS)
    manifest = write(tmp_path / "ocibuild.yaml", """\
        image: test/licenses:1
        layers:
          - name: debian
            files:
              - {src: status.d, dest: /var/lib/dpkg/status.d}
              - {src: gcc, dest: /usr/share/doc/gcc-12-base/copyright}
              - {src: base-files, dest: /usr/share/doc/base-files/copyright}
              - {src: media-types, dest: /usr/share/doc/media-types/copyright}
              - {src: waitress, dest: /app/waitress-3.0.2.dist-info/METADATA}
        config:
          user: "65532"
        """)
    out = tmp_path / "image.tar"
    assert cli("build", manifest, "-o", out, "-q", capsys=capsys)[0] == 0
    found = {p.name: p for p in inventory(read_image(out))}
    gcc = "GFDL-1.2-only AND GPL-3.0-or-later WITH GCC-exception-3.1"
    assert found["gcc-12-base"].license_expression == gcc
    assert found["libgcc-s1"].license_expression == gcc
    assert found["base-files"].license_expression == "GPL-2.0-or-later"
    assert found["media-types"].license_expression == "LicenseRef-ad-hoc"
    assert found["waitress"].license_expression == "ZPL-2.1"

    spdx = sbom(out, "spdx-json", capsys)
    [extracted] = spdx["hasExtractedLicensingInfos"]
    assert extracted["licenseId"] == "LicenseRef-ad-hoc"
    assert extracted["extractedText"].startswith("This package contains public information")
    cdx = {c["name"]: c for c in sbom(out, "cyclonedx-json", capsys)["components"]}
    assert cdx["waitress"]["licenses"] == [{"license": {"id": "ZPL-2.1"}}]
    assert cdx["libgcc-s1"]["licenses"] == [{"expression": gcc}]
    validate(out, capsys, tmp_path)


def test_requirement_names_for_metadata_copy(tmp_path):
    """The freeze copies dist-info for each requirement so SBOMs can list them."""
    from builder.sources.pyinstaller import requirement_names

    req = tmp_path / "requirements.txt"
    req.write_text("# pinned\nflask==3.1.3  # web\n--index-url x\nscikit-learn>=1.5; python_version>'3'\n"
                   "numpy[extra] ==2.0 \\\n    --hash=sha256:abc\n\nhttps://example.invalid/x.whl\n")
    assert requirement_names(req) == ["flask", "numpy", "scikit-learn"]
    assert requirement_names(None) == []
