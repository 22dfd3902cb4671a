"""Lock resolution against a local signed archive: closure, alternatives, virtuals, errors."""

from __future__ import annotations

import json

import pytest

from builder.errors import DebianError
from builder.sources.debian import load_base_definition, lock_base
from builder.sources.debian.archive import load_index
from builder.sources.debian.resolve import resolve
from debian_fixtures import gpg_key, mirror, tiny_archive, write_definition  # noqa: F401


def _index(mirror, tiny_archive):
    return load_index(mirror, tiny_archive.suite, ("main",), "amd64",
                      tiny_archive.key.keyring).packages


def test_lock_resolves_dependency_alternative_and_virtual(tmp_path, mirror, tiny_archive):
    definition = load_base_definition(
        write_definition(tmp_path, tiny_archive, ["app"], exclude=["debconf"]))
    path = lock_base(definition, mirror)
    assert path == tmp_path / "tiny.lock.json"
    lock = json.loads(path.read_text())
    versions = {p["name"]: p["version"] for p in lock["packages"]}
    # tiny-libc: highest version meeting ">= 2.0"; "missing-pkg | tiny-alt" takes the
    # alternative; www-browser is virtual, provided by tiny-browser; debconf excluded.
    assert versions == {"app": "1.0", "tiny-libc": "2.0", "tiny-alt": "1.0",
                        "tiny-browser": "3.0"}
    libc = next(p for p in lock["packages"] if p["name"] == "tiny-libc")
    assert libc["filename"] == "pool/main/t/tiny-libc/tiny-libc_2.0_amd64.deb"
    assert len(libc["sha256"]) == 64 and libc["size"] > 0
    assert [i["path"] for i in lock["indexes"]] == [
        f"dists/{tiny_archive.suite}/InRelease",
        f"dists/{tiny_archive.suite}/main/binary-amd64/Packages.xz"]
    assert "127.0.0.1" not in path.read_text()      # a lock names no mirror


def test_lock_is_stable(tmp_path, mirror, tiny_archive):
    definition = load_base_definition(
        write_definition(tmp_path, tiny_archive, ["app"], exclude=["debconf"]))
    first = lock_base(definition, mirror).read_bytes()
    assert lock_base(definition, mirror).read_bytes() == first


def test_unknown_package_is_named(tmp_path, mirror, tiny_archive):
    definition = load_base_definition(
        write_definition(tmp_path, tiny_archive, ["app", "no-such-package"], exclude=["debconf"]))
    with pytest.raises(DebianError, match="'no-such-package' not found"):
        lock_base(definition, mirror)
    assert not definition.lock_path.exists()


def test_unsatisfiable_version_names_both_packages(tmp_path, gpg_key):
    from debian_fixtures import DebArchive, make_deb, serve

    archive = DebArchive(tmp_path / "repo", gpg_key)
    archive.add(make_deb(tmp_path, "tiny-libc", "1.5"))
    archive.add(make_deb(tmp_path, "app", "1.0", depends="tiny-libc (>= 2.0)"))
    archive.publish()
    with serve(archive.root) as url:
        index = load_index(url, archive.suite, ("main",), "amd64", gpg_key.keyring).packages
    with pytest.raises(DebianError, match=r"app 1\.0 depends on tiny-libc \(>= 2\.0\)"):
        resolve(index, ["app"], "amd64", [], "test")


def test_excluded_alternative_satisfies_group(mirror, tiny_archive):
    index = _index(mirror, tiny_archive)
    names = [r.name for r in resolve(index, ["app"], "amd64", ["debconf"], "test")]
    assert "debconf" not in names
    names = [r.name for r in resolve(index, ["app"], "amd64", [], "test")]
    assert "debconf" in names       # debconf (>= 0.5) is real and satisfiable


def test_virtual_package_requested_directly_is_explained(mirror, tiny_archive):
    index = _index(mirror, tiny_archive)
    with pytest.raises(DebianError, match="virtual, provided by: tiny-browser"):
        resolve(index, ["www-browser"], "amd64", [], "test")


def test_update_suite_on_another_mirror_wins_by_version(tmp_path, tiny_archive, mirror, gpg_key):
    from builder.sources.debian import base_entries
    from builder.sources.debian.base import load_lock
    from debian_fixtures import DebArchive, make_deb, serve

    security = DebArchive(tmp_path / "security", gpg_key, suite="tiny-security")
    security.add(make_deb(tmp_path, "tiny-libc", "2.0+sec1", files={"/usr/lib/fixed": b"ok"}))
    security.publish()
    path = write_definition(tmp_path, tiny_archive, ["app"], exclude=["debconf"])
    path.write_text(path.read_text().replace(
        "  architecture: amd64\n", "  architecture: amd64\n  updates: [tiny-security]\n"))
    definition = load_base_definition(path)
    with serve(security.root) as security_url:
        mirrors = f"{tiny_archive.suite}={mirror},tiny-security={security_url}"
        lock_base(definition, mirrors, cache_dir=tmp_path / "c1")
        lock = load_lock(definition)
        entries = {e.path for e in base_entries(definition, lock, tmp_path / "c2",
                                                mirror=mirrors)}
    libc = next(p for p in lock.packages if p.name == "tiny-libc")
    assert (libc.version, libc.suite) == ("2.0+sec1", "tiny-security")
    assert next(p for p in lock.packages if p.name == "app").suite == tiny_archive.suite
    assert lock.suites == (tiny_archive.suite, "tiny-security")
    assert [i.path for i in lock.indexes][-1] == "dists/tiny-security/main/binary-amd64/Packages.xz"
    assert "/usr/lib/fixed" in entries
