"""Read an image back from what :mod:`builder.sinks.tarball` writes.

Accepts an OCI archive (tar), an OCI layout directory, or a docker archive that
has no ``index.json`` (what ``docker save`` wrote before Docker 25). The result
is an :class:`Image` whose layer openers stream straight from the file.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

from ..errors import DigestMismatchError, ImageError, InputError
from ..layers.hashio import SectionReader
from ..oci.image import Image, Layer, RawManifest, config_layers
from ..oci.index import Index, IndexManifest
from ..oci.types import (MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, Descriptor, MediaType, Platform,
                         check_digest, sha256_digest)

MAX_JSON_BYTES = 64 << 20
"""The largest JSON document (index.json, manifest.json) read from an archive."""


class _Archive:
    """Uniform access to the members of a tar archive or a layout directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.members: dict[str, tuple[int, int]] = {}
        if path.is_dir():
            return
        try:
            with tarfile.open(path, "r:") as tar:
                for info in tar:
                    if info.isfile() and not info.issparse():
                        self.members[_member_name(info.name)] = (info.offset_data, info.size)
        except (tarfile.TarError, OSError) as e:
            raise ImageError(f"{path}: not an image tarball ({e})") from e

    def _inside(self, name: str) -> Path:
        """``name`` as a file of the layout directory; never a path outside it."""
        if not isinstance(name, str) or not name or name.startswith("/") or any(
                part in ("..", "") for part in _member_name(name).split("/")):
            raise ImageError(f"{self.path}: refusing member name {name!r} (absolute or "
                             "with '..')")
        target = (self.path / name).resolve()
        root = self.path.resolve()
        if root not in target.parents:
            raise ImageError(f"{self.path}: member {name!r} resolves outside the directory")
        return target

    def has(self, name: str) -> bool:
        if self.path.is_dir():
            return self._inside(name).is_file()
        return _member_name(name) in self.members

    def opener(self, name: str) -> Callable[[], BinaryIO]:
        if self.path.is_dir():
            target = self._inside(name)
            if not target.is_file():
                raise ImageError(f"{self.path}: missing {name}")
            return lambda: open(target, "rb")
        name = _member_name(name)
        if name not in self.members:
            raise ImageError(f"{self.path}: missing {name}")
        offset, size = self.members[name]
        return lambda: SectionReader(str(self.path), offset, size)  # type: ignore[return-value]

    def size(self, name: str) -> int:
        if self.path.is_dir():
            return self._inside(name).stat().st_size
        return self.members[_member_name(name)][1]

    def read(self, name: str, limit: int = MAX_JSON_BYTES) -> bytes:
        if self.has(name) and self.size(name) > limit:
            raise ImageError(f"{self.path}: {name} is {self.size(name)} bytes; a JSON "
                             f"document here is at most {limit}")
        with self.opener(name)() as f:
            return f.read(limit + 1)

    def json(self, name: str, kind: type = dict) -> Any:
        value = _parse_json(self.read(name), f"{self.path}: {name}")
        if not isinstance(value, kind):
            raise ImageError(f"{self.path}: {name} is not a JSON {kind.__name__}")
        return value


def _parse_json(data: bytes, what: str) -> Any:
    """``json.loads`` whose failures, nesting too deep for Python included, are
    :class:`ImageError` naming ``what``."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ImageError(f"{what} is nested too deeply to be an image document") from None
    except ValueError as e:
        raise ImageError(f"{what} is not valid JSON: {e}") from e


def _member_name(name: str) -> str:
    """A tar member's name without a leading ``./`` (never stripping other dots)."""
    while name.startswith("./"):
        name = name[2:]
    return name


def _blob(digest: str) -> str:
    return "blobs/sha256/" + check_digest(digest).split(":", 1)[1]


def check_image_path(path: Path | str) -> None:
    """Refuse an existing ``path`` that is neither a file nor a directory: opening a
    FIFO or a device as a tarball would block or read forever."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing (or unreadable): the caller's open says which
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InputError(f"{path}: not a regular file or directory, so not an image "
                         "tarball or layout directory")


def read_artifact(path: Path) -> Image | Index:
    """Load the image, or the image index, in an archive or layout at ``path``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    check_image_path(path)
    archive = _Archive(path)
    if archive.has("index.json"):
        return _read_oci(archive)
    if archive.has("manifest.json"):
        return _read_docker(archive)
    raise ImageError(f"{path}: neither an OCI layout (index.json) nor a docker archive "
                     "(manifest.json)")


