"""Where ocibuild keeps what it may reuse: blobs, layers, .debs, venvs, bundles.

``$OCIBUILD_CACHE`` if set, else ``$XDG_CACHE_HOME/ocibuild``, else
``~/.cache/ocibuild``. Everything in it is content-addressed or keyed by the hash
of its inputs, written to a temporary name and renamed, so it is safe to share
between concurrent builds and to delete at any time.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def default_cache_dir() -> Path:
    env = os.environ.get("OCIBUILD_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "ocibuild" if xdg else Path.home() / ".cache" / "ocibuild"


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's content, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def file_status(path: Path) -> list[int] | None:
    """What changes whenever a file is written, replaced or touched (device, inode,
    size, mtime, ctime), as JSON can keep it; None if there is no file.

    A record holding this says "the file is as I left it" without reading it
    (like git's index): the layer cache uses it for its blobs, ``build`` for
    the output it may leave alone.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
