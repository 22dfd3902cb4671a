"""What a layer holds, before it becomes a tar: a list of :class:`Entry`.

Every source (plain files, a ``.deb``, a PyInstaller bundle, host libraries)
produces entries; only :mod:`builder.layers.tarwriter` turns them into bytes,
so determinism (order, mtimes, owners, modes) is decided in one place.

Paths are *image paths*: absolute, POSIX, normalized (``/app/model.joblib``),
checked with :func:`image_path` so none can escape the image root.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

from ..errors import UnsafePathError
from .whiteouts import bad_whiteout

Opener = Callable[[], BinaryIO]
"""A callable returning a fresh binary stream of a file's content."""


class Kind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"


class FileOpener:
    """Opens a host file by path: the opener of every host FILE entry.

    A small object holding a ``str`` rather than a closure over a ``Path``:
    layers of 100 000 files keep one per entry.
    """

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> BinaryIO:
        return open(self.path, "rb")

    def __repr__(self) -> str:
        return f"FileOpener({self.path!r})"


@dataclass(frozen=True, slots=True)
class Entry:
    """One member of a layer.

    ``mode`` holds permission bits including setuid/setgid/sticky (``0o7777``).
    ``opener`` and ``size`` describe a FILE's content. ``target`` is a symlink's
    target (kept as written) or a HARDLINK's image path. ``link_key`` lets the
    tar writer store hard links once: FILE entries with the same non-None key
    (e.g. ``(st_dev, st_ino)``) become one file plus hard links to it.
    """

    path: str
    kind: Kind
    mode: int
    uid: int = 0
    gid: int = 0
    size: int = 0
    opener: Opener | None = None
    target: str = ""
    link_key: object | None = None
    stamp: object | None = field(default=None, compare=False)
    """What identifies a FILE's content cheaply (host dev/inode/size/mtime, or a
    digest); the layer cache reuses a layer only when every file has one."""

    @staticmethod
    def file(path: str, opener: Opener, size: int, mode: int = 0o644, uid: int = 0,
             gid: int = 0, link_key: object | None = None,
             stamp: object | None = None) -> "Entry":
        return Entry(image_path(path), Kind.FILE, mode, uid, gid, size, opener,
                     link_key=link_key, stamp=stamp)

    @staticmethod
    def directory(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> "Entry":
        return Entry(image_path(path), Kind.DIR, mode, uid, gid)

    @staticmethod
    def symlink(path: str, target: str, uid: int = 0, gid: int = 0) -> "Entry":
        path = image_path(path)
        check_symlink_target(path, target)
        return Entry(path, Kind.SYMLINK, 0o777, uid, gid, target=target)

    @staticmethod
    def bytes_file(path: str, data: bytes, mode: int = 0o644, uid: int = 0,
                   gid: int = 0) -> "Entry":
        """A small generated file (``/etc/passwd``, a status stanza)."""
        import hashlib
        import io
        return Entry.file(path, lambda: io.BytesIO(data), len(data), mode, uid, gid,
                          stamp=hashlib.sha256(data).hexdigest())


def image_path(path: str) -> str:
    """Normalize ``path`` to an absolute image path; refuse anything escaping ``/``.

    ``app/x`` and ``/app/./x`` both give ``/app/x``; ``/../etc`` or ``a/../../b``
    raise :class:`UnsafePathError`. NUL bytes and empty paths are refused too.
    """
    if not isinstance(path, str) or not path or "\x00" in path:
        raise UnsafePathError(f"invalid path {path!r}")
    depth = 0
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            depth -= 1
            if depth < 0:
                raise UnsafePathError(f"path {path!r} escapes the image root")
            parts.pop()
        else:
            depth += 1
            parts.append(part)
    return "/" + "/".join(parts)


def check_symlink_target(link_path: str, target: str) -> None:
    """Refuse a relative symlink target that climbs above ``/``.

    Absolute targets are resolved inside the container's root by the runtime and
    are fine; ``/app/l -> ../../../etc`` climbs past ``/`` and is refused, because
    tools that extract layers on a host (umoci, tar) could follow it out.
    """
    if not target or "\x00" in target:
        raise UnsafePathError(f"symlink {link_path}: invalid target {target!r}")
    if target.startswith("/"):
        image_path(target)
        return
    image_path(posixpath.join(posixpath.dirname(link_path), target))


def tar_member_paths(info: tarfile.TarInfo, archive: str) -> tuple[str, str]:
    """A tar member's image path and, for a link, its checked target (a symlink's as
    written, a hard link's as an image path; "" otherwise).

    Every archive ocibuild reads (a ``tar:`` layer, a ``.deb``, a pulled layer)
    goes through here: a member or link that would leave the image root raises
    :class:`UnsafePathError` naming ``archive`` and the member.
    """
    try:
        path = image_path(info.name)
        if bad_whiteout(path):
            raise UnsafePathError(f"whiteout {info.name!r} names no file")
        if info.issym():
            check_symlink_target(path, info.linkname)
            return path, info.linkname
        if info.islnk():
            return path, image_path(info.linkname)
        return path, ""
    except UnsafePathError as e:
        link = f" -> {info.linkname!r}" if info.issym() or info.islnk() else ""
        raise UnsafePathError(f"{archive}: member {info.name!r}{link} escapes the image "
                              "root") from e


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (if on) while entries pile up.

    A build makes a few long-lived objects per file (entries, their openers and
    stamps, the image view) and no reference cycles; as they pile up, the
    collector's passes over all of them cost a tenth of a build of 100 000 small
    files. The pause is process-wide (other threads' cyclic garbage waits) and
    ends whatever the body raised; nested pauses end with the outermost.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
