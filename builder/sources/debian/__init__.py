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

from .base import BASE_FORMAT, base_entries, load_lock, lock_base
from .definition import BaseConfig, BaseDefinition, is_base_definition, load_base_definition

__all__ = ["BASE_FORMAT", "BaseConfig", "BaseDefinition", "base_entries", "is_base_definition",
           "load_base_definition", "load_lock", "lock_base"]
