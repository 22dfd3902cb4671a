"""The archive is trusted only through its signature: InRelease -> Release -> Packages."""

from __future__ import annotations

import lzma

import pytest

from builder.errors import DebianError, DigestMismatchError
from builder.sources.debian import load_base_definition, lock_base
from builder.sources.debian.archive import load_index
from debian_fixtures import (gpg_key, make_gpg_key, mirror, tiny_archive,  # noqa: F401
                             write_definition)


def test_index_lists_packages_and_records_digests(mirror, tiny_archive):
    index = load_index(mirror, tiny_archive.suite, ("main",), "amd64", tiny_archive.key.keyring)
    assert sorted(p["Version"] for p in index.packages.candidates("tiny-libc")) == ["1.5", "2.0"]
    assert index.packages.providers("www-browser") == ["tiny-browser"]
    assert index.version == "99.1" and index.codename == tiny_archive.suite
    assert [f.path.rsplit("/", 1)[-1] for f in index.files] == ["InRelease", "Packages.xz"]


def test_tampered_inrelease_is_refused(tmp_path, mirror, tiny_archive):
    inrelease = tiny_archive.root / "dists" / tiny_archive.suite / "InRelease"
    inrelease.write_text(inrelease.read_text().replace("Version: 99.1", "Version: 99.2"))
    definition = load_base_definition(write_definition(tmp_path, tiny_archive, ["app"],
                                                       exclude=["debconf"]))
    with pytest.raises(DebianError, match="bad or untrusted signature"):
        lock_base(definition, mirror)
    assert not definition.lock_path.exists()


def test_signature_by_another_key_is_refused(tmp_path, mirror, tiny_archive):
    other = make_gpg_key(tmp_path / "other")
    with pytest.raises(DebianError, match="bad or untrusted signature"):
        load_index(mirror, tiny_archive.suite, ("main",), "amd64", other.keyring)


def test_missing_keyring_is_named(tmp_path, mirror, tiny_archive):
    with pytest.raises(DebianError, match="keyring .*nope.gpg not found"):
        load_index(mirror, tiny_archive.suite, ("main",), "amd64", tmp_path / "nope.gpg")


def test_packages_not_matching_release_is_refused(tmp_path, mirror, tiny_archive):
    packages = tiny_archive.packages_path()
    text = lzma.decompress(packages.read_bytes()).replace(b"Version: 2.0", b"Version: 9.0")
    packages.write_bytes(lzma.compress(text))
    definition = load_base_definition(write_definition(tmp_path, tiny_archive, ["app"],
                                                       exclude=["debconf"]))
    with pytest.raises(DigestMismatchError, match="Packages.xz .*signed Release"):
        lock_base(definition, mirror)
    assert not definition.lock_path.exists()


def test_release_for_another_suite_is_refused(mirror, tiny_archive):
    dists = tiny_archive.root / "dists"
    (dists / tiny_archive.suite).rename(dists / "other")
    with pytest.raises(DebianError, match="not other"):
        load_index(mirror, "other", ("main",), "amd64", tiny_archive.key.keyring)


def test_unreachable_mirror_is_an_error(tiny_archive):
    with pytest.raises(DebianError, match="127.0.0.1:9"):
        load_index("http://127.0.0.1:9", tiny_archive.suite, ("main",), "amd64",
                   tiny_archive.key.keyring)


def test_by_hash_survives_a_mirror_caught_mid_sync(tmp_path, gpg_key):
    """Packages.xz by name is already newer than the signed Release; by-hash is not."""
    from debian_fixtures import DebArchive, make_deb, serve

    archive = DebArchive(tmp_path / "repo", gpg_key, by_hash=True)
    archive.add(make_deb(tmp_path, "hello", "1.0"))
    archive.publish()
    archive.packages_path().write_bytes(lzma.compress(b"Package: newer\nVersion: 2\n"))
    with serve(archive.root) as url:
        index = load_index(url, archive.suite, ("main",), "amd64", gpg_key.keyring)
    assert [p["Version"] for p in index.packages.candidates("hello")] == ["1.0"]


def test_binary_all_is_read_when_release_lists_it(tmp_path, gpg_key):
    from debian_fixtures import DebArchive, make_deb, serve

    archive = DebArchive(tmp_path / "repo", gpg_key)
    archive.add(make_deb(tmp_path, "hello", "1.0"))
    archive.publish()
    dist = archive.root / "dists" / archive.suite
    all_dir = dist / "main" / "binary-all"
    all_dir.mkdir()
    (all_dir / "Packages").write_text("Package: noarch\nVersion: 3\nArchitecture: all\n"
                                      "Filename: pool/x.deb\nSize: 1\nSHA256: " + "0" * 64 + "\n")
    import hashlib
    data = (all_dir / "Packages").read_bytes()
    release = (dist / "Release").read_text()
    release = release.replace("Architectures: amd64", "Architectures: all amd64").replace(
        "No-Support-for-Architecture-all: Packages\n", "")
    release += f" {hashlib.sha256(data).hexdigest()} {len(data):>8} main/binary-all/Packages\n"
    (dist / "Release").write_text(release)
    import subprocess
    (dist / "InRelease").unlink()
    subprocess.run(["gpg", "--batch", "--clearsign", "--output", str(dist / "InRelease"),
                    str(dist / "Release")], check=True, capture_output=True, env=gpg_key.env())
    with serve(archive.root) as url:
        index = load_index(url, archive.suite, ("main",), "amd64", gpg_key.keyring)
    assert [p["Version"] for p in index.packages.candidates("noarch")] == ["3"]
    assert index.files[-1].path.endswith("main/binary-all/Packages")


@pytest.mark.parametrize("valid_until, ok", [("Sat, 01 Jan 2000 00:00:00 UTC", False),
                                             ("Fri, 01 Jan 2100 00:00:00 UTC", True)])
def test_expired_release_is_refused(tmp_path, gpg_key, valid_until, ok):
    from debian_fixtures import DebArchive, make_deb, serve

    archive = DebArchive(tmp_path / "repo", gpg_key, valid_until=valid_until)
    archive.add(make_deb(tmp_path, "hello", "1.0"))
    archive.publish()
    with serve(archive.root) as url:
        if ok:
            load_index(url, archive.suite, ("main",), "amd64", gpg_key.keyring)
        else:
            with pytest.raises(DebianError, match="expired on Sat, 01 Jan 2000"):
                load_index(url, archive.suite, ("main",), "amd64", gpg_key.keyring)
            load_index(url, archive.suite, ("main",), "amd64", gpg_key.keyring,
                       check_valid_until=False)
