"""The public API of distroless-style bases: definition -> lock -> layer entries.

A base definition (``base_images/cc.yaml``, see :mod:`.definition`) names Debian
suites, packages, exclusions, users and directories. :func:`lock_base` resolves
it against the archive and writes ``cc.lock.json``; :func:`base_entries` turns
a lock into the :class:`Entry` list of one layer: the packages' files after the
drop rules, plus what maintainer scripts would have made and a shell-less image
still needs (:mod:`.rootfs`) and ``/var/lib/dpkg/status.d/<package>`` for scanners.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from ...cache import default_cache_dir
from ...errors import DebianError
from ...layers.entries import Entry, FileOpener, Kind
from ...progress import Progress
from .apt_sources import find_mirror
from .archive import Transport, load_index
from .deb import Member
from .definition import BaseDefinition, is_base_definition, load_base_definition

__all__ = ["BASE_FORMAT", "base_entries", "is_base_definition", "load_base_definition",
           "load_lock", "lock_base"]
from .fetch import DebCache
from .lock import Lock, LockedIndex, LockedPackage, read_lock, write_lock
from .resolve import resolve
from .rootfs import control_field, status_entries, system_files

BASE_FORMAT = 1
"""Bumped whenever :func:`base_entries` would give different entries for the same
lock; callers caching a built base layer put it in their cache key."""


# ---------------------------------------------------------------- locking

def lock_base(definition: BaseDefinition, mirror: str | None = None, *,
              cache_dir: Path | None = None, transport: Transport | None = None,
              prefetch: bool = True, check_valid_until: bool = True,
              progress: Progress | None = None) -> Path:
    """Resolve ``definition`` against the archive and write its lock file.

    With ``prefetch`` (the default) every ``.deb`` is also downloaded into the
    cache and checked against the sha256 from ``Packages``, so a lock is only
    written once every package it names is known to be fetchable and intact.
    Nothing is written on any error. ``check_valid_until=False`` accepts a
    Release past its ``Valid-Until`` (needed only for snapshot mirrors). A definition
    listing ``architectures`` is resolved for each, into one lock file.
    """
    urls = {suite: find_mirror(suite, mirror) for suite in definition.suites}
    locks = [_resolve_lock(definition.for_architecture(arch), urls, cache_dir=cache_dir,
                           transport=transport, prefetch=prefetch,
                           check_valid_until=check_valid_until, progress=progress)
             for arch in definition.all_architectures]
    return write_lock(locks if definition.architectures else locks[0], definition.lock_path)


def _resolve_lock(definition: BaseDefinition, urls: dict[str, str], *,
                  cache_dir: Path | None, transport: Transport | None, prefetch: bool,
                  check_valid_until: bool, progress: Progress | None) -> Lock:
    """The lock of ``definition`` for its (one) ``architecture``."""
    archives = [load_index(urls[suite], suite, definition.components, definition.architecture,
                           definition.keyring, transport, check_valid_until=check_valid_until)
                for suite in definition.suites]
    main = archives[0]
    for extra in archives[1:]:
        main.packages.merge(extra.packages)
    where = " + ".join(f"{urls[s]} {s}" for s in definition.suites)
    where += f" ({','.join(definition.components)})"
    resolved = resolve(main.packages, definition.packages, definition.architecture,
                       definition.exclude, where)
    packages = tuple(LockedPackage(r.name, r.version, r.architecture, r.filename, r.size,
                                   r.sha256, r.suite) for r in resolved)
    if prefetch:
        cache = DebCache(cache_dir or default_cache_dir())
        for pkg in packages:
            cache.ensure(pkg, functools.partial(urls.__getitem__, pkg.suite), transport,
                         progress)
    indexes = tuple(LockedIndex(f.path, f.size, f.sha256) for a in archives for f in a.files)
    return Lock(main.suite, main.codename, main.version, definition.architecture,
                definition.components, definition.packages, definition.exclude,
                indexes, packages, definition.suites)


def load_lock(definition: BaseDefinition, path: Path | None = None) -> Lock:
    """Read the definition's lock (for its ``architecture``, of a definition listing
    several) and check it still matches the definition."""
    lock_path = path or definition.lock_path
    lock = read_lock(lock_path, definition.architecture if definition.architectures else None)
    stale = []
    if set(lock.requested) != set(definition.packages):
        stale.append("packages")
    if set(lock.exclude) != set(definition.exclude):
        stale.append("exclude")
    if lock.architecture != definition.architecture:
        stale.append("architecture")
    if definition.suite not in (lock.suite, lock.codename) or \
            tuple(lock.suites[1:]) != definition.updates:
        stale.append("suites")
    if stale:
        raise DebianError(f"{lock_path} is out of date with {definition.path} "
                          f"({', '.join(stale)} changed): run 'ocibuild lock {definition.path}'")
    return lock


# ---------------------------------------------------------------- building

def _glob_regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    parts = []
    for pattern in patterns:
        out = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("/**", i) and i + 3 == len(pattern):
                out, i = out + "(?:/.*)?", i + 3   # "dir/**": the dir and all below it
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        parts.append(out)
    return re.compile("^(?:" + "|".join(parts) + ")$" if parts else "(?!)")


def base_entries(definition: BaseDefinition, lock: Lock | None = None,
                 cache_dir: Path | None = None, *, mirror: str | None = None,
                 transport: Transport | None = None,
                 progress: Progress | None = None) -> list[Entry]:
    """Every entry of the base layer, sorted by path, identical for the same lock.

    ``.deb`` files come from the cache; only a package missing there makes
    this look up a mirror (``mirror``, ``$OCIBUILD_DEBIAN_MIRROR`` or apt sources),
    its download shown on ``progress``.
    """
    lock = lock or load_lock(definition)
    cache = DebCache(cache_dir or default_cache_dir())
    @functools.cache
    def mirror_for(suite: str) -> str:
        return find_mirror(suite, mirror)

    drop, keep = _glob_regex(definition.drop), _glob_regex(definition.keep)
    entries: dict[str, Entry] = {}
    owner: dict[str, str] = {}
    generated: list[Entry] = []
    for pkg in sorted(lock.packages, key=lambda p: p.name):
        deb = cache.ensure(pkg, functools.partial(mirror_for, pkg.suite), transport, progress)
        control, members = cache.members(pkg, deb)
        got = (control_field(control["control"], "Package"),
               control_field(control["control"], "Version"))
        if got != (pkg.name, pkg.version):
            raise DebianError(f"{deb}: is {got[0]} {got[1]}, but the lock pins "
                              f"{pkg.name} {pkg.version}")
        for entry in _package_entries(pkg, members, cache):
            previous = owner.get(entry.path)
            if previous is not None:
                old = entries[entry.path]
                if (old.kind == Kind.DIR) != (entry.kind == Kind.DIR):
                    raise DebianError(f"{entry.path} is a {old.kind.value} in {previous} "
                                      f"but a {entry.kind.value} in {pkg.name}")
                if old.kind == Kind.DIR:
                    continue  # the first package's directory wins
            entries[entry.path] = entry
            owner[entry.path] = pkg.name
        generated += status_entries(pkg.name, control)

    # Drop rules; a dropped directory stays if something kept lies below it.
    kept = {p: e for p, e in entries.items()
            if e.kind == Kind.DIR or not drop.match(p) or keep.match(p)}
    needed_dirs = {parent for p, e in kept.items() if e.kind != Kind.DIR
                   for parent in _parents(p)}
    kept = {p: e for p, e in kept.items()
            if e.kind != Kind.DIR or not drop.match(p) or p in needed_dirs}

    generated += system_files(definition, lock, entries, kept)
    for entry in generated:
        kept[entry.path] = entry
    return [kept[p] for p in sorted(kept)]


def _parents(path: str) -> list[str]:
    parts = path.split("/")[1:-1]
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _package_entries(pkg: LockedPackage, members: list[Member], cache: DebCache) -> list[Entry]:
    """Entries of one package; hard links become FILE entries sharing a ``link_key``."""
    by_path = {m.path: m for m in members}
    link_targets = {m.target for m in members if m.kind == Kind.HARDLINK}
    out = []
    for m in members:
        if m.kind == Kind.DIR:
            out.append(Entry.directory(m.path, m.mode, m.uid, m.gid))
        elif m.kind == Kind.SYMLINK:
            out.append(Entry.symlink(m.path, m.target, m.uid, m.gid))
        elif m.kind == Kind.FILE:
            key = ("deb", pkg.sha256, m.path) if m.path in link_targets else None
            out.append(Entry.file(m.path, FileOpener(str(cache.blob_path(m.blob))), m.size,
                                  m.mode, m.uid, m.gid, link_key=key))
        else:  # HARDLINK
            target = by_path.get(m.target)
            if target is None or target.kind != Kind.FILE:
                raise DebianError(f"{pkg.name}: hard link {m.path} -> {m.target}: "
                                  "target is not a file in the package")
            out.append(Entry.file(m.path, FileOpener(str(cache.blob_path(target.blob))),
                                  target.size, target.mode, target.uid, target.gid,
                                  link_key=("deb", pkg.sha256, target.path)))
    return out
