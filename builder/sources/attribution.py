"""Where a bundle's shared libraries should come from, and where they came from.

:func:`prefer_base_libraries` is the "prefer the base's copy" rule: PyInstaller
copies libraries from the build host into a bundle's library dir (``libssl.so.3``,
``libz.so.1``, ``libgomp.so.1`` …). When the base has a library of the same name
in its loader's default dirs, shipped by a Debian package, at least as new (it
defines every symbol version the bundle's copy defines) and of the same ELF class
and machine, the bundle's copy is dropped: the program then loads the base's
copy, which scanners see, and the image is smaller. The closure checks the result.

:func:`host_origins` names what the build host shipped for the files that stay
host copies: the host's dpkg package and version, or the Python build for
``libpython``. :func:`build_root_origins` does the same for a bundle frozen in a
hermetic build root: the root's locked Debian package of each copied library. The
pipeline records both in the image (:data:`HOST_FILES_LABEL`) so an SBOM made later
from the image alone can attribute them.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import sys
from pathlib import Path
from typing import Mapping, Sequence

from ..layers.entries import Entry, Kind
from ..supply.owners import STATUS_D, HostDpkg, Owner, file_owners, is_owner_metadata
from .closure import ImageView
from .ldso import LoaderLayout

HOST_FILES_LABEL = "dev.ocibuild.host-files"
"""Config label: JSON ``{image path: [kind, name, version, evidence]}`` of the files a
bundle copied from the build host (``host-deb``, ``python``) or a build root (``deb``)."""
_SONAME_LIKE = re.compile(r"^lib[^/]*\.so(\.[0-9]+)*$")
_MAX_METADATA = 1 << 20


def debian_files(view: Mapping[str, Entry]) -> dict[str, Owner]:
    """Real image paths (symlinks resolved in ``view``) -> the Debian package listing them."""
    metadata = {}
    for path, entry in view.items():
        if (is_owner_metadata(path) and not path.endswith("RECORD")
                and entry.kind is Kind.FILE and entry.opener is not None
                and entry.size <= _MAX_METADATA):
            with entry.opener() as f:
                metadata[path] = f.read()
    images = ImageView(dict(view))
    out: dict[str, Owner] = {}
    for listed, owner in file_owners(metadata).items():
        real = images.resolve(listed)
        if real is not None:
            out.setdefault(real, owner)
    return out


def prefer_base_libraries(entries: Sequence[Entry], base_view: Mapping[str, Entry],
                          library_dirs: Sequence[str], layout: LoaderLayout,
                          ) -> tuple[list[Entry], list[tuple[Entry, str]]]:
    """``entries`` without the libraries of ``library_dirs`` the base provides; the
    dropped ones come back with the base path that stands in for each."""
    from .elf import read_elf

    dirs = {posixpath.normpath(d) for d in library_dirs}
    candidates = [e for e in entries if e.kind is Kind.FILE and e.opener is not None
                  and posixpath.dirname(e.path) in dirs
                  and _SONAME_LIKE.match(posixpath.basename(e.path))]
    if not candidates or not base_view:
        return list(entries), []
    owned = debian_files(base_view)
    base = ImageView(dict(base_view))
    dropped: dict[str, str] = {}
    for entry in candidates:
        name = posixpath.basename(entry.path)
        for d in layout.default_dirs:
            real = base.resolve(posixpath.join(d, name))
            if real is None or real not in owned:
                continue
            provider = base.files[real]
            if provider.opener is None:
                continue
            with entry.opener() as f:
                ours = read_elf(f)
            with provider.opener() as f:
                theirs = read_elf(f)
            if (ours is not None and theirs is not None and ours.compatible(theirs)
                    and set(ours.verdef) <= set(theirs.verdef)):
                dropped[entry.path] = real
            break
    kept = [e for e in entries if e.path not in dropped]
    return kept, [(e, dropped[e.path]) for e in entries if e.path in dropped]


def host_origins(entries: Sequence[Entry], library_dirs: Sequence[str],
                 host_sources: Mapping[str, str], layout: LoaderLayout,
                 dpkg: HostDpkg | None = None, python: str | None = None,
                 bootloaders: Sequence[str] = ()) -> dict[str, tuple[str, str, str, str]]:
    """Image path -> (kind, name, version, evidence) for what the build host put in
    ``entries``: ``host-deb`` for the files of ``host_sources`` (image path -> host
    path: the closure's copies) and the libraries of a bundle's ``library_dirs``
    (found on the host by name in the loader's default dirs); ``python`` for
    ``libpython*`` and ``lib-dynload/`` (the freezing Python's build); ``pypi``
    ``pyinstaller`` for the ``bootloaders`` (the bundle's executable)."""
    dpkg = dpkg or HostDpkg()
    dirs = {posixpath.normpath(d) for d in library_dirs}
    out: dict[str, tuple[str, str, str, str]] = {}
    for entry in entries:
        if entry.kind is not Kind.FILE:
            continue
        name = posixpath.basename(entry.path)
        parent = posixpath.dirname(entry.path)
        if entry.path in bootloaders:
            out[entry.path] = ("pypi", "pyinstaller", _pinned("pyinstaller"),
                               "the PyInstaller bootloader")
            continue
        if posixpath.basename(parent) == "lib-dynload" and any(
                parent.startswith(d + "/") for d in dirs):
            out[entry.path] = _python_build(name, python)
            continue
        host_path = host_sources.get(entry.path)
        if host_path is None and parent in dirs and _SONAME_LIKE.match(name):
            if name.startswith("libpython"):
                out[entry.path] = _python_build(name, python)
                continue
            host_path = next((posixpath.join(d, name) for d in layout.default_dirs
                              if (Path(d) / name).exists()), None)
        if host_path is None:
            continue
        owner = dpkg.owner(host_path)
        if owner is not None:
            out[entry.path] = ("host-deb", owner.name, owner.version,
                               f"{host_path} on the build host")
    return dict(sorted(out.items()))


def build_root_libraries(root: Path, layout: LoaderLayout) -> dict[str, list[str]]:
    """What a bundle frozen in the materialized build root ``root`` may have copied from
    it: each library the root's loader finds by name (in its default dirs, soname links
    followed inside the root) and each ``lib-dynload/`` module, as ``{name or
    "lib-dynload/" + name: [listed path, package, version]}`` of the root's locked
    Debian package listing the file. Small (a few hundred names) and JSON, so it can be
    kept in the layer cache and a build that freezes nothing need not make the root."""
    metadata = {}
    status = root / STATUS_D.strip("/")
    for path in sorted(status.iterdir()) if status.is_dir() else []:
        if path.is_file() and not path.is_symlink() and path.stat().st_size <= _MAX_METADATA:
            metadata[STATUS_D + path.name] = path.read_bytes()
    listed = {_without_usr(path): (path, owner) for path, owner in file_owners(metadata).items()}
    index: dict[str, list[str]] = {}
    for key, (path, owner) in sorted(listed.items()):
        if posixpath.basename(posixpath.dirname(key)) == "lib-dynload":
            index.setdefault(f"lib-dynload/{posixpath.basename(key)}",
                             [path, owner.name, owner.version])
    for directory in layout.default_dirs:
        there = root / directory.lstrip("/")
        names = sorted(os.listdir(there)) if there.is_dir() else []
        for name in names:
            if not _SONAME_LIKE.match(name) or name in index:
                continue
            real = _resolve_inside(root, posixpath.join(directory, name))
            found = listed.get(_without_usr(real)) if real is not None else None
            if found is not None:
                index[name] = [found[0], found[1].name, found[1].version]
    return index


def build_root_origins(entries: Sequence[Entry], library_dirs: Sequence[str],
                       libraries: Mapping[str, Sequence[str]], where: str,
                       bootloaders: Sequence[str] = (),
                       ) -> dict[str, tuple[str, str, str, str]]:
    """Image path -> (``deb``, package, version, evidence) for the copies a bundle frozen
    in a hermetic build root made of its files (``libraries``: the root's
    :func:`build_root_libraries`; ``where``: how the evidence names the root), and the
    bootloader's: the bundle's only sources besides the wheels."""
    dirs = {posixpath.normpath(d) for d in library_dirs}
    out: dict[str, tuple[str, str, str, str]] = {}
    for entry in entries:
        name = posixpath.basename(entry.path)
        parent = posixpath.dirname(entry.path)
        if entry.kind is not Kind.FILE:
            continue
        if entry.path in bootloaders:
            out[entry.path] = ("pypi", "pyinstaller", _pinned("pyinstaller"),
                               "the PyInstaller bootloader")
            continue
        found = None
        if posixpath.basename(parent) == "lib-dynload" and any(
                parent.startswith(d + "/") for d in dirs):
            found = libraries.get(f"lib-dynload/{name}")
        elif parent in dirs and _SONAME_LIKE.match(name):
            found = libraries.get(name)
        if found is not None and len(found) == 3:
            path, package, version = map(str, found)
            out[entry.path] = ("deb", package, version, f"{path} in the build root {where}")
    return dict(sorted(out.items()))


def _resolve_inside(root: Path, path: str, hops: int = 40) -> str | None:
    """``path`` of the tree at ``root`` with its symlinks followed inside that tree
    (an absolute target means the root's ``/``), or None when it does not exist."""
    parts = [p for p in path.split("/") if p]
    done: list[str] = []
    while parts:
        part = parts.pop(0)
        if part == "..":
            done = done[:-1]
            continue
        here = root.joinpath(*done, part)
        if here.is_symlink():
            hops -= 1
            if hops < 0:
                return None
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        if not here.exists():
            return None
        done.append(part)
    return "/" + "/".join(done)


def _without_usr(path: str) -> str:
    """``/usr/lib/x`` and ``/lib/x`` are one file in a merged-/usr root."""
    return path[len("/usr"):] if path.startswith("/usr/") else path


def _pinned(name: str) -> str:
    from .pyinstaller import PYINSTALLER_PINS

    return next((p.split("==", 1)[1] for p in PYINSTALLER_PINS if p.startswith(name + "==")),
                "")


def _python_build(name: str, python: str | None) -> tuple[str, str, str, str]:
    """CPython's own files (libpython, lib-dynload) are the freezing Python's build (no
    package database names a pyenv or venv build); its path stays out of the image."""
    version = ".".join(map(str, sys.version_info[:3])) if python is None else ""
    return ("python", "cpython", version, f"{name} of the Python that froze the bundle")


def read_host_files_label(config: Mapping[str, object]) -> dict[str, tuple[str, str, str, str]]:
    """The :data:`HOST_FILES_LABEL` of an image config (``{}`` when absent or bad)."""
    labels = (config.get("config") or {}).get("Labels") or {}  # type: ignore[union-attr]
    try:
        value = json.loads(labels.get(HOST_FILES_LABEL, "{}"))
        return {str(k): tuple(map(str, v)) for k, v in value.items()  # type: ignore[misc]
                if isinstance(v, list) and len(v) == 4}
    except (ValueError, AttributeError, TypeError):
        return {}


def host_files_label(origins: Mapping[str, tuple[str, str, str, str]]) -> str:
    """The label value for :data:`HOST_FILES_LABEL` (compact, sorted)."""
    return json.dumps({k: list(v) for k, v in sorted(origins.items())},
                      separators=(",", ":"), sort_keys=True)
