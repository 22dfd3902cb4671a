"""Where finished layers are found again: the layer cache, local and remote.

A cache maps a *key* (the hash of everything a layer is made from) to the
finished layer and its *record*: what a later build needs besides the blob
(which members are ELF files, and whatever the layer's source keeps in
``extra``: a frozen bundle's entry list, its warnings, its SBOM data). With the
record whole, a hit from another machine is as good as one from this disk.

Three implementations share the :class:`LayerCache` shape:

* :class:`~builder.layercache.local.LocalLayerCache`: records and blobs in the
  cache directory (what ocibuild always did);
* :class:`~builder.layercache.registry.RegistryLayerCache`: one small OCI
  manifest per key in a registry repository (``--cache-repo``), its blobs
  fetched only when first read;
* :class:`~builder.layercache.tiered.TieredCache`: local first, then remote;
  what the pipeline talks to. It turns remote faults into warnings.

Verdicts (the library closure's "every library resolves") and notes (small JSON
objects, such as the list of layers a frozen app was split into) are cached by
key too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..oci.image import Layer
from ..oci.types import MediaType

LOCAL, REMOTE, BUILT = "local", "remote", "built"
"""Where a layer came from, as the build summary says it."""


@dataclass(frozen=True)
class Record:
    """What a cache keeps beside a layer's descriptor, diff_id, sizes and history.

    ``elf``: the image paths of the layer's FILE members that start with the ELF
    magic (None if unknown). ``extra``: JSON a source needs on a later build.
    """

    elf: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    layer: Layer
    record: Record
    source: str = LOCAL


class LayerCache(Protocol):
    """Finished layers by key, and verdicts by key."""

    def get(self, key: str) -> Hit | None:
        """The layer recorded under ``key`` (its blob intact or fetchable), or None."""

    def put(self, key: str, layer: Layer, record: Record) -> None:
        """Record ``layer`` (whose blob is readable through its opener) under ``key``."""

    def has(self, key: str) -> bool:
        """Whether a layer is recorded under ``key`` (cheaper than :meth:`get`)."""

    def has_verdict(self, key: str) -> bool:
        """Whether a verdict was recorded under ``key``."""

    def put_verdict(self, key: str) -> None:
        """Record a verdict under ``key``."""

    def get_note(self, key: str) -> dict[str, Any] | None:
        """The JSON object recorded under ``key`` (what a source needs to find its
        layers without making them: a frozen app's list of layers), or None."""

    def put_note(self, key: str, note: dict[str, Any]) -> None:
        """Record a JSON object under ``key``."""


def layer_json(layer: Layer) -> dict[str, Any]:
    """The parts of a layer a record keeps (everything but the opener)."""
    return {"digest": layer.digest, "size": layer.size, "media_type": layer.media_type,
            "diff_id": layer.diff_id, "history": layer.history,
            "uncompressed_size": layer.uncompressed_size, "name": layer.name,
            "files": layer.file_count}


def layer_from_json(data: dict[str, Any], opener: Any) -> Layer:
    """The layer :func:`layer_json` describes, read through ``opener``; raises
    KeyError, TypeError or ValueError when ``data`` is not such a description."""
    from ..oci.types import Descriptor, check_digest

    size, usize, files = data["size"], data["uncompressed_size"], data["files"]
    if not _count(size) or not all(v is None or _count(v) for v in (usize, files)):
        raise TypeError("sizes are not non-negative integers")
    history = data["history"]
    if not isinstance(history, dict) or not isinstance(data["name"], str) or not all(
            isinstance(k, str) and isinstance(v, (str, bool)) for k, v in history.items()):
        raise TypeError("history or name malformed")
    media_type = data["media_type"]
    if not isinstance(media_type, str) or media_type not in _LAYER_TYPES:
        raise ValueError(f"{media_type!r} is not a layer media type")
    descriptor = Descriptor(media_type, check_digest(data["digest"]), size)
    return Layer(descriptor, check_digest(data["diff_id"], "diff_id"), opener,
                 history=data["history"], uncompressed_size=usize, name=data["name"],
                 file_count=files)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_LAYER_TYPES = frozenset(m.value for m in MediaType if m.is_layer())


def record_from_json(data: dict[str, Any]) -> Record:
    elf = data.get("elf")
    if elf is not None and not (isinstance(elf, list) and all(isinstance(p, str) for p in elf)):
        raise TypeError("elf is not a list of paths")
    extra = data.get("extra") or {}
    if not isinstance(extra, dict):
        raise TypeError("extra is not an object")
    return Record(tuple(elf) if elf is not None else None, extra)


def record_json(record: Record) -> dict[str, Any]:
    return {"elf": list(record.elf) if record.elf is not None else None,
            "extra": record.extra}
