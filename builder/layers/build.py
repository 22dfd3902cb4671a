"""Turn entries into a finished, content-addressed layer blob.

One pass: entries → tar → (sha256 = diff_id) → compressor → (sha256 = digest)
→ a temporary file renamed to ``<blob_dir>/sha256/<hex>``. Nothing is held in
memory beyond a copy buffer.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from ..cache import clear_non_file
from ..oserrors import naming
from ..layercache.local import LocalLayerCache, blob_path, elf_members, write_elf_note
from ..oci.image import Layer
from ..oci.types import Descriptor
from ..sinks.atomic import remove_stale_temps
from .compress import compressor, layer_media_type
from ..progress import CountingWriter, NullProgress, Progress, Task
from .entries import Entry, FileOpener, Kind
from .hashio import HashingWriter, ThreadedWriter
from .tarwriter import normalize, write_tar


def build_layer(entries: Iterable[Entry], *, blob_dir: Path, epoch: int,
                compression: str = "gzip", name: str = "",
                history: dict[str, Any] | None = None,
                keep_special_bits: bool = False, progress: Progress | None = None) -> Layer:
    """Write ``entries`` as a deterministic layer blob under ``blob_dir``; ``progress``
    shows the tar bytes as they are compressed."""
    ordered = normalize(entries, keep_special_bits=keep_special_bits)
    with (progress or NullProgress()).task(
            f"{'writing' if compression == 'none' else 'compressing'} layer {name or '?'} "
            f"({compression if compression != 'none' else 'tar'})",
            total=_tar_size_estimate(ordered), brief=True) as task:
        return _build_layer(ordered, blob_dir, epoch, compression, name, history, task)


def _build_layer(ordered: list[Entry], blob_dir: Path, epoch: int, compression: str,
                 name: str, history: dict[str, Any] | None, task: Task) -> Layer:
    (blob_dir / "sha256").mkdir(parents=True, exist_ok=True)
    _clean_once(blob_dir)
    fd, tmp_name = tempfile.mkstemp(prefix=f".layer.{os.getpid()}.", suffix=".tmp",
                                    dir=blob_dir)
    try:
        with naming(tmp_name), os.fdopen(fd, "wb") as raw:
            compressed = HashingWriter(raw)
            if compression == "none":  # the blob is the tar: one sha256 is both digests
                packer, uncompressed = None, compressed
            else:
                packer = compressor(compression, compressed)
                uncompressed = HashingWriter(packer)  # type: ignore[arg-type]
            counted = CountingWriter(uncompressed, task.advance)  # type: ignore[arg-type]
            with ThreadedWriter(counted) as writer:  # type: ignore[arg-type]
                stats = write_tar(ordered, writer, epoch)  # type: ignore[arg-type]
            if packer is not None:
                packer.close()
        final = blob_path(blob_dir, compressed.digest)
        clear_non_file(final)
        os.replace(tmp_name, final)
        write_elf_note(blob_dir, uncompressed.digest, stats.elf)
        from .reader import checked_marker, mark_checked  # what ocibuild writes passes
        mark_checked(checked_marker(blob_dir.parent, compressed.digest, uncompressed.digest))
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


def _tar_size_estimate(entries: list[Entry]) -> int:
    """About the tar stream's size (a 512-byte header per entry, file data padded to
    512, the end blocks, the whole padded to tar's 10 240-byte records; PAX headers
    not counted): the total the progress display measures against."""
    size = sum(512 + (-(-e.size // 512) * 512 if e.kind is Kind.FILE else 0)
               for e in entries) + 1024
    return -(-size // 10240) * 10240


_cleaned: set[Path] = set()


def _clean_once(blob_dir: Path) -> None:
    """Remove the temp blobs of killed builds, once per process and blob dir."""
    if blob_dir not in _cleaned:
        _cleaned.add(blob_dir)
        remove_stale_temps(blob_dir, ".layer.")


# -- layer keys -------------------------------------------------------------------------
#
# A layer whose inputs have not changed is not re-tarred or re-compressed: the
# caller names the inputs (a key) and looks it up in a layer cache
# (:mod:`builder.layercache`).

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
    """The layer recorded under ``key`` in the local cache, else ``make()`` (recorded).

    Transitional: :meth:`builder.layercache.local.LocalLayerCache.cached` is the home
    of this; ``blob_dir`` is ``<cache>/blobs``.
    """
    return LocalLayerCache(blob_dir.parent).cached(key, make)


__all__ = ["build_layer", "blob_path", "cached_layer", "elf_members", "entries_cache_key",
           "layer_cache_key"]
