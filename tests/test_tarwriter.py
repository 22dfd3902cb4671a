"""The deterministic tar writer: order, parents, owners, modes, hard links, safety."""

from __future__ import annotations

import io
import tarfile

import pytest

from builder.errors import InputError, UnsafePathError
from builder.layers.build import build_layer
from builder.layers.entries import Entry, Kind, image_path
from builder.layers.tarwriter import normalize


def _data(b: bytes):
    return lambda: io.BytesIO(b)


def test_entries_sorted_with_implicit_parents():
    entries = normalize([Entry.bytes_file("/b/x", b"1"), Entry.bytes_file("/a/deep/y", b"2"),
                         Entry.bytes_file("/a-b", b"3")])
    assert [e.path for e in entries] == ["/a", "/a/deep", "/a/deep/y", "/a-b", "/b", "/b/x"]
    parent = entries[0]
    assert parent.kind is Kind.DIR and parent.mode == 0o755 and (parent.uid, parent.gid) == (0, 0)


def test_setuid_dropped_unless_kept():
    suid = Entry.bytes_file("/bin/tool", b"x", mode=0o4755)
    assert normalize([suid])[-1].mode == 0o755
    assert normalize([suid], keep_special_bits=True)[-1].mode == 0o4755


def test_hard_links_stored_once(tmp_path):
    a = Entry.file("/z/a", _data(b"same"), 4, link_key=("dev", 1))
    b = Entry.file("/a/b", _data(b"same"), 4, link_key=("dev", 1))
    layer = build_layer([a, b], blob_dir=tmp_path, epoch=0, compression="none")
    with layer.opener() as f, tarfile.open(fileobj=f, mode="r|") as tar:
        members = {m.name: m for m in tar}
    assert members["a/b"].isfile() and members["a/b"].size == 4
    assert members["z/a"].islnk() and members["z/a"].linkname == "a/b"


def test_owner_names_empty_and_mtime_is_epoch(tmp_path):
    layer = build_layer([Entry.bytes_file("/f", b"x", uid=65532, gid=65532)],
                        blob_dir=tmp_path, epoch=1700000000)
    with layer.opener() as f, tarfile.open(fileobj=f, mode="r|gz") as tar:
        (member,) = list(tar)
    assert (member.uid, member.gid, member.uname, member.gname) == (65532, 65532, "", "")
    assert member.mtime == 1700000000


def test_same_entries_any_order_same_digest(tmp_path):
    entries = [Entry.bytes_file(f"/d/{i}", str(i).encode()) for i in range(20)]
    one = build_layer(entries, blob_dir=tmp_path, epoch=0)
    two = build_layer(list(reversed(entries)), blob_dir=tmp_path, epoch=0)
    assert one.digest == two.digest and one.diff_id == two.diff_id


def test_gzip_header_has_no_name_or_time(tmp_path):
    layer = build_layer([Entry.bytes_file("/f", b"x")], blob_dir=tmp_path, epoch=99)
    with layer.opener() as f:
        header = f.read(10)
    assert header[:3] == b"\x1f\x8b\x08" and header[3] == 0  # no FNAME flag
    assert header[4:8] == b"\0\0\0\0"  # mtime 0


def test_zstd_layers(tmp_path):
    layer = build_layer([Entry.bytes_file("/f", b"x" * 1000)], blob_dir=tmp_path, epoch=0,
                        compression="zstd")
    assert layer.media_type.endswith("+zstd")
    with layer.opener() as f:
        assert f.read(4) == b"\x28\xb5\x2f\xfd"


@pytest.mark.parametrize("path", ["/../etc/passwd", "a/../../b", "", "/a/\0"])
def test_paths_escaping_root_refused(path):
    with pytest.raises(UnsafePathError):
        image_path(path)


@pytest.mark.parametrize("target", ["../../etc/shadow", "../../../x"])
def test_symlinks_climbing_out_refused(target):
    with pytest.raises(UnsafePathError):
        Entry.symlink("/app/link", target)


def test_absolute_symlink_inside_root_allowed():
    assert Entry.symlink("/etc/localtime", "/usr/share/zoneinfo/UTC").target.startswith("/usr")


def test_file_and_directory_at_same_path_is_an_error():
    with pytest.raises(InputError, match="both as a directory"):
        normalize([Entry.directory("/x"), Entry.bytes_file("/x", b"1")])


def test_file_changing_size_while_read_is_an_error(tmp_path):
    liar = Entry.file("/f", _data(b"short"), 100)
    with pytest.raises(InputError, match="change"):
        build_layer([liar], blob_dir=tmp_path, epoch=0)
    assert not list((tmp_path / "sha256").iterdir())


