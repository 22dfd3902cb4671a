"""A damaged or hostile cache never crashes a build and is never trusted: garbage,
deeply nested or planted records, wrong sizes and media types, FIFOs, directories and
symlinks where files belong. The build ignores what it cannot verify, rebuilds, and
gives the same image as from an empty cache; nothing outside the cache and -o changes."""

from __future__ import annotations

import glob
import json
import os
import shutil

import pytest

from builder.layers.view import _read_index
from hostile import assert_unchanged, check_bounded, refused, run_cli, small_project, snapshot


@pytest.fixture
def built(tmp_path):
    """A project built once into a fresh cache: (project dir, cache dir, digest)."""
    project = small_project(tmp_path / "src")
    cache = tmp_path / "cache"
    return project, cache, _build(project, cache, tmp_path / "out.tar")


def _build(manifest, cache, out):
    outcome = run_cli(["build", manifest, "-o", out, "--json", "-q", "--cache-dir", cache],
                      cwd=manifest.parent)
    check_bounded(outcome)
    assert outcome.code == 0, outcome.stderr
    return json.loads(outcome.stdout)["digest"]


def _rebuild_same(tmp_path, built, heals=False):
    project, cache, digest = built
    source = snapshot(project.parent)
    assert _build(project, cache, tmp_path / "out.tar") == digest
    assert_unchanged(source, snapshot(project.parent))
    if heals:  # the record was written again: the next build is a plain cache hit
        outcome = run_cli(["build", project, "-o", tmp_path / "out.tar", "--json", "-q",
                           "--cache-dir", cache], cwd=project.parent)
        assert outcome.code == 0 and all(layer["cached"] for layer in
                                         json.loads(outcome.stdout)["layers"])


def _each(cache, pattern, change):
    paths = glob.glob(str(cache / pattern))
    assert paths, pattern
    for path in paths:
        change(path)


def _replace_text(text):
    def change(path):
        os.unlink(path)
        with open(path, "w") as f:
            f.write(text)
    return change


def _edit_record(**fields):
    def change(path):
        with open(path) as f:
            data = json.load(f)
        data.update(fields)
        with open(path, "w") as f:  # in place: the blob's recorded status still matches
            json.dump(data, f)
    return change


def _fifo(path):
    os.unlink(path)
    os.mkfifo(path)


def _directory(path):
    os.unlink(path)
    os.mkdir(path)
    with open(os.path.join(path, "inside"), "w") as f:
        f.write("x")


RECORD = "layers/*.json"
BLOB = "blobs/sha256/*"


@pytest.mark.parametrize("pattern, change", [
    (RECORD, _replace_text("{{{ not json")),
    (RECORD, _replace_text("[" * 100_000)),               # RecursionError in json
    (RECORD, _replace_text('"just a string"')),
    (RECORD, _edit_record(size=-5)),                       # would evict the good blob
    (RECORD, _edit_record(size=True)),
    (RECORD, _edit_record(size=2 ** 40)),
    (RECORD, _edit_record(uncompressed_size=-1, files=-3)),
    (RECORD, _edit_record(media_type="application/vnd.oci.image.layer.v1.tar+zstd")),
    (RECORD, _edit_record(media_type="text/html")),
    (RECORD, _edit_record(digest="sha256:../../../../etc/passwd")),
    (RECORD, _edit_record(history={"created_by": ["not", "a", "string"]})),
    (RECORD, _fifo),
    (RECORD, _directory),
    (BLOB, _replace_text("x" * 10)),
    (BLOB, _fifo),
    (BLOB, _directory),
    (BLOB, lambda p: (os.unlink(p), os.symlink("/etc/hostname", p))),
    ("elf/*.json", _replace_text("[" * 100_000)),
    ("elf/*.json", _fifo),
    ("outputs/*.json", _replace_text("[" * 100_000)),
    ("outputs/*.json", _fifo),
    ("closure/*", _directory),
], ids=["record-garbage", "record-deep-json", "record-string", "record-negative-size",
        "record-bool-size", "record-huge-size", "record-negative-counts",
        "record-wrong-compression", "record-unknown-media-type", "record-path-digest",
        "record-bad-history", "record-fifo", "record-directory", "blob-garbage", "blob-fifo",
        "blob-directory", "blob-symlink-out", "elf-deep-json", "elf-fifo",
        "stamp-deep-json", "stamp-fifo", "verdict-directory"])
def test_a_damaged_cache_entry_is_ignored_and_the_image_is_the_same(tmp_path, built, pattern,
                                                                   change):
    _each(built[1], pattern, change)
    _rebuild_same(tmp_path, built)


def test_a_record_with_a_wrong_size_never_evicts_the_good_blob(tmp_path, built):
    project, cache, digest = built
    [blob] = glob.glob(str(cache / BLOB))
    before = open(blob, "rb").read()
    _each(cache, RECORD, _edit_record(size=-5))
    _rebuild_same(tmp_path, built, heals=True)
    assert open(blob, "rb").read() == before


