"""The layer cache in the cache directory.

::

    <cache>/blobs/sha256/<hex>     layer blobs, content-addressed
    <cache>/layers/<key>.json      a record per key: descriptor, diff_id, sizes, history,
                                   the ELF members, extra, and the blob file's status
    <cache>/elf/<diff_id hex>.json the ELF members of a layer, by its content
    <cache>/closure/<key>          a verdict (an empty file)
    <cache>/notes/<key>.json       a note (a JSON object)
    <cache>/pushed/<repo>/<key>    the remote cache ``repo`` is known to hold ``key``

A record whose blob is gone or damaged is ignored and the layer rebuilt.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ..cache import file_sha256, file_status, open_regular, read_record
from ..cache import write_record as write_json
from ..errors import ImageError
from ..layers.entries import FileOpener
from ..oci.image import Layer
from ..oci.types import Descriptor
from ..sinks.atomic import atomic_file
from . import LOCAL, Hit, Record, layer_from_json, layer_json, record_from_json, record_json


def blob_path(blob_dir: Path, digest: str) -> Path:
    return blob_dir / "sha256" / digest.split(":", 1)[1]


def elf_note(blob_dir: Path, diff_id: str) -> Path:
    return blob_dir.parent / "elf" / f"{diff_id.split(':', 1)[1]}.json"


def elf_members(blob_dir: Path, diff_id: str) -> list[str] | None:
    """Image paths of the FILE members of layer ``diff_id`` whose data starts with the
    ELF magic, as the tar writer saw them when it built the layer; None if unknown
    (the layer was not built here, or before this was recorded).

    The note is keyed by the uncompressed content, so it holds for any layer with
    that diff_id, whichever inputs or cache record produced it.
    """
    data = read_record(elf_note(blob_dir, diff_id))
    paths = data.get("elf") if isinstance(data, dict) else None
    if isinstance(paths, list) and all(isinstance(p, str) for p in paths):
        return paths
    return None


def write_elf_note(blob_dir: Path, diff_id: str, paths: list[str]) -> None:
    write_json(elf_note(blob_dir, diff_id), {"elf": list(paths)})


# the first bytes of a layer blob, by how it is compressed
_MAGIC = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd"}


def _compression_matches(path: Path, media_type: str) -> bool:
    """Whether the blob's first bytes fit the record's media type (a record claiming
    zstd for a gzip blob would make a broken image without any digest failing)."""
    kind = "zstd" if media_type.endswith("+zstd") else "none" if media_type.endswith(
        ".tar") else "gzip"
    try:
        with open_regular(path) as f:
            head = f.read(4)
    except OSError:
        return False
    if kind == "none":
        return not any(head.startswith(m) for m in _MAGIC.values())
    return head.startswith(_MAGIC[kind])


class LocalLayerCache:
    """Layers and verdicts in a cache directory (see the module doc)."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self.blob_dir = self.cache_dir / "blobs"

    def _record_path(self, key: str) -> Path:
        return self.cache_dir / "layers" / f"{key}.json"

    def get(self, key: str) -> Hit | None:
        """The layer recorded under ``key`` if its blob is intact, else None.

        "Intact" is checked cheaply, like the output stamps: the record keeps the blob
        file's device, inode, size, mtime and ctime as they were when it was recorded.
        A blob whose status differs (touched, rewritten, copied back, fetched since) is
        hashed: if its digest still matches it is used (and the record refreshed), else
        it is removed, so a damaged cache never reaches an image.
        """
        path = self._record_path(key)
        data = read_record(path)
        try:
            layer = layer_from_json(data, None)
            blob = blob_path(self.blob_dir, layer.digest)
            layer = replace(layer, opener=FileOpener(str(blob)))
            record = record_from_json(data)
            if record.elf is None:  # a record from before it kept them
                elf = elf_members(self.blob_dir, layer.diff_id)
                record = Record(tuple(elf) if elf is not None else None, record.extra)
            status = file_status(blob)
            if not _compression_matches(blob, layer.media_type):
                return None
            if status is not None and status == data.get("blob") and status[2] == layer.size:
                return Hit(layer, record, LOCAL)
            if blob_matches(blob, layer.descriptor):
                self._write(path, layer, record, blob)
                return Hit(layer, record, LOCAL)
            if not _named_by_content(blob):
                blob.unlink(missing_ok=True)  # damaged: only then, never a good blob
        except (OSError, ValueError, KeyError, TypeError, AttributeError, ImageError):
            pass
        return None

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def put(self, key: str, layer: Layer, record: Record) -> None:
        """Record ``layer`` under ``key``; its ELF members are noted by diff_id too.

        The blob need not be here yet (a remote hit fetches it on first read): the
        record is then used only once the blob is there and matches its digest.
        """
        if record.elf is not None and elf_members(self.blob_dir, layer.diff_id) is None:
            write_elf_note(self.blob_dir, layer.diff_id, list(record.elf))
        self._write(self._record_path(key), layer, record, blob_path(self.blob_dir, layer.digest))

    def _write(self, path: Path, layer: Layer, record: Record, blob: Path) -> None:
        write_json(path, {**layer_json(layer), **record_json(record),
                          "blob": file_status(blob)})

    def cached(self, key: str, make: Callable[[], Layer],
               extra: Callable[[Layer], dict[str, Any]] | None = None) -> tuple[Layer, bool]:
        """The layer recorded under ``key``, else ``make()`` (recorded)."""
        hit = self.get(key)
        if hit is not None:
            return hit.layer, True
        layer = make()
        self.put(key, layer, self.record_of(layer, extra(layer) if extra else {}))
        return layer, False

    def record_of(self, layer: Layer, extra: dict[str, Any]) -> Record:
        """The record of a layer just built here (its ELF note was written by the build)."""
        elf = elf_members(self.blob_dir, layer.diff_id)
        return Record(tuple(elf) if elf is not None else None, extra)

    # -- verdicts ------------------------------------------------------------------

    def _verdict_path(self, key: str) -> Path:
        return self.cache_dir / "closure" / key

    def has_verdict(self, key: str) -> bool:
        return self._verdict_path(key).exists()

    def put_verdict(self, key: str) -> None:
        """Record a verdict (an empty file); losing a race or the write is harmless."""
        path = self._verdict_path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        except OSError:
            pass

    # -- notes ----------------------------------------------------------------------

    def get_note(self, key: str) -> dict[str, Any] | None:
        note = read_record(self.cache_dir / "notes" / f"{key}.json")
        return note if isinstance(note, dict) else None

    def put_note(self, key: str, note: dict[str, Any]) -> None:
        try:
            write_json(self.cache_dir / "notes" / f"{key}.json", note)
        except OSError:
            pass

    # -- what a remote cache holds -------------------------------------------------------

    def _pushed_path(self, origin: str, key: str) -> Path:
        import hashlib

        repo = hashlib.sha256(origin.encode()).hexdigest()[:16]
        return self.cache_dir / "pushed" / repo / key

    def pushed(self, origin: str, key: str) -> bool:
        """Whether this cache saw ``key`` stored in the remote cache ``origin``."""
        return self._pushed_path(origin, key).exists()

    def mark_pushed(self, origin: str, key: str) -> None:
        path = self._pushed_path(origin, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        except OSError:
            pass

    # -- content keys ------------------------------------------------------------------

    def memo(self, local_key: str) -> str | None:
        """The content key remembered for a local key (whose stamps say the inputs are
        as they were when it was computed), or None."""
        try:
            text = (self.cache_dir / "content-keys" / local_key).read_text().strip()
        except OSError:
            return None
        return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None

    def remember(self, local_key: str, content_key: str) -> None:
        try:
            with atomic_file(self.cache_dir / "content-keys" / local_key) as out:
                out.write(content_key.encode())
        except OSError:
            pass


def _named_by_content(blob: Path) -> bool:
    """Whether the blob file's sha256 is its name: a sound blob, whatever a record
    claims about it (a record with a wrong size must not evict it)."""
    try:
        return file_sha256(blob) == blob.name
    except OSError:
        return False


def blob_matches(path: Path, descriptor: Descriptor) -> bool:
    """Whether the file at ``path`` has the descriptor's size and sha256."""
    try:
        return (path.stat().st_size == descriptor.size
                and "sha256:" + file_sha256(path) == descriptor.digest)
    except OSError:
        return False
