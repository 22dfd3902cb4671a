"""Image sinks on disk: one tarball that is both an OCI layout and a docker archive,
or an OCI layout directory.

The tarball holds::

    oci-layout                    {"imageLayoutVersion": "1.0.0"}
    index.json                    one manifest descriptor, annotated with the name
    blobs/sha256/<hex>            config, manifest, layers (each once)
    manifest.json                 docker's: [{"Config", "RepoTags", "Layers"}]

so ``skopeo … oci-archive:``, ``skopeo … docker-archive:``, ``podman load`` and
``docker load`` all read it. Members are sorted and dated at the build epoch.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

from ..oci.image import Image
from ..oci.types import MediaType, canonical_json
from .atomic import atomic_dir, atomic_file

REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"
OCI_LAYOUT = canonical_json({"imageLayoutVersion": "1.0.0"})


def _index(image: Image, name: str | None) -> bytes:
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


def _docker_manifest(image: Image, name: str | None) -> bytes:
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


def _members(image: Image, name: str | None) -> list[tuple[str, int, Callable[[], BinaryIO]]]:
    """Every member of the archive as (name, size, opener), sorted by name."""
    def data(b: bytes) -> tuple[int, Callable[[], BinaryIO]]:
        return len(b), lambda: io.BytesIO(b)

    members: dict[str, tuple[int, Callable[[], BinaryIO]]] = {
        "oci-layout": data(OCI_LAYOUT),
        "index.json": data(_index(image, name)),
        "manifest.json": data(_docker_manifest(image, name)),
        _blob_name(image.config_descriptor.digest): data(image.config_bytes),
        _blob_name(image.digest): data(image.manifest_bytes),
    }
    for layer in image.layers:
        members.setdefault(_blob_name(layer.digest), (layer.size, layer.opener))
    return [(n, size, opener) for n, (size, opener) in sorted(members.items())]


def write_tarball(image: Image, path: Path, name: str | None, epoch: int = 0) -> None:
    """Write ``image`` to ``path`` atomically as an OCI + docker archive."""
    with atomic_file(path) as out:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,
                          bufsize=1 << 20, copybufsize=1 << 20) as tar:
            for dirname in ("blobs", "blobs/sha256"):
                info = tarfile.TarInfo(dirname)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, epoch
                tar.addfile(info)
            for member, size, opener in _members(image, name):
                info = tarfile.TarInfo(member)
                info.size, info.mode, info.mtime = size, 0o644, epoch
                with opener() as stream:
                    tar.addfile(info, stream)


def write_layout_dir(image: Image, path: Path, name: str | None) -> None:
    """Write ``image`` as an OCI image layout directory (swapped in atomically)."""
    with atomic_dir(path) as tmp:
        (tmp / "blobs" / "sha256").mkdir(parents=True)
        for member, _size, opener in _members(image, name):
            if member == "manifest.json":
                continue
            with opener() as src, open(tmp / member, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
