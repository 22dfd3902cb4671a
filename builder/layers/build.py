"""Turn entries into a finished, content-addressed layer blob.

One pass: entries → tar → (sha256 = diff_id) → compressor → (sha256 = digest)
→ a temporary file renamed to ``<blob_dir>/sha256/<hex>``. Nothing is held in
memory beyond a copy buffer.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from ..cache import file_sha256, file_status
from ..oci.image import Layer
from ..oci.types import Descriptor
from ..sinks.atomic import atomic_file, remove_stale_temps
from .compress import compressor, layer_media_type
from .entries import Entry, FileOpener
from .hashio import HashingWriter, ThreadedWriter
from .tarwriter import normalize, write_tar


def blob_path(blob_dir: Path, digest: str) -> Path:
    return blob_dir / "sha256" / digest.split(":", 1)[1]


def build_layer(entries: Iterable[Entry], *, blob_dir: Path, epoch: int,
                compression: str = "gzip", name: str = "",
                history: dict[str, Any] | None = None,
                keep_special_bits: bool = False) -> Layer:
    """Write ``entries`` as a deterministic layer blob under ``blob_dir``."""
    ordered = normalize(entries, keep_special_bits=keep_special_bits)
    (blob_dir / "sha256").mkdir(parents=True, exist_ok=True)
    _clean_once(blob_dir)
    fd, tmp_name = tempfile.mkstemp(prefix=f".layer.{os.getpid()}.", suffix=".tmp",
                                    dir=blob_dir)
    try:
        with os.fdopen(fd, "wb") as raw:
            compressed = HashingWriter(raw)
            if compression == "none":  # the blob is the tar: one sha256 is both digests
                packer, uncompressed = None, compressed
            else:
                packer = compressor(compression, compressed)
                uncompressed = HashingWriter(packer)  # type: ignore[arg-type]
            with ThreadedWriter(uncompressed) as writer:  # type: ignore[arg-type]
                stats = write_tar(ordered, writer, epoch)  # type: ignore[arg-type]
            if packer is not None:
                packer.close()
        final = blob_path(blob_dir, compressed.digest)
        os.replace(tmp_name, final)
        _write_json(_elf_note(blob_dir, uncompressed.digest), {"elf": stats.elf})
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    descriptor = Descriptor(layer_media_type(compression), compressed.digest, compressed.size)
    return Layer(descriptor, uncompressed.digest, FileOpener(str(final)),
                 history=dict(history or {}), uncompressed_size=uncompressed.size,
                 name=name, file_count=stats.files)


_cleaned: set[Path] = set()


def _clean_once(blob_dir: Path) -> None:
    """Remove the temp blobs of killed builds, once per process and blob dir."""
    if blob_dir not in _cleaned:
        _cleaned.add(blob_dir)
        remove_stale_temps(blob_dir, ".layer.")


def elf_members(blob_dir: Path, diff_id: str) -> list[str] | None:
    """Image paths of the FILE members of layer ``diff_id`` whose data starts with the
    ELF magic, as the tar writer saw them when it built the layer; None if unknown
    (the layer was not built here, or before this was recorded).

    The note is keyed by the uncompressed content, so it holds for any layer with
    that diff_id, whichever inputs or cache record produced it.
    """
    try:
        data = json.loads(_elf_note(blob_dir, diff_id).read_text())
        paths = data["elf"]
        if isinstance(paths, list) and all(isinstance(p, str) for p in paths):
            return paths
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _elf_note(blob_dir: Path, diff_id: str) -> Path:
    return blob_dir.parent / "elf" / f"{diff_id.split(':', 1)[1]}.json"


def _write_json(path: Path, data: object) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_file(path) as out:
        out.write(json.dumps(data).encode())


# -- the layer cache -------------------------------------------------------------------
#
# A layer whose inputs have not changed is not re-tarred or re-compressed: the
# caller names the inputs (a key), and the finished layer's descriptor is kept in
# ``<blob_dir>/../layers/<key>.json`` beside its blob. A record whose blob is gone
# or has the wrong size is ignored and rebuilt.

LAYER_FORMAT_VERSION = "2"  # bump when the tar writer's or a compressor's output changes


def layer_cache_key(*parts: object) -> str:
    h = hashlib.sha256(LAYER_FORMAT_VERSION.encode())
    for part in parts:
        data = part if isinstance(part, bytes) else repr(part).encode()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def entries_cache_key(entries: Iterable[Entry], *parts: object) -> str:
    """:func:`layer_cache_key` of ``parts`` and every entry's metadata and stamp,
    hashed as it streams: no list of 100 000 tuples, no giant ``repr``."""
    h = hashlib.sha256(layer_cache_key("entries", *parts).encode())
    lines: list[str] = []
    for e in entries:  # kind._value_: .value is a Python-level property, 10 % of the loop
        lines.append(f"{len(e.path)}:{e.path}\0{e.kind._value_}\0{e.mode}\0{e.uid}\0{e.gid}\0"
                     f"{e.size}\0{len(e.target)}:{e.target}\0{e.stamp!r}\n")
        if len(lines) >= 4096:
            h.update("".join(lines).encode("utf-8", "surrogateescape"))
            lines.clear()
    h.update("".join(lines).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def cached_layer(blob_dir: Path, key: str, make: Callable[[], Layer]) -> tuple[Layer, bool]:
    """The layer recorded under ``key`` if its blob is intact, else ``make()`` (recorded).

    "Intact" is checked cheaply, like the output stamps: the record keeps the blob
    file's device, inode, size, mtime and ctime as they were when it was recorded.
    A blob whose status differs (touched, rewritten, copied back) is hashed: if
    its digest still matches it is used (and the record refreshed), else it is
    removed and the layer built again, so a damaged cache never reaches an image.
    """
    record = blob_dir.parent / "layers" / f"{key}.json"
    try:
        data = json.loads(record.read_text())
        path = blob_path(blob_dir, data["digest"])
        descriptor = Descriptor(data["media_type"], data["digest"], data["size"])
        layer = Layer(descriptor, data["diff_id"], FileOpener(str(path)),
                      history=data["history"], uncompressed_size=data["uncompressed_size"],
                      name=data["name"], file_count=data["files"])
        if file_status(path) == data.get("blob"):
            return layer, True
        if _blob_matches(path, descriptor):
            _record(record, layer, path)
            return layer, True
        path.unlink(missing_ok=True)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    layer = make()
    _record(record, layer, blob_path(blob_dir, layer.digest))
    return layer, False


def _record(record: Path, layer: Layer, blob: Path) -> None:
    _write_json(record, {"digest": layer.digest, "size": layer.size,
                         "media_type": layer.media_type, "diff_id": layer.diff_id,
                         "history": layer.history,
                         "uncompressed_size": layer.uncompressed_size, "name": layer.name,
                         "files": layer.file_count,
                         "blob": file_status(blob)})


def _blob_matches(path: Path, descriptor: Descriptor) -> bool:
    """Whether the file at ``path`` has the descriptor's size and sha256."""
    try:
        return (path.stat().st_size == descriptor.size
                and "sha256:" + file_sha256(path) == descriptor.digest)
    except OSError:
        return False
