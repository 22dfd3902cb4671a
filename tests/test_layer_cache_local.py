"""The local layer cache: a record is whole (ELF members, extra), a damaged blob is
never reused, verdicts are kept by key."""

from __future__ import annotations

import os

from builder.layercache import BUILT, LOCAL, Record
from builder.layercache.local import LocalLayerCache, blob_path, elf_members
from builder.layercache.tiered import TieredCache
from builder.layers.build import build_layer
from builder.layers.entries import Entry

ELF = b"\x7fELF" + bytes(60)


def _entries():
    return [Entry.directory("/app"), Entry.bytes_file("/app/prog", ELF, 0o755),
            Entry.bytes_file("/app/notes.txt", b"hello\n")]


def _make(cache: LocalLayerCache, counter: list[int]):
    def make():
        counter.append(1)
        return build_layer(_entries(), blob_dir=cache.blob_dir, epoch=0, name="app",
                           history={"created_by": "test"})
    return make


def test_a_record_keeps_the_elf_members_and_extra_and_is_found_again(tmp_path):
    cache = LocalLayerCache(tmp_path / "cache")
    built: list[int] = []
    tiered = TieredCache(cache)
    first = tiered.layer("a" * 64, _make(cache, built), extra=lambda layer: {"warnings": ["w"]})
    assert first.source == BUILT and built == [1]
    assert first.record == Record(("/app/prog",), {"warnings": ["w"]})

    again = TieredCache(LocalLayerCache(tmp_path / "cache")).layer("a" * 64, _make(cache, built))
    assert again.source == LOCAL and built == [1]
    assert again.layer == first.layer and again.record == first.record
    assert again.layer.uncompressed_size == first.layer.uncompressed_size
    assert again.layer.file_count == 2 and again.layer.history == {"created_by": "test"}
    assert elf_members(cache.blob_dir, first.layer.diff_id) == ["/app/prog"]


def test_a_damaged_blob_is_removed_and_the_layer_built_again(tmp_path):
    cache = LocalLayerCache(tmp_path / "cache")
    built: list[int] = []
    layer, reused = cache.cached("b" * 64, _make(cache, built))
    assert not reused
    path = blob_path(cache.blob_dir, layer.digest)
    data = bytearray(path.read_bytes())
    data[-9] ^= 0xFF  # inside the gzip trailer: same size, other bytes
    path.write_bytes(bytes(data))
    assert cache.get("b" * 64) is None and not path.exists()
    again, reused = cache.cached("b" * 64, _make(cache, built))
    assert not reused and built == [1, 1] and again.digest == layer.digest


def test_a_touched_but_intact_blob_is_hashed_once_and_reused(tmp_path):
    cache = LocalLayerCache(tmp_path / "cache")
    built: list[int] = []
    layer, _ = cache.cached("c" * 64, _make(cache, built))
    path = blob_path(cache.blob_dir, layer.digest)
    os.utime(path, ns=(1, 1))
    assert cache.get("c" * 64) is not None and built == [1]


def test_a_record_whose_blob_never_arrived_is_a_miss(tmp_path):
    """A remote hit records the layer before its blob is fetched; until then it is
    not a local hit."""
    cache = LocalLayerCache(tmp_path / "cache")
    other = LocalLayerCache(tmp_path / "elsewhere")
    layer, _ = other.cached("d" * 64, _make(other, []))
    cache.put("d" * 64, layer, Record(("/app/prog",), {}))
    assert cache.get("d" * 64) is None
    assert elf_members(cache.blob_dir, layer.diff_id) == ["/app/prog"]


def test_verdicts_are_kept_by_key(tmp_path):
    cache = TieredCache(LocalLayerCache(tmp_path / "cache"))
    assert not cache.has_verdict("e" * 64)
    cache.put_verdict("e" * 64)
    assert TieredCache(LocalLayerCache(tmp_path / "cache")).has_verdict("e" * 64)
    assert not cache.has_verdict("f" * 64)


def test_notes_are_kept_by_key(tmp_path):
    cache = TieredCache(LocalLayerCache(tmp_path / "cache"))
    assert cache.get_note("1" * 64) is None
    cache.put_note("1" * 64, {"parts": ["a", "b"]})
    assert TieredCache(LocalLayerCache(tmp_path / "cache")).get_note("1" * 64) == {
        "parts": ["a", "b"]}


def test_entry_rows_give_back_the_view_and_elf_files_open_from_the_blob(tmp_path):
    import pytest

    from builder.layers.view import entry_rows, row_entries

    cache = LocalLayerCache(tmp_path / "cache")
    entries = _entries() + [Entry.bytes_file("/etc/passwd", b"app:x:1000:1000::/:/x\n")]
    layer = build_layer(entries, blob_dir=cache.blob_dir, epoch=0)
    rows = entry_rows(entries, {"/app/prog"})
    work = tmp_path / "work"
    work.mkdir()
    back = {e.path: e for e in row_entries(rows, layer, work)}
    assert sorted(back) == sorted(e.path for e in entries)
    assert back["/app/prog"].mode == 0o755 and back["/app/prog"].size == len(ELF)
    with back["/app/prog"].opener() as f:  # copied out of the layer blob
        assert f.read() == ELF
    with back["/etc/passwd"].opener() as f:
        assert f.read().startswith(b"app:x:1000")
    for bad in ([["/../etc", "file", 0, 0, 0, 0, "", None]], [["/a", "socket", 0, 0, 0, 0, "",
                                                                None]], {"rows": 1}):
        with pytest.raises(ValueError):
            row_entries(bad, layer, work)
