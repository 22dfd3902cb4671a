"""Distroless-style base images from pinned Debian packages.

The flow, one module per step::

    definition   base_images/<name>.yaml -> BaseDefinition (strict, file:line errors)
    apt_sources  where the archive is (--mirror, $OCIBUILD_DEBIAN_MIRROR, host apt sources)
    archive      InRelease (gpgv) -> Release -> Packages (sha256 from Release)
    resolve      Depends/Pre-Depends closure with alternatives, versions, Provides
    lock         <name>.lock.json: every package pinned by version, path, size, sha256
    fetch        content-addressed cache of .debs (no network once cached)
    deb          a .deb read in Python: ar -> control.tar.* / data.tar.*
    rootfs       what maintainer scripts would make: passwd, CA bundle, tz, status.d
    base         the public API: lock_base (definition -> lock), base_entries (-> layer)
"""

from importlib import import_module
from typing import Any

_HOMES = {"BASE_FORMAT": "base", "base_entries": "base", "load_lock": "base",
          "lock_base": "base", "BaseConfig": "definition", "BaseDefinition": "definition",
          "is_base_definition": "definition", "load_base_definition": "definition"}


def __getattr__(name: str) -> Any:
    """Import on first use: telling a base definition from a manifest (every build)
    must not load the archive, resolver and deb822 code."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_HOMES[name]}", __name__), name)


__all__ = ["BASE_FORMAT", "BaseConfig", "BaseDefinition", "base_entries", "is_base_definition",
           "load_base_definition", "load_lock", "lock_base"]