@pytest.mark.parametrize("name,kind,linkname,uid,size,mtime", [
    ("app/main.py", Kind.FILE, "", 0, 123, 0),
    ("app", Kind.DIR, "", 65532, 0, 1700000000),
    ("a" * 100, Kind.FILE, "", 0, 0, 0),
    ("a" * 99, Kind.DIR, "", 0, 0, 0),           # 100 with the slash
    ("a" * 101, Kind.FILE, "", 0, 1, 0),         # needs a PAX path record
    ("usr/lib/libz.so", Kind.SYMLINK, "libz.so.1.2.13", 0, 0, 0),
    ("l", Kind.SYMLINK, "t" * 101, 0, 0, 0),
    ("z/hard", Kind.HARDLINK, "a/b", 1, 0, 0),
    ("caf\u00e9/na\u00efve.txt", Kind.FILE, "", 0, 5, 0),
    ("big", Kind.FILE, "", 0, 8 ** 11, 0),        # size over the octal field
    ("uid", Kind.FILE, "", 8 ** 7, 0, 0),
    ("late", Kind.FILE, "", 0, 0, 8 ** 11),      # mtime over the octal field
    ("d" * 100, Kind.SYMLINK, "\u00e9", 0, 0, 0),  # non-ASCII link name
])
def test_fast_headers_match_tarfile(name, kind, linkname, uid, size, mtime):
    """The hand-formatted header is byte for byte what tarfile writes in PAX format."""
    from builder.layers.tarwriter import _TYPES, tar_header

    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid = _TYPES[kind], 0o4755, uid, uid
    info.size, info.mtime, info.linkname, info.uname, info.gname = size, mtime, linkname, "", ""
    expected = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    assert tar_header(name, kind, 0o104755, uid, uid, size, mtime, linkname) == expected


def test_tar_stream_matches_tarfile(tmp_path):
    """A whole layer equals tarfile's stream-mode PAX output for the same members."""
    from builder.layers.tarwriter import write_tar

    big = bytes(range(256)) * 5000
    entries = normalize([Entry.bytes_file("/b/small", b"x" * 700),
                         Entry.bytes_file("/a/big", big, mode=0o755),
                         Entry.bytes_file("/a/empty", b""),
                         Entry.symlink("/a/link", "big"),
                         Entry.directory("/c" + "/d" * 60)])
    ours = io.BytesIO()
    write_tar(entries, ours, 42)
    ref = io.BytesIO()
    with tarfile.open(fileobj=ref, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.path.lstrip("/"))
            info.mtime, info.mode, info.uid, info.gid = 42, e.mode, e.uid, e.gid
            info.uname = info.gname = ""
            data = None
            if e.kind is Kind.DIR:
                info.type = tarfile.DIRTYPE
            elif e.kind is Kind.SYMLINK:
                info.type, info.linkname = tarfile.SYMTYPE, e.target
            else:
                info.size = e.size
                data = e.opener()
            tar.addfile(info, data)
    assert ours.getvalue() == ref.getvalue()


def test_normalizing_twice_is_free_and_still_drops_special_bits():
    entries = normalize([Entry.bytes_file("/b/tool", b"x", mode=0o4755)], keep_special_bits=True)
    assert normalize(entries, keep_special_bits=True) is entries
    assert normalize(entries)[-1].mode == 0o755
    plain = normalize([Entry.bytes_file("/b/tool", b"x", mode=0o4755)])
    assert normalize(plain) is plain and normalize(plain, keep_special_bits=True) is plain


def test_tar_writer_notes_members_starting_with_the_elf_magic(tmp_path):
    from builder.layers.build import elf_members
    from builder.sources.files import tree_entries

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "small.so").write_bytes(b"\x7fELF" + bytes(100))
    (tmp_path / "src" / "big.so").write_bytes(b"\x7fELF" + bytes(200_000))  # streamed
    (tmp_path / "src" / "text").write_bytes(b"#!/bin/sh\n" + bytes(100))
    (tmp_path / "src" / "tiny").write_bytes(b"\x7fE")
    entries = tree_entries(tmp_path / "src", "/app")
    entries.append(Entry.bytes_file("/gen/elf", b"\x7fELF" + bytes(60)))  # not a host file
    layer = build_layer(entries, blob_dir=tmp_path / "blobs", epoch=0)
    assert elf_members(tmp_path / "blobs", layer.diff_id) == ["/app/big.so", "/app/small.so",
                                                             "/gen/elf"]
    assert elf_members(tmp_path / "blobs", "sha256:" + "0" * 64) is None


