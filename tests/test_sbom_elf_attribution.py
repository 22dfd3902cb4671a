"""Every ELF file in the SBOM, attributed: to a Debian package (through the image's
symlinks), a Python distribution (RECORD, or the wheel's ``.libs``), the build host
(what the build recorded), or listed as unattributed; the share is reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.sources.archive import read_image
from builder.supply.elfowners import attribute_elf_files

from helpers import cli, write
from test_closure_search_order import shared

LIB = "usr/lib/x86_64-linux-gnu"


@pytest.fixture(scope="module")
def image_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("elfsbom")
    tree = root / "tree"
    body = '#include <stdio.h>\nint f(void) { return puts("x"); }\n'  # needs libc
    shared(tree / LIB / "libfoo.so.1", "libfoo.so.1", body)
    shared(tree / LIB / "libbar.so.1", "libbar.so.1", body)  # listed as /lib/…: merged /usr
    status = tree / "var" / "lib" / "dpkg" / "status.d"
    status.mkdir(parents=True)
    (status / "libfoo1").write_text("Package: libfoo1\nStatus: install ok installed\n"
                                    "Version: 1.2-3\nArchitecture: amd64\n")
    (status / "libfoo1.md5sums").write_text(f"0a  {LIB}/libfoo.so.1\n"
                                            "0b  lib/x86_64-linux-gnu/libbar.so.1\n")
    site = tree / "app" / "site"
    shared(site / "pkg" / "_ext.cpython-311-x86_64-linux-gnu.so", "ext", body)
    shared(site / "pkg.libs" / "libvendored-1a2b.so", "libvendored-1a2b.so", body)
    info = site / "pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n")
    (info / "RECORD").write_text("pkg/_ext.cpython-311-x86_64-linux-gnu.so,sha256=x,1\n"
                                 "pkg-1.0.dist-info/RECORD,,\n../../bin/tool,sha256=y,2\n")
    shared(tree / "opt" / "stray.so", "stray.so", body)
    manifest = write(root / "ocibuild.yaml", f"""\
        image: t/elfsbom:1
        libraries: {{from: host}}
        layers:
          - name: all
            files: [{{src: {tree}, dest: /}}]
            symlinks: [{{path: /lib, target: usr/lib}}]
        """)
    out = root / "image.tar"
    code = cli("build", manifest, "-o", out, "--cache-dir", root / "cache")[0]
    assert code == 0
    return out


def test_each_elf_file_is_attributed_to_what_shipped_it(image_tar: Path) -> None:
    owners = {f.path: f.owner for f in attribute_elf_files(read_image(image_tar)).files}
    def kind(path: str) -> tuple[str, str, str] | None:
        owner = owners[path]
        return (owner.kind, owner.name, owner.version) if owner else None
    assert kind(f"/{LIB}/libfoo.so.1") == ("deb", "libfoo1", "1.2-3")
    assert kind(f"/{LIB}/libbar.so.1") == ("deb", "libfoo1", "1.2-3")
    assert kind("/app/site/pkg/_ext.cpython-311-x86_64-linux-gnu.so") == ("pypi", "pkg", "1.0")
    assert kind("/app/site/pkg.libs/libvendored-1a2b.so") == ("pypi", "pkg", "1.0")
    assert kind("/opt/stray.so") is None
    # the closure's host copies: named with the host package and version
    libc = [p for p in owners if p.endswith("/libc.so.6")]
    assert libc and kind(libc[0])[:2] == ("host-deb", "libc6")


def test_sbom_lists_the_files_reports_the_share_and_validates(
        image_tar: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    code, _, err = cli("sbom", image_tar, "-o", tmp_path / "i.spdx.json", capsys=capsys)
    assert code == 0, err
    elf = attribute_elf_files(read_image(image_tar)).files
    total = len(elf)
    assert f"ELF files attributed: {total - 1}/{total} (" in err
    assert "1 ELF files are not attributed: /opt/stray.so" in err
    assert "ELF files come from the build host (" in err and "libc6 " in err
    problems = validate_full_spdx_document(parse_file(str(tmp_path / "i.spdx.json")))
    assert not problems, [p.validation_message for p in problems]
    doc = json.loads((tmp_path / "i.spdx.json").read_text())
    files = {f["fileName"]: f for f in doc["files"]}
    assert len(files) == total
    by_id = {p["SPDXID"]: p for p in doc["packages"]}
    parent = {r["relatedSpdxElement"]: r["spdxElementId"] for r in doc["relationships"]
              if r["relationshipType"] == "CONTAINS"}
    ext = files["./app/site/pkg/_ext.cpython-311-x86_64-linux-gnu.so"]
    assert by_id[parent[ext["SPDXID"]]]["name"] == "pkg"
    assert parent[files["./opt/stray.so"]["SPDXID"]] == "SPDXRef-Image"
    code, out, err = cli("sbom", image_tar, "--format", "cyclonedx-json", capsys=capsys)
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(out) is None
    cdx = json.loads(out)
    props = {p["name"]: p["value"] for p in cdx["metadata"]["properties"]}
    assert props["ocibuild:elf:attributed-files"] == str(total - 1)
    where = {o["location"]: c["name"] for c in cdx["components"]
             for o in c.get("evidence", {}).get("occurrences", [])}
    assert where[f"/{LIB}/libbar.so.1"] == "libfoo1"
    assert [c["name"] for c in cdx["components"] if c["type"] == "file"] == ["/opt/stray.so"]


def test_a_rebuild_with_nothing_changed_does_not_read_the_hosts_dpkg_database_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host-files label is remembered by its inputs (the files' stamps, the state of
    the host's dpkg database): reading every dpkg list of the host is most of a no-op
    build's time. The second build gives the same image."""
    from builder.supply.owners import HostDpkg

    tree = tmp_path / "tree"
    shared(tree / "opt" / "libfoo.so.1", "libfoo.so.1",
           '#include <stdio.h>\nint f(void) { return puts("x"); }\n')
    manifest = write(tmp_path / "ocibuild.yaml", f"""\
        image: t/memo:1
        libraries: {{from: host}}
        layers:
          - name: all
            files: [{{src: {tree}, dest: /}}]
        """)
    reads = []
    index = HostDpkg.index
    monkeypatch.setattr(HostDpkg, "index", lambda self: reads.append(1) or index(self))
    digests = []
    for run in ("first", "again"):
        code = cli("build", manifest, "-o", tmp_path / f"{run}.tar",
                   "--cache-dir", tmp_path / "cache")[0]
        assert code == 0
        digests.append(read_image(tmp_path / f"{run}.tar").digest)
        if run == "first":
            assert reads, "the first build reads the host's dpkg database"
            reads.clear()
    assert reads == [] and digests[0] == digests[1]


def test_a_debian_package_whose_name_holds_dots_owns_its_files() -> None:
    from builder.supply.owners import Owner, file_owners

    stanza = "/var/lib/dpkg/status.d/libpython3.11"
    sums = stanza + ".md5sums"
    owners = file_owners({
        stanza: b"Package: libpython3.11\nStatus: install ok installed\nVersion: 3.11.2-6\n",
        sums: f"0a  {LIB}/libpython3.11.so.1.0\n".encode()})
    assert owners == {f"/{LIB}/libpython3.11.so.1.0": Owner("deb", "libpython3.11",
                                                            "3.11.2-6", sums)}
