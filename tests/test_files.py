"""Host trees → layer entries: the walk's order, kinds, modes and stamps."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from builder.errors import InputError
from builder.layers.entries import Kind
from builder.sources.files import tree_entries


def _reference(src: Path, dest: str) -> list[tuple]:
    """What the walk must give, spelled out with os.walk and os.lstat: top-down, per
    dir its sorted dirs (symlinks to dirs included, not entered), then its other
    members sorted by name."""
    out = [(dest, Kind.DIR, 0o755, None, None)]
    for top, dirs, files in os.walk(src):
        dirs.sort()
        base = dest + "/" + os.path.relpath(top, src) if top != str(src) else dest
        base = base.replace("/./", "/")
        for name in dirs + sorted(files):
            host = os.path.join(top, name)
            st = os.lstat(host)
            if stat.S_ISLNK(st.st_mode):
                out.append((f"{base}/{name}", Kind.SYMLINK, 0o777, os.readlink(host), None))
            elif stat.S_ISDIR(st.st_mode):
                out.append((f"{base}/{name}", Kind.DIR, 0o755, None, None))
            else:
                perm = (0o755 if st.st_mode & 0o111 else 0o644) | (st.st_mode & 0o6000)
                link = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None
                out.append((f"{base}/{name}", Kind.FILE, perm, host, link))
    return out


def _summary(entries) -> list[tuple]:
    out = []
    for e in entries:
        if e.kind is Kind.FILE:
            out.append((e.path, e.kind, e.mode, e.opener.path, e.link_key))
        else:
            out.append((e.path, e.kind, e.mode, e.target or None, None))
    return out


def test_walk_order_kinds_modes_and_links(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for d in ("b", "a/z", "a/y", "c\u00e9"):
        (src / d).mkdir(parents=True)
    for f, data in (("b/2", "x"), ("b/10", ""), ("a/z/f", "z" * 70000), ("top", "t"),
                    ("c\u00e9/\u00fc", "u"), ("Z", "upper")):
        (src / f).write_text(data)
    (src / "run").write_text("#!/bin/sh\n")
    (src / "run").chmod(0o700)
    (src / "suid").write_text("s")
    (src / "suid").chmod(0o4750)
    os.link(src / "top", src / "a" / "hard")
    (src / "dirlink").symlink_to("b")
    (src / "filelink").symlink_to("top")
    (src / "dangling").symlink_to("nowhere")
    entries = tree_entries(src, "/app")
    assert _summary(entries) == _reference(src, "/app")
    by_path = {e.path: e for e in entries}
    st = (src / "a" / "z" / "f").lstat()
    assert by_path["/app/a/z/f"].size == 70000
    assert by_path["/app/a/z/f"].stamp == (st.st_dev, st.st_ino, 70000, st.st_mtime_ns,
                                           st.st_ctime_ns)
    assert not any(e.path.startswith("/app/dirlink/") for e in entries)


def test_walk_refuses_fifos_and_unlistable_paths(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "pipe")
    with pytest.raises(InputError, match="pipe: not a regular file"):
        tree_entries(src, "/app")
    with pytest.raises(InputError, match="no such file"):
        tree_entries(tmp_path / "missing", "/app")


def test_walk_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path) -> None:
    import gc

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    os.mkfifo(src / "pipe")
    assert gc.isenabled()
    with pytest.raises(InputError):
        tree_entries(src, "/app")
    assert gc.isenabled()
    gc.disable()
    try:
        (src / "pipe").unlink()
        assert len(tree_entries(src, "/app")) == 2
        assert not gc.isenabled()
    finally:
        gc.enable()
