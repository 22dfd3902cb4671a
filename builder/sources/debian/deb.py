"""Read a ``.deb`` in Python: an ``ar`` archive holding ``debian-binary``,
``control.tar.{gz,xz,zst}`` and ``data.tar.{gz,xz,zst}``.

Everything streams: the ar members are windows onto the open file, the tar
streams are decompressed on the fly and read with ``tarfile`` in stream mode
(``r|``), and file contents are handed to a ``store`` callable one at a time,
so memory does not grow with the package size. Member paths are normalized
with :func:`~builder.layers.entries.tar_member_paths`, so a member naming ``../x`` is refused.
"""

from __future__ import annotations

import gzip
import io
import lzma
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from ...errors import DebianError
from ...layers.entries import Kind, tar_member_paths

_AR_MAGIC = b"!<arch>\n"


@dataclass(frozen=True)
class ArMember:
    name: str
    offset: int
    size: int


class _Window(io.RawIOBase):
    """A read-only view of ``size`` bytes at ``offset`` in an open file."""

    def __init__(self, f: BinaryIO, offset: int, size: int) -> None:
        self._f, self._start, self._size, self._pos = f, offset, size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        want = min(len(buf), self._size - self._pos)
        if want <= 0:
            return 0
        self._f.seek(self._start + self._pos)
        data = self._f.read(want)
        buf[:len(data)] = data
        self._pos += len(data)
        return len(data)


def ar_members(f: BinaryIO, what: str) -> list[ArMember]:
    """List the members of an ``ar`` archive (common/GNU format, as dpkg writes it)."""
    f.seek(0)
    if f.read(8) != _AR_MAGIC:
        raise DebianError(f"{what}: not a .deb (no ar header)")
    out: list[ArMember] = []
    pos = 8
    end = f.seek(0, io.SEEK_END)
    while True:
        f.seek(pos)
        header = f.read(60)
        if not header:
            return out
        if len(header) != 60 or header[58:60] != b"`\n":
            raise DebianError(f"{what}: corrupt ar member header at offset {pos}")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        field = header[48:58].rstrip(b" ")
        # decimal digits only: "-60" would never move on, int() also takes "+5" and "1_0"
        if not field.isdigit() or not field.isascii():
            raise DebianError(f"{what}: corrupt ar member size {field!r} at offset {pos}")
        size = int(field)
        if pos + 60 + size > end:
            raise DebianError(f"{what}: ar member {name!r} at offset {pos} claims {size} "
                              f"bytes; the file ends {end - pos - 60} bytes after its header")
        out.append(ArMember(name, pos + 60, size))
        pos += 60 + size + (size & 1)


def _decompressor(name: str, raw: BinaryIO) -> BinaryIO:
    if name.endswith(".xz"):
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if name.endswith(".zst"):
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)  # type: ignore[return-value]
    if name.endswith(".tar"):
        return raw
    raise DebianError(f"unsupported compression of {name}")


@dataclass(frozen=True)
class Member:
    """One member of ``data.tar``, with its content already in the blob store."""

    path: str
    kind: Kind
    mode: int
    uid: int
    gid: int
    size: int = 0
    blob: str = ""        # sha256 hex of the content (FILE)
    target: str = ""      # symlink target, or hard link's image path


Store = Callable[[BinaryIO, int], str]
"""Copy ``size`` bytes from a stream into content-addressed storage; return the sha256 hex."""


class DebFile:
    """An opened ``.deb``; use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._f: BinaryIO = open(self.path, "rb")
        try:
            members = ar_members(self._f, str(self.path))
        except Exception:
            self._f.close()
            raise
        self._members = {m.name: m for m in members}
        if not members or members[0].name != "debian-binary":
            self._f.close()
            raise DebianError(f"{self.path}: not a .deb (first member is not debian-binary)")

    def __enter__(self) -> "DebFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def _tar(self, prefix: str) -> tarfile.TarFile:
        for name, member in self._members.items():
            if name.startswith(prefix):
                raw = io.BufferedReader(_Window(self._f, member.offset, member.size), 1 << 16)
                return tarfile.open(fileobj=_decompressor(name, raw), mode="r|")
        raise DebianError(f"{self.path}: no {prefix}* member")

    def control_files(self) -> dict[str, bytes]:
        """The small files of ``control.tar`` (control, md5sums, conffiles, scripts)."""
        out: dict[str, bytes] = {}
        try:
            with self._tar("control.tar") as tar:
                for info in tar:
                    if info.isfile():
                        name = info.name.lstrip("./")
                        extracted = tar.extractfile(info)
                        if extracted is not None:
                            out[name] = extracted.read()
        except (tarfile.TarError, lzma.LZMAError, OSError, EOFError) as e:
            raise DebianError(f"{self.path}: corrupt control.tar: {e}") from e
        if "control" not in out:
            raise DebianError(f"{self.path}: control.tar has no control file")
        return out

    def data_members(self, store: Store) -> Iterator[Member]:
        """Stream ``data.tar``: yield each member, storing file contents via ``store``."""
        try:
            with self._tar("data.tar") as tar:
                for info in tar:
                    member = self._member(info, tar, store)
                    if member is not None:
                        yield member
        except (tarfile.TarError, lzma.LZMAError, EOFError) as e:
            raise DebianError(f"{self.path}: corrupt data.tar: {e}") from e
        except OSError as e:
            raise DebianError(f"{self.path}: cannot read data.tar: {e}") from e

    def _member(self, info: tarfile.TarInfo, tar: tarfile.TarFile, store: Store) -> Member | None:
        path, target = tar_member_paths(info, str(self.path))
        if path == "/":
            return None
        mode = info.mode & 0o7777
        if info.isdir():
            return Member(path, Kind.DIR, mode, info.uid, info.gid)
        if info.issym():
            return Member(path, Kind.SYMLINK, 0o777, info.uid, info.gid, target=target)
        if info.islnk():
            return Member(path, Kind.HARDLINK, mode, info.uid, info.gid, target=target)
        if info.isreg():
            stream = tar.extractfile(info)
            assert stream is not None
            digest = store(stream, info.size)  # type: ignore[arg-type]
            return Member(path, Kind.FILE, mode, info.uid, info.gid, info.size, digest)
        raise DebianError(f"{self.path}: member {info.name} is a device, fifo or other "
                          "special file, which a base image cannot hold")
