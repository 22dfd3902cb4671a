"""The merged file view of an image: image path → Entry, top layer winning.

The library closure and user resolution look at the image as the container will
see it. Layers built in this run contribute their entries directly; layers that
exist only as blobs (a cached base, a pulled base) are read once, streaming, and
only their ELF files are copied out (to ``workdir``) so their headers can be read.
Whiteouts (``.wh.name``, ``.wh..wh..opq``) remove what lower layers had.
"""

from __future__ import annotations

import io
import posixpath
import shutil
from pathlib import Path

from ..oci.image import Layer
from .entries import Entry, Kind, image_path
from .reader import iter_members

ELF_MAGIC = b"\x7fELF"
KEEP_CONTENT = frozenset({"/etc/passwd", "/etc/group"})
"""Small files whose content the build reads back (to resolve ``config.user``)."""
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


def blob_layer_entries(layer: Layer, workdir: Path) -> list[Entry]:
    """Entries of a finished layer; ELF files (and :data:`KEEP_CONTENT`) are copied to
    ``workdir`` to stay readable, every other file reads as empty."""
    entries: list[Entry] = []
    empty = lambda: io.BytesIO(b"")  # noqa: E731 - non-ELF content is never needed
    for index, (member, tar, info) in enumerate(iter_members(layer)):
        if member.path == "/":
            continue
        mode = info.mode & 0o7777
        if info.isdir():
            entries.append(Entry(member.path, Kind.DIR, mode, info.uid, info.gid))
        elif info.issym():
            entries.append(Entry(member.path, Kind.SYMLINK, 0o777, info.uid, info.gid,
                                 target=info.linkname))
        elif info.islnk():
            entries.append(Entry(member.path, Kind.HARDLINK, mode, info.uid, info.gid,
                                 target=image_path(info.linkname)))
        elif info.isfile():
            stream = tar.extractfile(info)
            head = stream.read(4) if stream else b""
            opener = empty
            if stream is not None and (head == ELF_MAGIC or member.path in KEEP_CONTENT):
                copy = workdir / f"{layer.digest[7:19]}-{index}"
                with open(copy, "wb") as out:
                    out.write(head)
                    shutil.copyfileobj(stream, out, 1 << 20)
                opener = (lambda p=copy: open(p, "rb"))
            entries.append(Entry(member.path, Kind.FILE, mode, info.uid, info.gid, info.size,
                                 opener))
    return entries


def merge(view: dict[str, Entry], entries: list[Entry]) -> None:
    """Lay ``entries`` (one layer) over ``view``, applying whiteouts."""
    marked = [e for e in entries if _WHITEOUT in e.path
              and posixpath.basename(e.path).startswith(_WHITEOUT)]
    for entry in marked:
        directory, name = posixpath.split(entry.path)
        if name == _OPAQUE:
            _remove_below(view, directory)
        else:
            hidden = posixpath.join(directory, name[len(_WHITEOUT):])
            view.pop(hidden, None)
            _remove_below(view, hidden)
    skip = {id(e) for e in marked}
    get = view.get
    for entry in entries:
        if skip and id(entry) in skip:
            continue
        old = get(entry.path)
        if old is not None and old.kind is Kind.DIR and entry.kind is not Kind.DIR:
            _remove_below(view, entry.path)
        view[entry.path] = entry


def _remove_below(view: dict[str, Entry], directory: str) -> None:
    prefix = directory.rstrip("/") + "/"
    for path in [p for p in view if p.startswith(prefix)]:
        del view[path]
