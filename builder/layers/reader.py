"""Stream the members of finished layers (for inspect, audit, SBOM and the image view)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from ..oci.image import Image, Layer
from .compress import decompressing_reader
from ..errors import DigestMismatchError, ImageError
from .members import MAX_LAYER_TAR_BYTES, CheckedTarInfo, MemberCheck, MemberError


@dataclass(frozen=True)
class Member:
    layer_index: int
    path: str        # absolute image path
    size: int
    mode: int
    uid: int
    gid: int
    type: bytes      # tarfile type code
    linkname: str


class _Counting(io.RawIOBase):
    """Counts and hashes the bytes read through it (the layer's uncompressed tar
    stream: its length is the uncompressed size, its digest the diff_id)."""

    def __init__(self, stream: BinaryIO, limit: int = MAX_LAYER_TAR_BYTES) -> None:
        self._stream, self.count, self.limit = stream, 0, limit
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        data = self._stream.read(len(buffer))
        buffer[:len(data)] = data
        self.count += len(data)
        if self.count > self.limit:
            raise MemberError(f"its tar stream grows past {self.limit} bytes")
        self.sha256.update(data)
        return len(data)


def iter_members(layer: Layer, index: int = 0, *,
                 on_end: Callable[[int], None] | None = None, special_files: bool = True,
                 ) -> Iterator[tuple[Member, tarfile.TarFile, tarfile.TarInfo]]:
    """Stream the members of a layer without extracting it.

    Every member goes through :class:`MemberCheck` (paths normalized to image
    paths; escapes, NUL bytes, wild owner ids, huge pax headers, stray hard
    links and members below a symlink refused; devices and FIFOs too unless
    ``special_files``), so a hostile layer raises :class:`InputError` naming it
    and never reaches an image. After the last member the whole stream has
    been hashed: a layer whose tar does not match its diff_id raises
    :class:`DigestMismatchError`. ``on_end``, if given, is then called with the
    length of the uncompressed tar stream (what "uncompressed size" means).
    """
    name = f"layer {layer.digest[:19]}…"
    check = MemberCheck(name, special_files=special_files)
    with layer.opener() as raw:
        counted = _Counting(decompressing_reader(raw, layer.media_type))
        stream = io.BufferedReader(counted, 1 << 20)
        try:
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=CheckedTarInfo) as tar:
                for info in tar:
                    path, _ = check(info)
                    yield (Member(index, path, info.size, info.mode, info.uid, info.gid,
                                  info.type, info.linkname), tar, info)
            while stream.read(1 << 20):  # the end-of-archive blocks and record padding
                pass
        except MemberError as e:
            raise MemberError(f"{name}: {e}") from None
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise ImageError(f"{name}: not a readable tar stream ({e})") from None
        diff_id = "sha256:" + counted.sha256.hexdigest()
        if diff_id != layer.diff_id:
            raise DigestMismatchError(f"{name}: its tar (the config's diff_id)",
                                      layer.diff_id, diff_id)
        if on_end is not None:
            on_end(counted.count)


def checked_marker(cache_dir: Path, digest: str, diff_id: str) -> Path:
    """Where :func:`check_layers` remembers that blob ``digest`` is a tar that matches
    ``diff_id`` and whose members pass (the layer builder marks what it writes)."""
    name = f"{digest.split(':', 1)[-1][:32]}-{diff_id.split(':', 1)[-1][:32]}"
    return cache_dir / "checked" / name


def mark_checked(marker: Path) -> None:
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass  # a cache that cannot be written only costs a re-check


def check_layers(image: Image, cache_dir: Path | None = None) -> None:
    """Read every layer of ``image`` through :func:`iter_members`: a member that
    escapes the root (or is otherwise refused) or a tar that does not match its
    diff_id raises, as it would in ``inspect`` or ``audit``.

    With ``cache_dir``, a layer that passed (or that ocibuild wrote) is remembered
    there by blob digest and diff_id and not read again: a registry checks a blob's
    digest on upload, so the same digest is the same, already checked, tar.
    """
    for index, layer in enumerate(image.layers):
        marker = checked_marker(cache_dir, layer.digest, layer.diff_id) if cache_dir else None
        if marker is not None and marker.exists():
            continue
        for _ in iter_members(layer, index):
            pass
        if marker is not None:
            mark_checked(marker)
