"""Content keys travel: the same inputs anywhere give the same key and layer digest;
any changed input (content, mode, owner, link, option) gives another key."""

from __future__ import annotations

import os
import shutil

from builder.layercache.keys import content_key
from builder.layers.build import build_layer, entries_cache_key
from builder.layers.entries import Entry
from builder.sources.files import tree_entries

PARTS = ("gzip", 0, False, [("comment", "app")])


def _tree(root):
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("print('hi')\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "data.bin").write_bytes(b"\x00" * 70000)
    os.symlink("pkg/mod.py", root / "link.py")
    return root


def test_the_same_tree_in_two_places_has_one_key_and_one_digest(tmp_path):
    a = _tree(tmp_path / "a" / "checkout")
    b = tmp_path / "b" / "elsewhere"
    shutil.copytree(a, b, symlinks=True)
    for path in b.rglob("*"):
        if not path.is_symlink():
            os.utime(path, ns=(123456789, 123456789))  # other mtimes, other inodes
    ea, eb = tree_entries(a, "/app"), tree_entries(b, "/app")
    assert entries_cache_key(ea, *PARTS) != entries_cache_key(eb, *PARTS)  # stamps differ
    assert content_key(ea, *PARTS) == content_key(eb, *PARTS)
    la = build_layer(ea, blob_dir=tmp_path / "ca", epoch=0)
    lb = build_layer(eb, blob_dir=tmp_path / "cb", epoch=0)
    assert (la.digest, la.diff_id) == (lb.digest, lb.diff_id)


def test_each_changed_input_changes_the_key(tmp_path):
    root = _tree(tmp_path / "t")
    key = content_key(tree_entries(root, "/app"), *PARTS)

    changed = []
    (root / "pkg" / "mod.py").write_text("print('ho')\n")  # same size, other bytes
    changed.append(content_key(tree_entries(root, "/app"), *PARTS))
    (root / "pkg" / "mod.py").write_text("print('hi')\n")
    assert content_key(tree_entries(root, "/app"), *PARTS) == key  # back as it was

    changed.append(content_key(tree_entries(root, "/app", mode=0o600), *PARTS))
    changed.append(content_key(tree_entries(root, "/app", uid=1000, gid=1000), *PARTS))
    changed.append(content_key(tree_entries(root, "/srv"), *PARTS))
    os.unlink(root / "link.py")
    os.symlink("run.sh", root / "link.py")
    changed.append(content_key(tree_entries(root, "/app"), *PARTS))
    entries = tree_entries(root, "/app")
    changed.append(content_key(entries, "zstd", *PARTS[1:]))
    changed.append(content_key(entries, "gzip", 1700000000, *PARTS[2:]))
    changed.append(content_key(entries, "gzip", 0, True, *PARTS[3:]))
    changed.append(content_key(entries, *PARTS[:3], [("comment", "other")]))
    assert len(set(changed + [key])) == len(changed) + 1


def test_hard_links_are_part_of_the_key(tmp_path):
    data = tmp_path / "x"
    data.write_bytes(b"same")

    def entries(linked):
        st = data.stat()
        return [Entry.file(p, lambda: open(data, "rb"), 4, link_key=(1, 1) if linked else None,
                           stamp=(st.st_ino,)) for p in ("/a", "/b")]

    assert content_key(entries(True), *PARTS) != content_key(entries(False), *PARTS)


def test_a_memo_rereads_only_the_files_whose_stamp_changed(tmp_path, monkeypatch):
    from builder.layercache import keys

    root = _tree(tmp_path / "t")
    read: list[str] = []
    real = keys.entry_sha256
    monkeypatch.setattr(keys, "entry_sha256", lambda e: read.append(e.path) or real(e))
    first = keys.memoized_content_key(tmp_path / "cache", "app", tree_entries(root, "/app"),
                                      *PARTS)
    assert sorted(read) == ["/app/data.bin", "/app/pkg/mod.py", "/app/run.sh"]
    read.clear()
    assert keys.memoized_content_key(tmp_path / "cache", "app", tree_entries(root, "/app"),
                                     *PARTS) == first
    assert read == []
    (root / "run.sh").write_text("#!/bin/sh\necho changed\n")
    changed = keys.memoized_content_key(tmp_path / "cache", "app", tree_entries(root, "/app"),
                                        *PARTS)
    assert read == ["/app/run.sh"] and changed != first
    assert changed == keys.content_key(tree_entries(root, "/app"), *PARTS)  # same as unmemoized