def test_host_file_shrinking_before_it_is_read_is_an_error(tmp_path):
    from builder.sources.files import tree_entries

    (tmp_path / "f").write_bytes(b"x" * 100)
    [entry] = tree_entries(tmp_path / "f", "/f")
    (tmp_path / "f").write_bytes(b"x" * 10)
    with pytest.raises(InputError, match="change"):
        build_layer([entry], blob_dir=tmp_path / "blobs", epoch=0)


def test_uncompressed_layer_is_hashed_once_for_both_digests(tmp_path):
    import hashlib

    layer = build_layer([Entry.bytes_file("/a", b"x" * 3000)], blob_dir=tmp_path, epoch=0,
                        compression="none")
    blob = (tmp_path / "sha256" / layer.digest.split(":")[1]).read_bytes()
    assert layer.digest == layer.diff_id == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert layer.size == layer.uncompressed_size == len(blob)


class _FailingOut:
    def __init__(self, after: int) -> None:
        self.left = after

    def write(self, data: bytes) -> int:
        if not self.left:
            raise OSError(28, "No space left on device")
        self.left -= 1
        return len(data)


def test_threaded_writer_raises_what_its_output_raised():
    from builder.layers.hashio import ThreadedWriter

    with pytest.raises(OSError, match="No space"):
        with ThreadedWriter(_FailingOut(after=1)) as writer:
            for _ in range(100):
                writer.write(b"x" * 1000)
    with pytest.raises(OSError, match="No space"):  # raised on leaving, at the latest
        with ThreadedWriter(_FailingOut(after=0)) as writer:
            writer.write(b"x")
    with pytest.raises(InputError, match="first"):  # an error on its way out wins
        with ThreadedWriter(_FailingOut(after=0)) as writer:
            writer.write(b"x")
            raise InputError("first")


def test_tar_stream_matches_tarfile_for_awkward_members(tmp_path):
    """Host files of every size class, names needing PAX records, hard links, kept
    setuid bits and owners that fit or overflow the octal fields: tarfile's bytes."""
    import os

    from builder.layers.tarwriter import write_tar
    from builder.sources.files import tree_entries

    src = tmp_path / "src"
    (src / ("d" * 80) / ("e" * 40)).mkdir(parents=True)
    (src / "caf\u00e9").mkdir()
    (src / "empty").write_bytes(b"")
    (src / "exact").write_bytes(b"e" * 64 * 1024)
    (src / "large").write_bytes(bytes(range(256)) * 300)
    (src / "tool").write_bytes(b"\x7fELF" + b"t" * 600)
    (src / "tool").chmod(0o4755)
    os.link(src / "tool", src / "tool-link")
    (src / ("d" * 80) / ("e" * 40) / "deep.txt").write_text("deep")
    (src / "caf\u00e9" / "na\u00efve.txt").write_text("naive")
    (src / ("n" * 100)).write_text("hundred")
    os.symlink("l" * 120, src / "long-link")
    entries = tree_entries(src, "/app")
    entries += [Entry.bytes_file("/owned/small", b"s", uid=65532, gid=65532),
                Entry.bytes_file("/owned/huge-id", b"h", uid=8 ** 7, gid=3),
                Entry.directory("/owned/dir", 0o700, 1000, 1000)]
    entries = normalize(entries, keep_special_bits=True)
    assert any(e.kind is Kind.HARDLINK for e in entries)
    ours = io.BytesIO()
    stats = write_tar(entries, ours, 1700000000)
    assert stats.elf == ["/app/tool"]
    ref = io.BytesIO()
    types = {Kind.FILE: tarfile.REGTYPE, Kind.DIR: tarfile.DIRTYPE,
             Kind.SYMLINK: tarfile.SYMTYPE, Kind.HARDLINK: tarfile.LNKTYPE}
    with tarfile.open(fileobj=ref, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.path.lstrip("/"))
            info.type, info.mtime, info.mode, info.uid, info.gid = (
                types[e.kind], 1700000000, e.mode, e.uid, e.gid)
            info.uname = info.gname = ""
            info.linkname = e.target.lstrip("/") if e.kind is Kind.HARDLINK else e.target
            info.size = e.size if e.kind is Kind.FILE else 0
            tar.addfile(info, e.opener() if e.kind is Kind.FILE else None)
    assert ours.getvalue() == ref.getvalue()