def test_a_planted_symlink_blob_never_touches_its_target(tmp_path, built):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    _each(built[1], BLOB, lambda p: (os.unlink(p), os.symlink(outside, p)))
    _rebuild_same(tmp_path, built)
    assert outside.read_text() == "keep"


def test_a_cache_dir_that_is_a_file_is_one_error_naming_the_cache(tmp_path):
    project = small_project(tmp_path / "src")
    (tmp_path / "cache").write_text("not a directory")
    refused(["build", project, "-o", tmp_path / "out.tar", "--cache-dir", tmp_path / "cache"],
            cwd=tmp_path, match=r"the cache .*cache.*: Not a directory")


# -- the base-layer index (read for every build on a base) -------------------------------

@pytest.mark.parametrize("record", [
    "[" * 100_000,
    '{"format": FMT, "tar_bytes": 10, "rows": [["/../etc/passwd", "file", 420, 0, 0, 1, "", null]]}',
    '{"format": FMT, "tar_bytes": 10, "rows": [["/a", "file", -1, 0, 0, 1, "", null]]}',
    '{"format": FMT, "tar_bytes": 10, "rows": [["/a", "file", 420, true, 0, 1, "", null]]}',
    '{"format": FMT, "tar_bytes": 10, "rows": [["/a", "file", 420, 0, 0, 1, "", "!!!"]]}',
    '{"format": FMT, "tar_bytes": 10, "rows": [["/a", "file", 420, 0, 0, 1, "", {}]]}',
    '{"format": FMT, "tar_bytes": 10, "rows": [["/a", "nonsense", 420, 0, 0, 1, "", null]]}',
], ids=["deep-json", "dotdot-path", "negative-mode", "bool-uid", "bad-base64", "object-content",
        "unknown-kind"])
def test_a_hostile_base_layer_index_is_not_trusted(tmp_path, record):
    from builder.layers.view import INDEX_FORMAT

    path = tmp_path / "index.json"
    path.write_text(record.replace("FMT", str(INDEX_FORMAT)))
    assert _read_index(path) is None


def test_a_sound_base_layer_index_is_read_back(tmp_path):
    from builder.layers.view import INDEX_FORMAT, _write_index

    rows = [["/a", "file", 420, 0, 0, 1, "", None], ["/b", "dir", 493, 0, 0, 0, "", None]]
    _write_index(tmp_path / "i.json", rows, 10240)
    assert _read_index(tmp_path / "i.json") == (rows, 10240)
    shutil.rmtree(tmp_path / "i.json", ignore_errors=True)


# -- the .deb members index (<cache>/debian/debs/<sha256>.members.json) ------------------

@pytest.fixture
def deb_cache(tmp_path):
    from builder.cache import file_sha256
    from builder.sources.debian.fetch import DebCache
    from builder.sources.debian.lock import LockedPackage
    from debian_fixtures import make_deb

    deb = make_deb(tmp_path, "hello", files={"/usr/share/hello/greeting": b"hi\n"})
    pkg = LockedPackage("hello", "1.0", "amd64", "pool/h/" + deb.name, deb.stat().st_size,
                        file_sha256(deb))
    cache = DebCache(tmp_path / "cache")
    cache.debs.mkdir(parents=True)
    members = cache.members(pkg, deb)[1]
    return cache, pkg, deb, members


def _planted(cache, pkg, edit):
    index = cache.debs / f"{pkg.sha256}.members.json"
    doc = json.loads(index.read_text())
    edit(doc["members"])
    index.write_text(json.dumps(doc))


def _file_row(rows):
    return next(r for r in rows if r[1] == "file")


@pytest.mark.parametrize("edit", [
    lambda rows: _file_row(rows).__setitem__(0, "/../../etc/hostname"),
    lambda rows: _file_row(rows).__setitem__(2, -1),
    lambda rows: _file_row(rows).__setitem__(3, True),
    lambda rows: rows.append(["/x", "file", 420, 0, 0, 3]),
], ids=["path-escapes-the-image", "negative-mode", "bool-uid", "short-row"])
def test_a_planted_deb_members_index_is_rebuilt_from_the_deb(deb_cache, edit):
    cache, pkg, deb, members = deb_cache
    _planted(cache, pkg, edit)
    assert cache.members(pkg, deb)[1] == members


def test_a_deb_members_index_cannot_point_a_blob_outside_the_store(deb_cache, tmp_path):
    cache, pkg, deb, members = deb_cache
    secret = tmp_path / "secret"
    secret.write_bytes(b"host secret\n")
    escape = os.path.relpath(secret, cache.blobs)

    def edit(rows):
        row = _file_row(rows)
        row[5], row[6] = secret.stat().st_size, escape  # the size check alone would pass
    _planted(cache, pkg, edit)
    got = cache.members(pkg, deb)[1]
    assert got == members and all(m.blob != escape for m in got)
