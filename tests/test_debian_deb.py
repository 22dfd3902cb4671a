"""Reading .deb files in Python: ar, control.tar and data.tar in xz, zstd and gzip."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from builder.errors import DebianError, UnsafePathError
from builder.layers.entries import Kind
from builder.sources.debian.deb import DebFile
from debian_fixtures import make_deb


class _Store:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def __call__(self, stream, size: int) -> str:
        data = stream.read()
        assert len(data) == size
        digest = hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def _tar_gz(infos: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in infos:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def raw_deb(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """A .deb written byte by byte, to hold what dpkg-deb would never build."""
    control = tarfile.TarInfo("./control")
    path.write_bytes(_ar([("debian-binary", b"2.0\n"),
                          ("control.tar.gz", _tar_gz([(control, b"Package: raw\nVersion: 1\n")])),
                          ("data.tar.gz", _tar_gz(members))]))
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, uid: int = 0,
          gid: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.linkname = kind, mode, uid, gid, linkname
    return info


@pytest.mark.parametrize("compression", ["xz", "zstd", "gzip", "none"])
def test_members_keep_modes_symlinks_and_hardlinks(tmp_path, compression):
    deb = make_deb(tmp_path, "pkg", "1.0", compression=compression,
                   files={"/usr/bin/tool": b"#tool\n", "/usr/lib/libx.so.1": b"lib"},
                   modes={"/usr/bin/tool": 0o4755},
                   symlinks={"/usr/lib/libx.so": "libx.so.1"},
                   hardlinks={"/usr/bin/tool2": "/usr/bin/tool"})
    store = _Store()
    with DebFile(deb) as f:
        control = f.control_files()
        members = {m.path: m for m in f.data_members(store)}
    assert b"Package: pkg\n" in control["control"]
    tool = members["/usr/bin/tool"]
    assert (tool.kind, tool.mode, tool.uid, tool.gid, tool.size) == (Kind.FILE, 0o4755, 0, 0, 6)
    assert store.blobs[tool.blob] == b"#tool\n"
    assert members["/usr/lib/libx.so"].kind == Kind.SYMLINK
    assert members["/usr/lib/libx.so"].target == "libx.so.1"
    link = members["/usr/bin/tool2"]
    assert link.kind == Kind.HARDLINK and link.target == "/usr/bin/tool"
    assert members["/usr/bin"].kind == Kind.DIR and members["/usr/bin"].mode == 0o755


def test_ownership_is_kept(tmp_path):
    deb = raw_deb(tmp_path / "own.deb", [(_info("./var/mail", tarfile.DIRTYPE, 0o2775, 0, 8), b""),
                                         (_info("./etc/shadowish", mode=0o640, gid=42), b"s")])
    with DebFile(deb) as f:
        members = {m.path: m for m in f.data_members(_Store())}
    assert (members["/var/mail"].mode, members["/var/mail"].gid) == (0o2775, 8)
    assert (members["/etc/shadowish"].mode, members["/etc/shadowish"].gid) == (0o640, 42)


@pytest.mark.parametrize("member", [
    _info("./../../etc/evil"),
    _info("./usr/../../evil"),
    _info("./usr/lib/up", tarfile.SYMTYPE, linkname="../../../etc/shadow"),
    _info("./usr/bin/hl", tarfile.LNKTYPE, linkname="../../etc/shadow"),
])
def test_members_escaping_the_root_are_refused(tmp_path, member):
    deb = raw_deb(tmp_path / "evil.deb", [(member, b"x")])
    with DebFile(deb) as f, pytest.raises(UnsafePathError, match="escapes the image root"):
        list(f.data_members(_Store()))


def test_device_files_are_refused(tmp_path):
    deb = raw_deb(tmp_path / "dev.deb", [(_info("./dev/null", tarfile.CHRTYPE), b"")])
    with DebFile(deb) as f, pytest.raises(DebianError, match="device"):
        list(f.data_members(_Store()))


def test_not_a_deb(tmp_path):
    path = tmp_path / "x.deb"
    path.write_bytes(b"PK\x03\x04 not an ar archive")
    with pytest.raises(DebianError, match="not a .deb"):
        DebFile(path)


def test_truncated_data_is_an_error(tmp_path):
    deb = make_deb(tmp_path, "pkg", "1.0", files={"/big": bytes(range(256)) * 4000})
    data = deb.read_bytes()
    deb.write_bytes(data[: len(data) - 2000])
    with pytest.raises(DebianError):
        with DebFile(deb) as f:
            list(f.data_members(_Store()))
