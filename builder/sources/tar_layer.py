"""An existing tarball → layer entries, after safety checks.

The tar is re-written by the deterministic writer (sorted, dated at the epoch,
numeric owners kept), so a ``tar:`` layer is as reproducible as any other.
Members that would land outside the image root, hard links to missing members,
devices and FIFOs are refused. Compressed tarballs (gzip, xz, bz2, zstd) are
first decompressed to a temporary file so members can be streamed by offset.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from ..errors import InputError
from ..layers.compress import decompressing_reader
from ..layers.entries import Entry, Kind, tar_member_paths
from ..layers.hashio import SectionReader


def _plain_tar(path: Path, workdir: Path) -> Path:
    with open(path, "rb") as f:
        head = f.read(6)
    if head[:2] == b"\x1f\x8b" or head[:4] == b"\x28\xb5\x2f\xfd":
        out = workdir / (path.name + ".tar")
        with open(path, "rb") as raw, open(out, "wb") as dst:
            shutil.copyfileobj(decompressing_reader(raw, ""), dst, 1 << 20)
        return out
    if head.startswith(b"\xfd7zXZ") or head[:3] == b"BZh":
        import bz2
        import lzma
        out = workdir / (path.name + ".tar")
        opener = lzma.open if head.startswith(b"\xfd7zXZ") else bz2.open
        with opener(path, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return out
    return path


def tar_entries(path: Path, workdir: Path) -> list[Entry]:
    """Entries for every member of the tarball at ``path``."""
    try:
        plain = _plain_tar(path, workdir)
        with tarfile.open(plain, "r:") as tar:
            members = tar.getmembers()
    except FileNotFoundError as e:
        raise InputError(f"{path}: no such file") from e
    except (tarfile.TarError, OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable tar archive ({e})") from e
    st = path.stat()
    stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    entries: list[Entry] = []
    files: set[str] = set()
    for m in members:
        dest, target = tar_member_paths(m, str(path))
        if dest == "/":
            continue
        if m.issparse():
            raise InputError(f"{path}: member {m.name!r} is a sparse file, which ocibuild "
                             "does not read; re-create the tarball without --sparse")
        if m.isdir():
            entries.append(Entry(dest, Kind.DIR, m.mode & 0o7777, m.uid, m.gid))
        elif m.isreg():
            entries.append(Entry(dest, Kind.FILE, m.mode & 0o7777, m.uid, m.gid, m.size,
                                 _member_opener(plain, m.offset_data, m.size),
                                 stamp=(stamp, m.offset_data)))
            files.add(dest)
        elif m.issym():
            entries.append(Entry(dest, Kind.SYMLINK, 0o777, m.uid, m.gid, target=target))
        elif m.islnk():
            if target not in files:
                raise InputError(f"{path}: hard link {m.name!r} points to {m.linkname!r}, "
                                 "which is not an earlier regular file of the archive")
            entries.append(Entry(dest, Kind.HARDLINK, m.mode & 0o7777, m.uid, m.gid,
                                 target=target))
        else:
            raise InputError(f"{path}: member {m.name!r} is a device or FIFO; "
                             "those cannot go into an image layer")
    return entries


def _member_opener(path: Path, offset: int, size: int):
    return lambda: SectionReader(str(path), offset, size)
