"""The merged file view of an image: image path → Entry, top layer winning.

The library closure and user resolution look at the image as the container will
see it. Layers built in this run contribute their entries directly; layers that
exist only as blobs (a cached base, a pulled base) are described by a *layer
index*: every member's metadata, the content of the few small files the build
reads back (:data:`KEEP_CONTENT`), and which files are ELF. The index is made by
streaming the layer once and kept in the cache under the layer's diff_id, so a
rebuild on the same base does not decompress it again; the ELF files themselves
are copied out of the blob only when something opens one (the closure, when its
verdict is not cached). Whiteouts (``.wh.name``, ``.wh..wh..opq``) remove what
lower layers had.
"""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

from ..cache import read_record, write_record
from ..errors import InputError
from ..oci.image import Layer
from .entries import Entry, Kind, image_path
from .whiteouts import WHITEOUT, apply_whiteouts, whiteout_target

ELF_MAGIC = b"\x7fELF"
KEEP_CONTENT = frozenset({"/etc/passwd", "/etc/group"})
"""Small files whose content the build reads back (to resolve ``config.user``)."""
_DPKG_DIRS = ("/var/lib/dpkg/status.d/", "/var/lib/dpkg/info/")


def kept_content(path: str) -> bool:
    """:data:`KEEP_CONTENT`, or the dpkg database (status, status.d, file lists), which
    says which base files a Debian package ships ("prefer the base's copy")."""
    if path in KEEP_CONTENT or path == "/var/lib/dpkg/status":
        return True
    if path.startswith(_DPKG_DIRS[0]):
        return True
    return path.startswith(_DPKG_DIRS[1]) and path.endswith((".list", ".md5sums"))
MAX_KEPT_BYTES = 1 << 20
"""The largest :data:`KEEP_CONTENT` file read from a base layer (1 MiB)."""
INDEX_FORMAT = 3
_KINDS = {kind.value: kind for kind in Kind}


def _empty() -> io.BytesIO:
    return io.BytesIO(b"")  # non-ELF content is never needed


class _ElfCopies:
    """The ELF files of one blob layer, copied to ``workdir`` on the first open.

    One streaming pass copies them all (the closure reads most of them once it
    reads one); layers nobody opens are never decompressed.
    """

    def __init__(self, layer: Layer, workdir: Path) -> None:
        self._layer, self._workdir = layer, workdir
        self._copies: dict[str, Path] | None = None

    def opener(self, path: str):
        return lambda: open(self._copy_of(path), "rb")

    def _copy_of(self, path: str) -> Path:
        if self._copies is None:
            self._copies = {}
            _scan(self._layer, self._workdir, self._copies)
        return self._copies[path]


def blob_layer_entries(layer: Layer, workdir: Path,
                       index_dir: Path | None = None) -> tuple[list[Entry], int]:
    """Entries of a finished layer and the length of its tar stream, from its index in
    ``index_dir`` when there is one (made and kept there otherwise). ELF files open
    their copy in ``workdir``, :data:`KEEP_CONTENT` files their content, every other
    file reads as empty."""
    record = index_dir / _index_name(layer) if index_dir else None
    index = _read_index(record) if record is not None else None
    if index is None:
        copies: dict[str, Path] = {}
        rows, tar_bytes = _scan(layer, workdir, copies)
        if record is not None:
            _write_index(record, rows, tar_bytes)
        return _entries(rows, lambda path: (lambda p=copies[path]: open(p, "rb"))), tar_bytes
    rows, tar_bytes = index
    return _entries(rows, _ElfCopies(layer, workdir).opener), tar_bytes


def _index_name(layer: Layer) -> str:
    """An index is kept per (blob, diff_id) pair: a hit means this very blob was read
    and found to be that diff_id, so a hostile descriptor claiming a known diff_id
    for other bytes is read (and refused) again."""
    return f"{layer.digest.split(':', 1)[-1][:32]}-{layer.diff_id.split(':', 1)[-1][:32]}.json"


def _scan(layer: Layer, workdir: Path, copies: dict[str, Path]) -> tuple[list[list], int]:
    """Stream ``layer`` once: its index rows and tar length, ELF files copied to
    ``workdir``.

    A row is ``[path, kind, mode, uid, gid, size, target, content]`` where
    ``content`` is True for an ELF file, base64 text for a :data:`KEEP_CONTENT`
    file, else None. Members are checked as a ``tar:`` layer's are (devices
    refused) and the stream against the layer's diff_id.
    """
    from .reader import iter_members  # tarfile and decompressors: only on an index miss

    rows: list[list] = []
    tar_bytes: list[int] = []
    members = iter_members(layer, on_end=tar_bytes.append, special_files=False)
    for index, (member, tar, info) in enumerate(members):
        if member.path == "/":
            continue
        mode = info.mode & 0o7777
        if info.isdir():
            rows.append([member.path, Kind.DIR.value, mode, info.uid, info.gid, 0, "", None])
        elif info.issym():
            rows.append([member.path, Kind.SYMLINK.value, 0o777, info.uid, info.gid, 0,
                         info.linkname, None])
        elif info.islnk():
            rows.append([member.path, Kind.HARDLINK.value, mode, info.uid, info.gid, 0,
                         image_path(info.linkname), None])
        elif info.isfile():
            stream = tar.extractfile(info)
            head = stream.read(4) if stream else b""
            content: object = None
            if stream is not None and head == ELF_MAGIC:
                copy = workdir / f"{layer.digest[7:19]}-{index}"
                with open(copy, "wb") as out:
                    out.write(head)
                    shutil.copyfileobj(stream, out, 1 << 20)
                copies[member.path] = copy
                content = True
            elif stream is not None and kept_content(member.path):
                if info.size > MAX_KEPT_BYTES and member.path in KEEP_CONTENT:
                    raise InputError(f"layer {layer.digest[:19]}…: {member.path} is "
                                     f"{info.size} bytes; at most {MAX_KEPT_BYTES} are read")
                if info.size <= MAX_KEPT_BYTES:  # a huge dpkg status stays unread
                    content = base64.b64encode(head + stream.read()).decode("ascii")
            rows.append([member.path, Kind.FILE.value, mode, info.uid, info.gid, info.size,
                         "", content])
    return rows, tar_bytes[0]


