"""Lock files: written atomically, nothing written on any error, validated on read."""

from __future__ import annotations

import json

import pytest

from builder.errors import DebianError, DigestMismatchError
from builder.sources.debian import load_base_definition, lock_base
from builder.sources.debian.base import load_lock
from builder.sources.debian.fetch import DebCache
from builder.sources.debian.lock import read_lock
from debian_fixtures import (gpg_key, make_deb, mirror, tiny_archive,  # noqa: F401
                             write_definition)


def _definition(tmp_path, tiny_archive):
    return load_base_definition(write_definition(tmp_path, tiny_archive, ["app"],
                                                 exclude=["debconf"]))


def test_deb_not_matching_packages_writes_nothing(tmp_path, mirror, tiny_archive):
    pool = tiny_archive.root / "pool" / "main" / "t" / "tiny-alt" / "tiny-alt_1.0_all.deb"
    forged = make_deb(tmp_path, "tiny-alt", "1.0", arch="all", files={"/evil": b"x"})
    pool.write_bytes(forged.read_bytes())
    definition = _definition(tmp_path, tiny_archive)
    with pytest.raises(DigestMismatchError, match="tiny-alt_1.0_all.deb .*package tiny-alt"):
        lock_base(definition, mirror, cache_dir=tmp_path / "cache")
    assert not definition.lock_path.exists()
    debs = tmp_path / "cache" / "debian" / "debs"
    cached = sorted(p.name for p in debs.iterdir()) if debs.exists() else []
    assert all(p.endswith(".deb") for p in cached)          # no temp files left behind
    forged_sha = __import__("hashlib").sha256(forged.read_bytes()).hexdigest()
    assert f"{forged_sha}.deb" not in cached


def test_error_keeps_previous_lock(tmp_path, mirror, tiny_archive):
    definition = _definition(tmp_path, tiny_archive)
    path = lock_base(definition, mirror)
    before = path.read_bytes()
    tiny_archive.packages_path().write_bytes(b"garbage")
    with pytest.raises(DigestMismatchError):
        lock_base(definition, mirror)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tiny.lock")] == []


def test_lock_prefetches_into_cache(tmp_path, mirror, tiny_archive):
    definition = _definition(tmp_path, tiny_archive)
    lock = read_lock(lock_base(definition, mirror, cache_dir=tmp_path / "cache"))
    cache = DebCache(tmp_path / "cache")
    assert all(cache.deb_path(p.sha256).is_file() for p in lock.packages)


def test_stale_lock_is_reported(tmp_path, mirror, tiny_archive):
    definition = _definition(tmp_path, tiny_archive)
    lock_base(definition, mirror)
    changed = load_base_definition(write_definition(tmp_path, tiny_archive, ["app", "tzdata"],
                                                    exclude=["debconf"]))
    with pytest.raises(DebianError, match="out of date .*packages changed.*ocibuild lock"):
        load_lock(changed)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(lockVersion=7), "unsupported lockVersion"),
    (lambda d: d["packages"][0].update(sha256="abc"), "is not 64 hex digits"),
    (lambda d: d["packages"][0].update(filename="../../etc/passwd"), "unsafe filename"),
    (lambda d: d["packages"][0].pop("size"), "malformed lock file"),
])
def test_bad_lock_files_are_refused(tmp_path, mirror, tiny_archive, mutate, message):
    path = lock_base(_definition(tmp_path, tiny_archive), mirror)
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(DebianError, match=message):
        read_lock(path)


def test_missing_lock_says_how_to_make_one(tmp_path):
    with pytest.raises(DebianError, match="lock file not found .*ocibuild lock"):
        read_lock(tmp_path / "x.lock.json")
