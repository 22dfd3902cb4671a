"""Whiteouts, for readers that stream an image's layers bottom to top.

A layer's ``.wh.<name>`` hides ``<name>`` (and all below it) from lower layers;
``.wh..wh..opq`` in a directory hides everything lower layers put there. A
reader collects one layer's whiteouts, applies them to its view of the layers
below, then lays the layer's own entries on top.
"""

from __future__ import annotations

import posixpath
from typing import MutableMapping, TypeVar

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"

T = TypeVar("T")


def whiteout_target(path: str) -> tuple[str, bool] | None:
    """For a whiteout member, ``(hidden path, opaque)``; None for an ordinary path."""
    directory, name = posixpath.split(path)
    if name == OPAQUE:
        return directory or "/", True
    if name.startswith(WHITEOUT):
        return posixpath.join(directory, name[len(WHITEOUT):]), False
    return None


def bad_whiteout(path: str) -> bool:
    """Whether ``path`` is a whiteout naming no sibling: ``.wh.`` (its own directory),
    ``.wh..`` or ``.wh...`` (the directory or its parent). Extractors join the name
    to the directory and delete the result (umoci removed a whole rootfs for
    ``.wh...``), so such members are refused like any path escaping the root."""
    name = posixpath.basename(path)
    return name.startswith(WHITEOUT) and name != OPAQUE and \
        name[len(WHITEOUT):] in ("", ".", "..")


def apply_whiteouts(view: MutableMapping[str, T], whiteouts: list[tuple[str, bool]]) -> list[str]:
    """Remove what ``whiteouts`` hide from ``view``; return the removed paths."""
    removed: list[str] = []
    for target, opaque in whiteouts:
        prefix = target.rstrip("/") + "/"
        doomed = [p for p in view if p.startswith(prefix)]
        if not opaque and target in view:
            doomed.append(target)
        for p in doomed:
            del view[p]
        removed += doomed
    return removed
