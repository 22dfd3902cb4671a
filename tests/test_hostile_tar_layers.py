"""Hostile ``tar:`` layers: each is refused with one clear error, quickly, in bounded
memory, before anything but the cache is touched (issue 12).

The tarballs are made in code: ``tarfile`` for what it can write, raw header bytes
for what it cannot (a name with bytes after its NUL). The whiteout cases are also
checked against umoci: a whiteout ocibuild accepts removes in umoci's rootfs
exactly what ocibuild's view removes.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import tarfile
import zlib
from pathlib import Path

import pytest

from hostile import assert_unchanged, refused, run_cli, small_project, snapshot
from runtime import unpack

from builder.errors import InputError
from builder.sources import tar_layer


def _tar(members: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else info.size
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return raw.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, *, linkname: str = "", **attrs) -> \
        tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def _file(name: str, data: bytes = b"x\n", **attrs) -> tuple[tarfile.TarInfo, bytes]:
    return _member(name, **attrs), data


def _project(tmp_path: Path, tar_bytes: bytes, name: str = "evil.tar") -> tuple[Path, Path]:
    folder = tmp_path / "p"
    manifest = small_project(folder, f"  - name: t\n    tar: {name}\n")
    (folder / name).write_bytes(tar_bytes)
    return folder, manifest


def _refused_build(tmp_path: Path, tar_bytes: bytes, match: str, name: str = "evil.tar",
                   env: dict | None = None):
    folder, manifest = _project(tmp_path, tar_bytes, name)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    before = snapshot(tmp_path, skip=[tmp_path / "cache"])
    out = refused(["build", manifest, "-o", folder / "out.tar"], match=match, cwd=folder,
                  env={"OCIBUILD_CACHE": str(tmp_path / "cache"), "TMPDIR": str(tmpdir),
                       **(env or {})})
    assert_unchanged(before, snapshot(tmp_path, skip=[tmp_path / "cache"]))
    return out


# -- whiteouts -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a/.wh...", ".wh...", "x/.wh.", ".wh..", "a/b/.wh.."])
def test_whiteout_naming_its_directory_or_parent_is_refused(tmp_path, name):
    tar = _tar([(_member("a", tarfile.DIRTYPE, mode=0o755), b""), _file(name, b"")])
    out = _refused_build(tmp_path, tar, match=r"evil\.tar: member .*\.wh\.")
    assert "escapes the image root" in out.error


def test_whiteout_of_a_climbing_path_is_refused(tmp_path):
    _refused_build(tmp_path, _tar([_file("a/../../.wh.etc", b"")]), match="escapes")


# -- paths, links, special files ----------------------------------------------------

def test_member_climbing_out_of_the_root_is_refused(tmp_path):
    _refused_build(tmp_path, _tar([_file("../../etc/cron.d/x")]), match="escapes the image root")


def test_hard_link_outside_the_archive_is_refused(tmp_path):
    tar = _tar([(_member("h", tarfile.LNKTYPE, linkname="../../etc/shadow"), b"")])
    _refused_build(tmp_path, tar, match="escapes the image root")


def test_hard_link_to_a_file_the_archive_lacks_is_refused(tmp_path):
    tar = _tar([(_member("h", tarfile.LNKTYPE, linkname="etc/shadow"), b"")])
    _refused_build(tmp_path, tar, match="not an earlier regular file")


def test_member_below_a_symlink_to_the_root_is_refused(tmp_path):
    tar = _tar([(_member("a", tarfile.SYMTYPE, linkname="/"), b""), _file("a/x")])
    _refused_build(tmp_path, tar, match=r"'a/x' lies below the symlink /a")


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_device_and_fifo_members_are_refused(tmp_path, kind):
    tar = _tar([(_member("dev/x", kind, devmajor=1, devminor=3), b"")])
    _refused_build(tmp_path, tar, match="is a device or FIFO")


def test_uid_beyond_32_bits_is_refused(tmp_path):
    _refused_build(tmp_path, _tar([_file("f", uid=2**40)]), match=r"uid 1099511627776, outside")


def test_negative_gid_is_refused(tmp_path):
    raw = bytearray(_tar([_file("f")], fmt=tarfile.GNU_FORMAT))
    raw[116:124] = b"\xff" * 8  # gid in GNU base-256: -1
    raw[148:156] = b"        "
    raw[148:156] = f"{sum(raw[:512]):06o}\0 ".encode()
    _refused_build(tmp_path, bytes(raw), match=r"gid -1, outside")


def _ustar_with_name_field(field: bytes) -> bytes:
    raw = bytearray(_tar([_file("placeholder")], fmt=tarfile.USTAR_FORMAT))
    raw[0:100] = field.ljust(100, b"\0")
    raw[148:156] = b"        "
    raw[148:156] = f"{sum(raw[:512]):06o}\0 ".encode()
    return bytes(raw)


def test_name_with_bytes_after_a_nul_is_refused_not_truncated(tmp_path):
    tar = _ustar_with_name_field(b"etc/motd\0/../../../evil")
    _refused_build(tmp_path, tar, match="NUL byte")


def test_gnu_long_name_with_a_nul_is_refused(tmp_path):
    long_name = "d/" + "n" * 120 + "\0" + "/tail"
    tar = _tar([_file(long_name.replace("\0", "@"))], fmt=tarfile.GNU_FORMAT)
    tar = tar.replace(long_name.replace("\0", "@").encode(), long_name.encode(), 1)
    raw = bytearray(tar)  # the long-name record's header checksum does not cover its data
    _refused_build(tmp_path, bytes(raw), match="NUL byte")


def test_pax_path_with_a_nul_is_refused(tmp_path):
    info = _member("f")
    info.pax_headers = {"path": "etc/motd\0.d/x"}
    _refused_build(tmp_path, _tar([(info, b"x")]), match="NUL byte")


def test_sparse_member_is_refused(tmp_path):
    raw = bytearray(_tar([_file("f")], fmt=tarfile.GNU_FORMAT))
    raw[156:157] = tarfile.GNUTYPE_SPARSE
    raw[148:156] = b"        "
    raw[148:156] = f"{sum(raw[:512]):06o}\0 ".encode()
    _refused_build(tmp_path, bytes(raw), match="sparse")


def _gzip_repeating(parts: list[bytes | tuple[bytes, int]]) -> bytes:
    """gzip of ``parts``: bytes as they are, ``(block, n)`` as ``n`` copies of ``block``,
    made in well under a second whatever ``n``. After a full flush a deflate block is
    self-contained, so one compressed copy of ``block`` is repeated (the CRC is left
    wrong: every reader here must stop long before the end)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = []
    for part in parts:
        if isinstance(part, tuple):
            block, n = part
            once = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
            body.append(once * n)
        else:
            body.append(comp.compress(part) + comp.flush(zlib.Z_FULL_FLUSH))
    body.append(comp.flush())
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"".join(body) + b"\0" * 8


