"""Turn entries into a finished, content-addressed layer blob.

One pass: entries → tar → (sha256 = diff_id) → compressor → (sha256 = digest)
→ a temporary file renamed to ``<blob_dir>/sha256/<hex>``. Nothing is held in
memory beyond a copy buffer.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from ..oci.image import Layer
from ..oci.types import Descriptor
from .compress import compressor, layer_media_type
from .entries import Entry
from .hashio import HashingWriter
from .tarwriter import normalize, write_tar


def blob_path(blob_dir: Path, digest: str) -> Path:
    return blob_dir / "sha256" / digest.split(":", 1)[1]


def blob_opener(path: Path):
    return lambda: open(path, "rb")


def build_layer(entries: Iterable[Entry], *, blob_dir: Path, epoch: int,
                compression: str = "gzip", name: str = "",
                history: dict[str, Any] | None = None,
                keep_special_bits: bool = False) -> Layer:
    """Write ``entries`` as a deterministic layer blob under ``blob_dir``."""
    ordered = normalize(entries, keep_special_bits=keep_special_bits)
    (blob_dir / "sha256").mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".layer-", dir=blob_dir)
    try:
        with os.fdopen(fd, "wb") as raw:
            compressed = HashingWriter(raw)
            packer = compressor(compression, compressed)
            uncompressed = HashingWriter(packer)  # type: ignore[arg-type]
            stats = write_tar(ordered, uncompressed, epoch)  # type: ignore[arg-type]
            packer.close()
        final = blob_path(blob_dir, compressed.digest)
        os.replace(tmp_name, final)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    descriptor = Descriptor(layer_media_type(compression), compressed.digest, compressed.size)
    return Layer(descriptor, uncompressed.digest, blob_opener(final),
                 history=dict(history or {}), uncompressed_size=uncompressed.size,
                 name=name, file_count=stats.files)
