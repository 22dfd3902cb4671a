"""Distroless-style base images from pinned Debian packages.

The flow, one module per step::

    apt_sources  where the archive is (--mirror, $OCIBUILD_DEBIAN_MIRROR, host apt sources)
    archive      InRelease (gpgv) -> Release -> Packages (sha256 from Release)
    resolve      Depends/Pre-Depends closure with alternatives, versions, Provides
    lock         <name>.lock.json: every package pinned by version, path, size, sha256
    fetch        content-addressed cache of .debs (no network once cached)
    deb          a .deb read in Python: ar -> control.tar.* / data.tar.*
    base         the public API: definition -> lock -> layer entries
"""

from .base import (BaseConfig, BaseDefinition, base_entries, is_base_definition,
                   load_base_definition, load_lock, lock_base)

__all__ = ["BaseConfig", "BaseDefinition", "base_entries", "is_base_definition",
           "load_base_definition", "load_lock", "lock_base"]