def test_huge_pax_header_is_not_read_into_memory(tmp_path):
    size = 200 * 1024 * 1024
    head = tarfile.TarInfo("././@PaxHeader")
    head.type, head.size = tarfile.XHDTYPE, size
    header = head.tobuf(tarfile.USTAR_FORMAT)
    blob = _gzip_repeating([header, (b"0" * (1 << 20), size >> 20), b"\0" * 1024])
    out = _refused_build(tmp_path, blob, match=r"209715200-byte extended header",
                         name="evil.tar.gz")
    assert out.rss < 150 * 1024 * 1024, out.rss


# -- the tarball itself ------------------------------------------------------------

def test_tar_layer_at_a_fifo_is_refused_without_blocking(tmp_path):
    folder, manifest = _project(tmp_path, b"")
    (folder / "evil.tar").unlink()
    os.mkfifo(folder / "evil.tar")
    refused(["build", manifest, "-o", folder / "out.tar"], match="not a regular file",
            cwd=folder)
    assert stat.S_ISFIFO(os.lstat(folder / "evil.tar").st_mode)
    assert not (folder / "out.tar").exists()


def test_tar_layer_at_a_character_device_is_refused(tmp_path):
    folder = tmp_path / "p"
    manifest = small_project(folder, "  - name: t\n    tar: /dev/zero\n")
    refused(["build", manifest, "-o", folder / "out.tar"], match="not a regular file",
            cwd=folder)


def test_tar_layer_at_a_directory_is_refused(tmp_path):
    folder = tmp_path / "p"
    manifest = small_project(folder, "  - name: t\n    tar: sub\n")
    (folder / "sub").mkdir()
    refused(["build", manifest, "-o", folder / "out.tar"], match="sub", cwd=folder)


