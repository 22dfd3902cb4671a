"""Image sinks on disk: one tarball that is both an OCI layout and a docker archive,
or an OCI layout directory. Each takes an Image or an Index.

The tarball holds::

    oci-layout                    {"imageLayoutVersion": "1.0.0"}
    index.json                    one descriptor, annotated with the name: of the
                                  image's manifest, or of the image index
    blobs/sha256/<hex>            index, manifests, configs, layers (each once)
    manifest.json                 docker's: [{"Config", "RepoTags", "Layers"}], for
                                  an index its first platform's image only

so ``skopeo … oci-archive:``, ``skopeo … docker-archive:``, ``podman load`` and
``docker load`` all read it. Members are sorted and dated at the build epoch.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable

from ..cache import file_status, read_record, write_record
from ..errors import ImageError
from ..layers.entries import Kind
from ..layers.tarwriter import BLOCK, RECORD, tar_header
from ..oci.index import Artifact, blobs_of, images_of
from ..oci.types import MediaType, canonical_json
from .atomic import atomic_dir, atomic_file

REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"
OCI_LAYOUT = canonical_json({"imageLayoutVersion": "1.0.0"})
ARCHIVE_FORMAT = "1"  # bump when the archive's layout or member metadata change


def _index(image: Artifact, name: str | None) -> bytes:
    annotations = {}
    if name:
        annotations[IMAGE_NAME] = name
        annotations[REF_NAME] = _ref_name(name)
    return canonical_json({
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_INDEX.value,
        "manifests": [image.manifest_descriptor(annotations).to_json()],
    })


def _ref_name(name: str) -> str:
    """The tag part of ``name`` (OCI convention for ``ref.name``), else the name."""
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def _docker_manifest(artifact: Artifact, name: str | None) -> bytes:
    """docker's manifest.json: one image (an index's first platform), under ``name``.

    docker's format has no platforms: two entries with one tag would leave the
    tag to whichever ``docker load`` happens to read last.
    """
    image = images_of(artifact)[0]
    entry: dict[str, Any] = {
        "Config": _blob_name(image.config_descriptor.digest),
        "RepoTags": [_docker_tag(name)] if name else [],
        "Layers": [_blob_name(layer.digest) for layer in image.layers],
    }
    return json.dumps([entry], separators=(",", ":")).encode()


def _docker_tag(name: str) -> str:
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else name + ":latest"


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.split(":", 1)[1]


def _members(image: Artifact,
             name: str | None) -> list[tuple[str, int, Callable[[], BinaryIO]]]:
    """Every member of the archive as (name, size, opener), sorted by name."""
    def data(b: bytes) -> tuple[int, Callable[[], BinaryIO]]:
        return len(b), lambda: io.BytesIO(b)

    members: dict[str, tuple[int, Callable[[], BinaryIO]]] = {
        "oci-layout": data(OCI_LAYOUT),
        "index.json": data(_index(image, name)),
        "manifest.json": data(_docker_manifest(image, name)),
        _blob_name(image.digest): data(image.manifest_bytes),
    }
    for each in images_of(image):
        members.setdefault(_blob_name(each.digest), data(each.manifest_bytes))
    for blob in blobs_of(image):
        members.setdefault(_blob_name(blob.descriptor.digest), (blob.descriptor.size,
                                                                 blob.opener))
    return [(n, size, opener) for n, (size, opener) in sorted(members.items())]


def write_tarball(image: Artifact, path: Path, name: str | None, epoch: int = 0,
                  stamp_dir: Path | None = None) -> bool:
    """Write ``image`` to ``path`` atomically as an OCI + docker archive.

    With ``stamp_dir`` (a cache directory), a ``path`` that still is what an
    earlier call wrote for the very same archive, by its recorded identity and
    file status (device, inode, size, mtime, ctime: any write or replacement
    changes one), is left alone, as ``make`` would. Returns whether it wrote.
    """
    members = _members(image, name)
    identity = _archive_identity(members, epoch)
    stamp = stamp_dir / (hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()
                         + ".json") if stamp_dir is not None else None
    if stamp is not None and _stamp_matches(stamp, path, identity):
        return False
    with atomic_file(path, remove_stale=True) as out:
        _write_archive(out.fileno(), members, epoch)
    if stamp is not None:
        _record_stamp(stamp, path, identity)
    return True


def _archive_identity(members: list[tuple[str, int, Callable[[], BinaryIO]]],
                      epoch: int) -> str:
    """What decides the archive's bytes: member names and sizes (blobs are named by
    digest), the small metadata files' content, and the epoch."""
    h = hashlib.sha256(f"{ARCHIVE_FORMAT}\0{epoch}\0".encode())
    for member, size, opener in members:
        h.update(f"{member}\0{size}\0".encode())
        if not member.startswith("blobs/"):
            with opener() as stream:
                h.update(stream.read())
    return h.hexdigest()


def _stamp_matches(stamp: Path, path: Path, identity: str) -> bool:
    record = read_record(stamp)
    status = file_status(path)
    return (isinstance(record, dict) and status is not None
            and record.get("identity") == identity and record.get("status") == status)


def _record_stamp(stamp: Path, path: Path, identity: str) -> None:
    """Note what ``path`` now holds; a stamp that cannot be written costs a rewrite."""
    try:
        write_record(stamp, {"path": os.path.abspath(path), "identity": identity,
                             "status": file_status(path)})
    except OSError:
        pass


def _write_archive(fd: int, members: list[tuple[str, int, Callable[[], BinaryIO]]],
                   epoch: int) -> None:
    """The archive's bytes (those of ``tarfile`` in PAX stream mode) to ``fd``; blob data
    is copied file to file inside the kernel where it can be."""
    written = 0

    def put(data: bytes) -> None:
        nonlocal written
        _write_all(fd, data)
        written += len(data)

    for dirname in ("blobs", "blobs/sha256"):
        put(tar_header(dirname, Kind.DIR, 0o755, 0, 0, 0, epoch))
    for member, size, opener in members:
        put(tar_header(member, Kind.FILE, 0o644, 0, 0, size, epoch))
        with opener() as stream:
            _copy_exactly(stream, fd, size, member)
        written += size
        put(b"\0" * (-size % BLOCK))
    put(b"\0" * (2 * BLOCK))
    if written % RECORD:
        put(b"\0" * (RECORD - written % RECORD))


def _copy_exactly(stream: BinaryIO, fd: int, size: int, member: str) -> None:
    """``size`` bytes of ``stream`` to ``fd``: ``copy_file_range`` for a plain file,
    else (or where the kernel refuses) through a buffer."""
    left = size
    if type(stream) is io.BufferedReader and hasattr(os, "copy_file_range"):
        offset = stream.tell()
        try:
            while left:
                n = os.copy_file_range(stream.fileno(), fd, min(left, 1 << 30), offset)
                if not n:
                    break
                offset += n
                left -= n
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
        stream.seek(offset)
    while left:
        block = stream.read(min(left, 1 << 20))
        if not block:
            raise ImageError(f"{member}: the blob ended {left} bytes early")
        _write_all(fd, block)
        left -= len(block)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_layout_dir(image: Artifact, path: Path, name: str | None) -> None:
    """Write ``image`` as an OCI image layout directory (swapped in atomically)."""
    with atomic_dir(path) as tmp:
        (tmp / "blobs" / "sha256").mkdir(parents=True)
        for member, size, opener in _members(image, name):
            if member == "manifest.json":
                continue
            with opener() as src, open(tmp / member, "wb") as dst:
                _copy_exactly(src, dst.fileno(), size, member)
