"""OCI media types, digests, descriptors and canonical JSON."""

from __future__ import annotations

import enum
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ImageError


BASE_NAME_ANNOTATION = "org.opencontainers.image.base.name"
BASE_DIGEST_ANNOTATION = "org.opencontainers.image.base.digest"
"""The image-spec's manifest annotations for the image a build started from."""


class MediaType(str, enum.Enum):
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

    def is_index(self) -> bool:
        return self in (MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST)

    def is_manifest(self) -> bool:
        return self in (MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST)

    def is_layer(self) -> bool:
        return self in (MediaType.OCI_LAYER, MediaType.OCI_LAYER_GZIP,
                        MediaType.OCI_LAYER_ZSTD, MediaType.DOCKER_LAYER_GZIP,
                        MediaType.DOCKER_FOREIGN_LAYER)

    @property
    def compression(self) -> str:
        """``gzip``, ``zstd`` or ``none`` for a layer media type."""
        if self in (MediaType.OCI_LAYER_GZIP, MediaType.DOCKER_LAYER_GZIP,
                    MediaType.DOCKER_FOREIGN_LAYER):
            return "gzip"
        if self is MediaType.OCI_LAYER_ZSTD:
            return "zstd"
        return "none"


_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_MEDIA_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
                            r"/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")  # image-spec, RFC 6838

MAX_BLOB_BYTES = 64 << 30
"""The largest blob size a descriptor may claim (64 GiB): a size beyond it, or a
negative one, marks the descriptor as hostile before it touches the cache."""
MAX_MANIFEST_BYTES = 4 << 20
"""The largest manifest or index read, from a registry or an archive (4 MiB, as
containerd)."""
MAX_CONFIG_BYTES = 16 << 20
"""The largest image config read (16 MiB; real ones are a few kB, long histories
a few hundred)."""
CONFIG_TYPES = frozenset({"application/vnd.oci.image.config.v1+json",
                          "application/vnd.docker.container.image.v1+json"})


def check_digest(digest: str, what: str = "digest") -> str:
    """Return ``digest`` if it is a well-formed ``sha256:<64 hex>``; raise otherwise."""
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise ImageError(f"{what}: {digest!r} is not a sha256 digest")
    return digest


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    """The one function that turns configs, manifests and indexes into bytes.

    Sorted keys, no insignificant whitespace, UTF-8: the same object always gives
    the same bytes, so the same digest.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


LINUX_ARCHITECTURES = frozenset({
    "386", "amd64", "arm", "arm64", "loong64", "mips", "mipsle", "mips64", "mips64le",
    "ppc64", "ppc64le", "riscv64", "s390x"})
"""The GOARCH values Go (and so the OCI image index's ``platform``) defines for Linux."""
ARCH_VARIANTS = {
    "arm": frozenset({"v5", "v6", "v7", "v8"}),
    "arm64": frozenset({"v8", *(f"v8.{n}" for n in range(10)), "v9",
                        *(f"v9.{n}" for n in range(6))}),
    "amd64": frozenset({"v1", "v2", "v3", "v4"}),
}
"""CPU variants per architecture, as the image spec (arm v6-v8, arm64 v8) and containerd's
platform matcher (arm v5, arm64 v8.x/v9.x, amd64 v1-v4) name them; other architectures
have none."""


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    @staticmethod
    def parse(text: str) -> "Platform":
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"{text!r} is not os/arch[/variant]")
        return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def satisfies(self, want: "Platform") -> bool:
        """``want`` names this platform: same os and architecture, and the same variant
        if ``want`` gives one (``linux/arm64`` is satisfied by ``linux/arm64/v8``)."""
        return (self.os, self.architecture) == (want.os, want.architecture) and (
            not want.variant or want.variant == self.variant)

    def check_linux(self) -> None:
        """Raise ValueError unless this is a Linux platform OCI defines (ocibuild builds
        Linux images only)."""
        if self.os != "linux":
            raise ValueError(f"os {self.os!r} is not supported: ocibuild builds linux images")
        if self.architecture not in LINUX_ARCHITECTURES:
            raise ValueError(f"{self.architecture!r} is not a linux architecture (one of "
                             f"{', '.join(sorted(LINUX_ARCHITECTURES))})")
        variants = ARCH_VARIANTS.get(self.architecture, frozenset())
        if self.variant is not None and self.variant not in variants:
            known = ", ".join(sorted(variants)) if variants else "none"
            raise ValueError(f"{self.variant!r} is not a variant of {self.architecture} "
                             f"(known: {known})")

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    platform: Platform | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": str(getattr(self.media_type, "value", self.media_type)),
                               "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = self.platform.to_json()
        return out

    @staticmethod
    def from_json(obj: Any) -> "Descriptor":
        """A descriptor from registry or archive JSON, validated before anything uses it:
        a well-formed media type, a ``sha256:`` digest of 64 hex digits and an integer
        size in ``0 … MAX_BLOB_BYTES``."""
        if not isinstance(obj, dict):
            raise ImageError(f"malformed descriptor: a {type(obj).__name__}, not an object")
        media_type, size, plat = obj.get("mediaType"), obj.get("size"), obj.get("platform")
        if not isinstance(media_type, str) or not _MEDIA_TYPE_RE.match(media_type):
            raise ImageError(f"malformed descriptor: mediaType {_short(media_type)} is not "
                             "a media type")
        digest = obj.get("digest")
        if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
            raise ImageError(f"malformed descriptor: digest {_short(digest)} is not "
                             "sha256:<64 hex digits>")
        if isinstance(size, bool) or not isinstance(size, int) or not \
                0 <= size <= MAX_BLOB_BYTES:
            raise ImageError(f"malformed descriptor {digest}: size {_short(size)} is not a "
                             f"byte count from 0 to {MAX_BLOB_BYTES}")
        try:
            return Descriptor(media_type, digest, size, dict(obj.get("annotations") or {}),
                              Platform(str(plat["os"]), str(plat["architecture"]),
                                       plat.get("variant")) if plat else None)
        except (KeyError, TypeError, ValueError) as e:
            raise ImageError(f"malformed descriptor {digest}: {e}") from e


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (hostile JSON can be huge)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