def read_image(path: Path, platform: Platform | None = None) -> Image:
    """Load the image at ``path``; from an index, the one for ``platform``, which
    must then be given."""
    artifact = read_artifact(path)
    if isinstance(artifact, Image):
        if platform is not None and not artifact.platform.satisfies(platform):
            raise InputError(f"{path}: the image is for {artifact.platform}, not {platform}")
        return artifact
    if platform is None:
        raise InputError(f"{path} holds an image index for "
                         f"{', '.join(str(p) for p in artifact.platforms)}; "
                         "choose one with --platform")
    return artifact.image_for(platform)


def image_name(path: Path) -> str | None:
    """The image name recorded in an archive's index (or docker RepoTags), if any."""
    archive = _Archive(Path(path))
    if archive.has("index.json"):
        for desc in archive.json("index.json").get("manifests") or []:
            ann = (desc.get("annotations") if isinstance(desc, dict) else None) or {}
            name = ann.get("io.containerd.image.name") or ann.get(
                "org.opencontainers.image.ref.name")
            if name:
                return name
    if archive.has("manifest.json"):
        entries = archive.json("manifest.json", list) or [{}]
        tags = (entries[0].get("RepoTags") if isinstance(entries[0], dict) else None) or []
        return tags[0] if tags else None
    return None


def _json_object(data: bytes, archive: _Archive, what: str) -> dict[str, Any]:
    value = _parse_json(data, f"{archive.path}: the {what}")
    if not isinstance(value, dict):
        raise ImageError(f"{archive.path}: the {what} is not a JSON object")
    return value


def _verified(archive: _Archive, desc: Descriptor, what: str, limit: int) -> bytes:
    """The blob ``desc`` names, checked against its size (and ``limit``) before it is
    read and against its digest after."""
    name = _blob(desc.digest)
    if not archive.has(name):
        raise ImageError(f"{archive.path}: the {what} blob {desc.digest} is missing")
    if desc.size > limit:
        raise ImageError(f"{archive.path}: the {what} descriptor claims {desc.size} bytes; "
                         f"a {what} is at most {limit}")
    if archive.size(name) != desc.size:
        raise ImageError(f"{archive.path}: the {what} blob {desc.digest} is "
                         f"{archive.size(name)} bytes; its descriptor says {desc.size}")
    data = archive.read(name, limit)
    actual = sha256_digest(data)
    if actual != desc.digest:
        raise DigestMismatchError(f"{archive.path}: {what}", desc.digest, actual)
    return data


def _read_oci(archive: _Archive) -> Image | Index:
    index = archive.json("index.json")
    manifests = index.get("manifests") or []
    if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
        raise ImageError(f"{archive.path}: index.json: manifests must be a list of descriptors")
    if len(manifests) != 1:
        raise ImageError(f"{archive.path}: index.json holds {len(manifests)} manifests; "
                         "ocibuild reads archives holding exactly one image")
    desc = _descriptor(archive, manifests[0])
    manifest_bytes = _verified(archive, desc, "manifest", MAX_MANIFEST_BYTES)
    manifest = _json_object(manifest_bytes, archive, "manifest")
    if _media_type(manifest.get("mediaType", desc.media_type), archive).is_index():
        return _read_index(archive, manifest_bytes, manifest)
    return _read_manifest(archive, desc, manifest_bytes, manifest)


def _media_type(value: object, archive: _Archive) -> MediaType:
    try:
        return MediaType(value)
    except ValueError:
        raise ImageError(f"{archive.path}: unsupported manifest media type {value!r}") from None


