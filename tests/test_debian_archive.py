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