def test_gzip_bomb_member_is_refused_at_its_header(tmp_path):
    info = tarfile.TarInfo("zeros")
    info.size = 12 << 30
    blob = _gzip_repeating([info.tobuf(tarfile.PAX_FORMAT), (b"\0" * (1 << 20), 12 << 10)])
    assert len(blob) < 20 << 20
    out = _refused_build(tmp_path, blob, match=r"'zeros' ends past \d+ bytes of tar",
                         name="bomb.tar.gz")
    assert out.seconds < 5


def test_gzip_bomb_of_many_members_stops_at_the_limit_without_a_temp_copy(tmp_path,
                                                                            monkeypatch):
    """In-process with small limits (the real one, 8 GiB, takes a while to reach): the
    view is bounded by MAX_TAR_LAYER_BYTES, the expansion is refused as it is read
    (members' headers all within the limit), and nothing is written to $TMPDIR."""
    monkeypatch.setattr(tar_layer, "MAX_TAR_LAYER_BYTES", 1 << 30)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    parts = []
    for i in range(5):
        info = tarfile.TarInfo(f"z{i}")
        info.size = 64 << 20
        parts.append(info.tobuf(tarfile.PAX_FORMAT))
        parts.append((b"\0" * (1 << 20), 64))
    path = tmp_path / "bomb.tar.gz"
    path.write_bytes(_gzip_repeating(parts))
    view_limit = {}
    real_view = tar_layer.DecompressedView

    def view(p, kind, limit):
        view_limit["limit"] = limit
        return real_view(p, kind, 200 << 20)  # the stream limit itself, below the header check
    monkeypatch.setattr(tar_layer, "DecompressedView", view)
    with pytest.raises(InputError, match=r"decompresses to more than 209715200 bytes"):
        tar_layer.tar_entries(path)
    assert view_limit["limit"] == 1 << 30
    assert list(tmpdir.iterdir()) == []


def test_compressed_tar_layer_builds_without_a_temp_copy(tmp_path):
    """A legit .tar.gz layer builds and $TMPDIR stays empty: members are streamed."""
    files = [_file(f"d/f{i:03d}", os.urandom(3000 + i)) for i in range(200, 0, -1)]
    folder, manifest = _project(tmp_path, gzip.compress(_tar(files)), "ok.tar.gz")
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    out = run_cli(["build", manifest, "-o", folder / "out.tar"], cwd=folder,
                  env={"TMPDIR": str(tmpdir), "OCIBUILD_CACHE": str(tmp_path / "cache")})
    assert out.code == 0, out.stderr
    assert list(tmpdir.iterdir()) == []
    with tarfile.open(folder / "out.tar") as image:
        index = json.load(image.extractfile("index.json"))
        manifest_json = json.load(image.extractfile(
            "blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
        top = manifest_json["layers"][-1]["digest"].split(":")[1]
        layer = tarfile.open(fileobj=io.BytesIO(gzip.decompress(
            image.extractfile(f"blobs/sha256/{top}").read())))
        got = {m.name: layer.extractfile(m).read() for m in layer if m.isfile()}
    assert got == {info.name: data for info, data in files}


# -- what an accepted whiteout does, against umoci ---------------------------------

def test_accepted_whiteouts_remove_in_umoci_what_ocibuild_says(tmp_path):
    folder = tmp_path / "p"
    base = _tar([_file("etc/motd", b"hello\n"), _file("etc/keep", b"k\n"),
                 _file("d/a", b"a"), _file("d/sub/b", b"b"), _file("e/f", b"f")])
    top = _tar([_file("etc/.wh.motd", b""), _file("d/.wh..wh..opq", b""), _file("d/c", b"c"),
                _file(".wh.e", b"")])
    folder.mkdir()
    (folder / "base.tar").write_bytes(base)
    (folder / "top.tar").write_bytes(top)
    manifest = folder / "m.yaml"
    manifest.write_text("image: hostile/wh:1\nlayers:\n  - name: base\n    tar: base.tar\n"
                        "  - name: top\n    tar: top.tar\n")
    out = run_cli(["build", manifest, "-o", folder / "out.tar"], cwd=folder)
    assert out.code == 0, out.stderr
    seen = run_cli(["inspect", folder / "out.tar", "--json", "--top", "100"], cwd=folder)
    assert seen.code == 0, seen.stderr
    ours = {f["path"] for f in json.loads(seen.stdout)["largest_files"]}
    rootfs = unpack(folder / "out.tar", tmp_path / "umoci") / "rootfs"
    theirs = {"/" + str(p.relative_to(rootfs)) for p in rootfs.rglob("*") if p.is_file()}
    assert ours == theirs == {"/etc/keep", "/d/c"}
