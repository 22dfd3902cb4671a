"""Where ocibuild keeps what it may reuse: blobs, layers, .debs, venvs, bundles.

``$OCIBUILD_CACHE`` if set, else ``$XDG_CACHE_HOME/ocibuild``, else
``~/.cache/ocibuild``. Everything in it is content-addressed or keyed by the hash
of its inputs, written to a temporary name and renamed, so it is safe to share
between concurrent builds and to delete at any time.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    env = os.environ.get("OCIBUILD_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "ocibuild" if xdg else Path.home() / ".cache" / "ocibuild"