def _read_index(archive: _Archive, data: bytes, index: dict[str, Any]) -> Index:
    """An image index inside the layout: each of its manifests read like a single image."""
    entries = index.get("manifests")
    if not isinstance(entries, list) or not entries or not all(
            isinstance(m, dict) for m in entries):
        raise ImageError(f"{archive.path}: the image index lists no manifests")
    manifests = []
    for raw in entries:
        desc = _descriptor(archive, raw)
        body_bytes = _verified(archive, desc, "manifest", MAX_MANIFEST_BYTES)
        body = _json_object(body_bytes, archive, "manifest")
        if _media_type(body.get("mediaType", desc.media_type), archive).is_index():
            raise ImageError(f"{archive.path}: nested image indexes are not supported")
        manifests.append(IndexManifest(_read_manifest(archive, desc, body_bytes, body),
                                       desc.annotations))
    return Index(tuple(manifests), dict(index.get("annotations") or {}), raw=data)


def _read_manifest(archive: _Archive, desc: Descriptor, manifest_bytes: bytes,
                   manifest: dict[str, Any]) -> Image:
    if not isinstance(manifest.get("config"), dict):
        raise ImageError(f"{archive.path}: the manifest has no config descriptor")
    config_desc = _descriptor(archive, manifest["config"])
    config_bytes = _verified(archive, config_desc, "config", MAX_CONFIG_BYTES)
    config = _json_object(config_bytes, archive, "config")
    if not isinstance(manifest.get("layers", []), list):
        raise ImageError(f"{archive.path}: the manifest's layers is not a list")
    layer_descs = [_descriptor(archive, d) for d in manifest.get("layers", [])]
    layers = tuple(_layer(archive, d, diff_id, history) for d, (diff_id, history) in
                   zip(layer_descs, config_layers(config, len(layer_descs), str(archive.path))))
    raw = RawManifest(manifest_bytes, manifest.get("mediaType", str(desc.media_type)),
                      config_bytes, str(config_desc.media_type))
    return Image(config, layers, dict(manifest.get("annotations") or {}), raw=raw)


def _descriptor(archive: _Archive, obj: Any) -> Descriptor:
    try:
        return Descriptor.from_json(obj)
    except ImageError as e:
        raise ImageError(f"{archive.path}: {e}") from e


def _layer(archive: _Archive, desc: Descriptor, diff_id: str, history: dict) -> Layer:
    name = _blob(desc.digest)
    if not archive.has(name):
        raise ImageError(f"{archive.path}: layer blob {desc.digest} is missing")
    if archive.size(name) != desc.size:
        raise ImageError(f"{archive.path}: layer {desc.digest} is {archive.size(name)} bytes, "
                         f"the manifest says {desc.size}")
    return Layer(desc, diff_id, archive.opener(name), history=history,
                 name=str(history.get("comment", "")))


def _read_docker(archive: _Archive) -> Image:
    """A docker archive: layers may be plain tars; their digests are taken here."""
    from ..layers.hashio import HashingWriter

    entries = archive.json("manifest.json", list)
    if len(entries) != 1 or not isinstance(entries[0], dict) or not isinstance(
            entries[0].get("Config"), str) or not isinstance(entries[0].get("Layers", []), list) \
            or not all(isinstance(m, str) for m in entries[0].get("Layers", [])):
        raise ImageError(f"{archive.path}: manifest.json must list exactly one image with "
                         "Config and Layers")
    entry = entries[0]
    config = _json_object(archive.read(entry["Config"]), archive, "config")
    layers = []
    members = entry.get("Layers", [])
    for member, (diff_id, _) in zip(members, config_layers(config, len(members),
                                                            str(archive.path))):
        counter = HashingWriter(_Null())
        with archive.opener(member)() as stream:
            while block := stream.read(1 << 20):
                counter.write(block)
        with archive.opener(member)() as stream:
            head = stream.read(4)
        media = (MediaType.OCI_LAYER_GZIP if head[:2] == b"\x1f\x8b" else
                 MediaType.OCI_LAYER_ZSTD if head == b"\x28\xb5\x2f\xfd" else MediaType.OCI_LAYER)
        desc = Descriptor(media.value, counter.digest, counter.size)
        layers.append(Layer(desc, diff_id, archive.opener(member)))
    return Image(config, tuple(layers))


class _Null:
    def write(self, data: bytes) -> int:
        return len(data)
