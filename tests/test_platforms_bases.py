"""Base definitions for several architectures: one definition, one lock section per
architecture, one base layer per platform of an index; against a local signed archive
that publishes amd64 and arm64 (``Architecture: all`` packages in both)."""

from __future__ import annotations

import json

import pytest

from builder.errors import DebianError
from builder.oci.index import Index
from builder.sources.archive import read_artifact
from builder.sources.debian import load_base_definition, lock_base
from builder.sources.debian.base import load_lock
from debian_fixtures import DebArchive, gpg_key, make_deb, serve, write_definition  # noqa: F401
from helpers import cli, layer_members, validate_image, write


@pytest.fixture
def two_arch_mirror(tmp_path, gpg_key, monkeypatch):  # noqa: F811
    debs = tmp_path / "debs"
    archive = DebArchive(tmp_path / "repo", gpg_key, architectures=("amd64", "arm64"))
    for arch in ("amd64", "arm64"):
        (debs / arch).mkdir(parents=True)
        archive.add(make_deb(debs / arch, "tiny-libc", "2.0", arch=arch,
                             files={f"/usr/lib/{arch}/libtiny.so.1": f"{arch} lib".encode()}))
    archive.add(make_deb(debs, "tzdata", "2024a", arch="all",
                         files={"/usr/share/zoneinfo/Etc/UTC": b"TZif2 utc"}))
    archive.add(make_deb(debs, "ca-certificates", "2024", arch="all",
                         files={"/usr/share/ca-certificates/t/a.crt": b"-----BEGIN CERTIFICATE"
                                b"-----\nAAAA\n-----END CERTIFICATE-----\n"}))
    archive.publish()
    with serve(archive.root) as url:
        monkeypatch.setenv("OCIBUILD_DEBIAN_MIRROR", url)
        yield archive, url


def _definition(tmp_path, archive, architectures: str) -> object:
    path = write_definition(tmp_path, archive, ["tiny-libc", "tzdata", "ca-certificates"])
    path.write_text(path.read_text().replace("  architecture: amd64\n", architectures))
    return path


def test_one_definition_locks_each_architecture_and_builds_an_index(tmp_path, two_arch_mirror,
                                                                     capsys):
    archive, url = two_arch_mirror
    path = _definition(tmp_path, archive, "  architectures: [amd64, arm64]\n")
    code, out, err = cli("lock", path, capsys=capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "tiny.lock.json").read_text())
    assert list(doc["architectures"]) == ["amd64", "arm64"]
    for arch in ("amd64", "arm64"):
        section = doc["architectures"][arch]
        assert section["architecture"] == arch
        libc = next(p for p in section["packages"] if p["name"] == "tiny-libc")
        assert libc["filename"].endswith(f"_{arch}.deb")
        assert f"dists/{archive.suite}/main/binary-{arch}/Packages.xz" in [
            i["path"] for i in section["indexes"]]
    definition = load_base_definition(path)
    assert load_lock(definition.for_architecture("arm64")).architecture == "arm64"

    (tmp_path / "hello.txt").write_text("hi\n")
    manifest = write(tmp_path / "ocibuild.yaml", """
        image: test/based:1
        platforms: [linux/amd64, linux/arm64]
        base: tiny.yaml
        layers:
          - name: app
            files:
              - {src: hello.txt, dest: /srv/hello.txt}
        """)
    code, out, err = cli("build", manifest, "-o", tmp_path / "i.tar", capsys=capsys)
    assert code == 0, err
    index = read_artifact(tmp_path / "i.tar")
    assert isinstance(index, Index)
    amd, arm = (m.image for m in index.manifests)
    for image, arch in ((amd, "amd64"), (arm, "arm64")):
        validate_image(image)
        members = layer_members(image, 0)
        assert f"usr/lib/{arch}/libtiny.so.1" in members
        status = [n for n in members if n.startswith("var/lib/dpkg/status.d/")]
        assert status, members
    assert amd.layers[0].digest != arm.layers[0].digest  # each its own packages
    assert amd.layers[1].digest == arm.layers[1].digest  # the app layer is shared

    # the definition built on its own gives an index as well
    code, out, err = cli("build", path, "-o", tmp_path / "base.tar", capsys=capsys)
    assert code == 0, err
    base = read_artifact(tmp_path / "base.tar")
    assert isinstance(base, Index) and [str(p) for p in base.platforms] == [
        "linux/amd64", "linux/arm64"]
    assert base.manifests[1].image.layers[0].digest == arm.layers[0].digest


def test_single_architecture_lock_keeps_its_format(tmp_path, two_arch_mirror, capsys):
    archive, url = two_arch_mirror
    path = _definition(tmp_path, archive, "  architecture: arm64\n")
    assert cli("lock", path, capsys=capsys)[0] == 0
    doc = json.loads((tmp_path / "tiny.lock.json").read_text())
    assert doc["lockVersion"] == 1 and doc["architecture"] == "arm64"
    assert "architectures" not in doc


def test_multi_architecture_mistakes_are_named(tmp_path, two_arch_mirror, capsys):
    archive, url = two_arch_mirror
    path = _definition(tmp_path, archive,
                       "  architecture: amd64\n  architectures: [amd64, arm64]\n")
    code, _, err = cli("lock", path, capsys=capsys)
    assert code == 1 and f"{path}:5: debian.architectures: give either architecture" in err

    path = _definition(tmp_path, archive, "  architectures: [amd64, amd64]\n")
    code, _, err = cli("lock", path, capsys=capsys)
    assert code == 1 and "debian.architectures[1]: amd64 is listed twice" in err

    # a lock written before arm64 was added says to lock again
    path = _definition(tmp_path, archive, "  architectures: [amd64]\n")
    assert cli("lock", path, capsys=capsys)[0] == 0
    path.write_text(path.read_text().replace("[amd64]", "[amd64, arm64]"))
    definition = load_base_definition(path)
    with pytest.raises(DebianError, match="has no lock for arm64 .*ocibuild lock"):
        load_lock(definition.for_architecture("arm64"))

    manifest = write(tmp_path / "ocibuild.yaml", """
        image: test/based:1
        platforms: [linux/amd64, linux/s390x]
        base: tiny.yaml
        layers: []
        """)
    code, _, err = cli("build", manifest, "-o", tmp_path / "i.tar", capsys=capsys)
    assert code == 1 and f"{manifest}:3: base: base tiny.yaml is for amd64, arm64, the " \
                         "image for s390x" in err