def _entries(rows: list[list], elf_opener) -> list[Entry]:
    entries = []
    for path, kind, mode, uid, gid, size, target, content in rows:
        opener = None
        if kind == "file":
            if content is True:
                opener = elf_opener(path)
            elif content is not None:
                opener = (lambda data=base64.b64decode(content): io.BytesIO(data))
            else:
                opener = _empty
        entries.append(Entry(path, _KINDS[kind], mode, uid, gid, size, opener, target=target))
    return entries


def _read_index(record: Path) -> tuple[list[list], int] | None:
    """The rows and tar length kept in ``record``; None when it is missing or not ours."""
    data = read_record(record)
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        return None
    rows, tar_bytes = data.get("rows"), data.get("tar_bytes")
    if isinstance(rows, list) and isinstance(tar_bytes, int) and all(
            _valid_row(r) for r in rows):
        return rows, tar_bytes
    return None


def _write_index(record: Path, rows: list[list], tar_bytes: int) -> None:
    """Keep the index (write then rename); a cache that cannot be written is skipped."""
    try:
        write_record(record, {"format": INDEX_FORMAT, "tar_bytes": tar_bytes, "rows": rows})
    except OSError:
        pass


def merge(view: dict[str, Entry], entries: list[Entry]) -> None:
    """Lay ``entries`` (one layer) over ``view``, applying whiteouts."""
    whiteouts = [(e, hidden) for e in entries
                 if WHITEOUT in e.path and (hidden := whiteout_target(e.path)) is not None]
    apply_whiteouts(view, [hidden for _, hidden in whiteouts])
    skip = {id(e) for e, _ in whiteouts}
    get = view.get
    for entry in entries:
        if skip and id(entry) in skip:
            continue
        old = get(entry.path)
        if old is not None and old.kind is Kind.DIR and entry.kind is not Kind.DIR:
            apply_whiteouts(view, [(entry.path, True)])  # a file replaces a directory tree
        view[entry.path] = entry


# -- a layer's view kept in a cache record ---------------------------------------------

def entry_rows(entries: list[Entry], elf: set[str] | frozenset[str]) -> list[list]:
    """Index rows (as :func:`_scan` makes them) for ``entries`` of a layer built here,
    ``elf`` naming its ELF files: what a cache record keeps so a later build, anywhere,
    sees the layer's files without its inputs."""
    rows: list[list] = []
    for e in entries:
        content: object = None
        if e.kind is Kind.FILE:
            if e.path in elf:
                content = True
            elif kept_content(e.path) and e.opener is not None:
                with e.opener() as f:
                    content = base64.b64encode(f.read()).decode("ascii")
        rows.append([e.path, e.kind.value, e.mode, e.uid, e.gid, e.size, e.target, content])
    return rows


def row_entries(rows: object, layer: Layer, workdir: Path) -> list[Entry]:
    """The entries :func:`entry_rows` described; ELF files open their copy from
    ``layer``'s blob (read on the first open). Raises ValueError for rows that are
    not such a description (a record is read from elsewhere)."""
    if not isinstance(rows, list) or not all(_valid_row(r) for r in rows):
        raise ValueError("malformed entry rows")
    return _entries(rows, _ElfCopies(layer, workdir).opener)


def _valid_row(r: object) -> bool:
    """A row as :func:`_scan` makes them (a record may have been damaged or planted)."""
    if not (isinstance(r, list) and len(r) == 8):
        return False
    path, kind, mode, uid, gid, size, target, content = r
    return (kind in _KINDS and type(path) is str and _normal(path)
            and type(mode) is int and type(uid) is int and type(gid) is int
            and type(size) is int and min(mode, uid, gid, size) >= 0 and type(target) is str
            and (content is None or content is True or _base64(content)))


def _base64(text: object) -> bool:
    try:
        base64.b64decode(text, validate=True)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _normal(path: str) -> bool:
    """Whether ``path`` is a normalized image path (what :func:`image_path` returns),
    checked with string operations: this runs for every row of every cached index."""
    if path == "/":
        return True
    if not path.startswith("/") or path.endswith("/") or "\0" in path or "//" in path:
        return False
    if "/." not in path:
        return True
    return not any(part in (".", "..") for part in path.split("/"))
