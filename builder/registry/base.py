"""Base images from registries, for ``base: REGISTRY/REPO@sha256:…`` in a manifest.

A base pinned by digest is pulled (verified, cached) and used as-is. A base
named only by tag still works, but is not reproducible: the caller gets a
warning naming the digest to pin, and with ``strict`` it is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import InputError
from ..oci.image import Image
from ..oci.types import Platform
from ..progress import Progress
from .pull import pull
from .push import ClientPool
from .reference import parse_reference


@dataclass(frozen=True)
class BaseImage:
    """A pulled base: the image, the registry's digest, and the pinned reference."""

    image: Image
    digest: str
    pinned: str
    warning: str | None = None


def load_base(ref: str, platform: Platform | None = None, *, strict: bool = False,
              cache_dir: Path | None = None, insecure: bool = False,
              warn: Callable[[str], None] | None = None,
              pool: ClientPool | None = None, progress: Progress | None = None) -> BaseImage:
    """Pull the base ``ref`` names (its downloads shown on ``progress``); warn (or, if
    ``strict``, fail) when not pinned."""
    reference = parse_reference(ref)
    if strict and not reference.digest:
        raise InputError(f"base {ref} is not pinned by digest (--strict); resolve it with "
                         f"`ocibuild resolve {ref}` and write {reference.name}@sha256:…")
    pulled = pull(ref, platform, cache_dir, insecure=insecure, pool=pool, progress=progress)
    pinned = str(reference.with_digest(pulled.resolved_digest))
    warning = None
    if not reference.digest:
        warning = (f"base {ref} is not pinned by digest; it resolved to "
                   f"{pulled.resolved_digest}. Pin it for reproducible builds: {pinned}")
        if warn:
            warn(warning)
    return BaseImage(pulled.image, pulled.manifest_digest, pinned, warning)
