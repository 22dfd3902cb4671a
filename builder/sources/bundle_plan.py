"""Which image layer each file of a frozen bundle goes to: a pure planner.

A onedir bundle is split into layers ordered from the least to the most often
changed, so that a rebuild ships only what changed and two apps share what they
have in common (the way apko groups by origin):

``python``   the interpreter's side: ``libpython``, the stdlib's extension
             modules and the shared libraries PyInstaller copied that no Python
             distribution owns (libssl, libz, libstdc++ …);
``<dist>``   one layer for each of the largest distributions (numpy, scipy …:
             each at least :data:`DIST_LAYER_MIN_BYTES`, at most
             :data:`MAX_DIST_LAYERS` of them), by name;
``packages`` every other distribution's files under ``_internal/``;
``stdlib``   the standard library's pure-Python modules (``.pyc``: the set the
             app's imports reach);
``modules``  the executable: the bootloader, PyInstaller's bootstrap and the
             launcher (a split bundle keeps its modules as files, so this is
             small; it changes whenever the app's *imports* change);
``code``     the app's own code (``_app/``), which changes with every commit.

The planner sees only paths, kinds, sizes and which distribution owns each
top-level name (:func:`distribution_owners` reads that from the bundle's
``*.dist-info/RECORD`` files); it does no I/O, so its decisions are tested
directly. Directories are left to :func:`builder.layers.tarwriter.normalize`,
which gives every layer the parents its files need; only empty ones are kept.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..layers.entries import Entry, Kind
from .launcher import APP_DIR

DIST_LAYER_MIN_BYTES = 8 << 20
"""A distribution this large (files in the bundle) gets a layer of its own."""

MAX_DIST_LAYERS = 4
"""At most this many distributions get a layer of their own (the largest)."""

INTERNAL = "_internal"

_DIST_INFO = re.compile(r"^(?P<name>[^-/]+)-(?P<version>[^-/]+)\.dist-info$")


@dataclass(frozen=True)
class LayerGroup:
    """One planned layer: ``part`` names it (``python``, ``numpy``, ``packages``,
    ``modules``, ``code``), ``detail`` says what it holds."""

    part: str
    detail: str
    entries: tuple[Entry, ...]


def plan_bundle(entries: list[Entry], dest: str, executable: str,
                owners: Mapping[str, str]) -> list[LayerGroup]:
    """Split a bundle's ``entries`` (at ``dest``) into layer groups, bottom to top.

    ``owners`` maps a top-level name under ``_internal/`` (``numpy``,
    ``numpy.libs``, ``numpy-2.4.6.dist-info``) to its distribution (``numpy
    2.4.6``). Groups that would be empty are left out.
    """
    prefix = dest.rstrip("/") + "/"
    by_part: dict[str, list[Entry]] = {}
    dist_of: dict[int, str] = {}
    dist_bytes: dict[str, int] = {}
    has_child: set[str] = set()
    for e in entries:
        has_child.add(posixpath.dirname(e.path))
    for i, e in enumerate(entries):
        if e.kind is Kind.DIR and e.path in has_child:
            continue  # normalize() recreates it as every layer needs it
        rel = e.path[len(prefix):] if e.path.startswith(prefix) else e.path.lstrip("/")
        head, _, rest = rel.partition("/")
        if head == APP_DIR:
            part = "code"
        elif head == INTERNAL and rest:
            owner = owners.get(rest.split("/", 1)[0])
            part = "dist" if owner else "stdlib" if rest.endswith(".pyc") else "python"
            if owner:
                dist_of[i] = owner
                dist_bytes[owner] = dist_bytes.get(owner, 0) + e.size
        else:
            part = "modules"  # the executable, and whatever else sits beside it
        by_part.setdefault(part, []).append(e)
    large = sorted(d for d, size in sorted(dist_bytes.items(), key=lambda kv: (-kv[1], kv[0]))
                   [:MAX_DIST_LAYERS] if size >= DIST_LAYER_MIN_BYTES)
    own_layer: dict[str, list[Entry]] = {d: [] for d in large}
    rest_of: list[Entry] = []
    for i, e in enumerate(entries):
        owner = dist_of.get(i)
        if owner is not None:
            (own_layer[owner] if owner in own_layer else rest_of).append(e)
    groups = [_group("python", by_part.get("python", []),
                     "Python runtime and shared libraries")]
    for dist in large:
        groups.append(_group(_part_name(dist), own_layer[dist], f"{dist}"))
    others = sorted({dist_of[i] for i, e in enumerate(entries) if i in dist_of} - set(large))
    groups.append(_group("packages", rest_of,
                         f"{len(others)} distribution{'s' if len(others) != 1 else ''}"))
    groups.append(_group("stdlib", by_part.get("stdlib", []), "Python standard library"))
    groups.append(_group("modules", by_part.get("modules", []),
                         f"the executable {executable}"))
    groups.append(_group("code", by_part.get("code", []), "app code"))
    return [g for g in groups if g.entries]


def distribution_owners(internal_dir: Path) -> dict[str, str]:
    """Top-level names under a bundle's ``_internal/`` mapped to the distribution
    (``name version``) whose ``RECORD`` lists files below them; a name two
    distributions share goes to the first by name."""
    owners: dict[str, str] = {}
    for info in sorted(internal_dir.glob("*.dist-info")):
        match = _DIST_INFO.match(info.name)
        if match is None:
            continue
        dist = f"{match['name']} {match['version']}"
        owners.setdefault(info.name, dist)
        try:
            rows = (info / "RECORD").read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for row in rows:
            top = row.split(",", 1)[0].split("/", 1)[0]
            if top and top not in ("..", ".") and not top.endswith(".dist-info"):
                owners.setdefault(top, dist)
                if top.endswith(".py"):  # a module a split bundle keeps compiled
                    owners.setdefault(top + "c", dist)
    return owners


def _group(part: str, entries: list[Entry], what: str) -> LayerGroup:
    files = sum(1 for e in entries if e.kind is not Kind.DIR)
    return LayerGroup(part, f"{what} ({files} file{'s' if files != 1 else ''})",
                      tuple(entries))


def _part_name(dist: str) -> str:
    """A distribution's layer part: its name, lowercased (``scikit_learn`` → ``scikit-learn``)."""
    return re.sub(r"[^a-z0-9.]+", "-", dist.split(" ", 1)[0].lower())
