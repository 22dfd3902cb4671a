"""The shared-library closure of an image: what its ELF files need, found as ld.so would.

:func:`resolve_closure` takes the merged image view (image path -> :class:`Entry`,
top layer winning) and checks, for every loadable ELF file in it, that the
interpreter (``PT_INTERP``) and each ``DT_NEEDED`` soname resolve *inside the
image*, searching in the dynamic loader's order::

    DT_RPATH (only if the object has no DT_RUNPATH; $ORIGIN = the object's dir)
    library_path   (what LD_LIBRARY_PATH is when a launcher loads them: see below)
    DT_RUNPATH
    the default dirs (/lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu, /lib64, ...)

Symlinks (also directory symlinks such as a merged ``/lib -> usr/lib``) are
followed inside the view; candidates of another ELF class or machine are skipped
like the loader skips them. With ``host=True`` what is missing is copied from the
build host (its default dirs, then ``ldconfig -p``), together with what those
libraries need in turn and the interpreter, keeping the soname symlinks
(``libz.so.1 -> libz.so.1.2.13``). Whatever stays missing raises
:class:`ClosureError` naming the ELF file and the soname.

Not modelled: the RPATH of an object's loaders (only its own), an ``ld.so.cache``
inside the image, ``dlopen`` calls made by code at run time.
"""

from __future__ import annotations

import os
import posixpath
import subprocess
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

from ..errors import ClosureError
from ..layers.entries import Entry, Kind
from .files import file_entry

if TYPE_CHECKING:  # .elf imports pyelftools (20 ms): only once a file must be read
    from .elf import ElfInfo

DEFAULT_SEARCH_DIRS: tuple[str, ...] = (
    "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib",
    "/usr/lib",
)
"""The loader's trusted dirs on Debian/Ubuntu x86_64 (multiarch first)."""

_MAX_LINKS = 40  # as the kernel's and ld.so's symlink loop limits
_MAX_REPORTED = 20

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class ClosureResult:
    """``missing``: (ELF image path, soname or interpreter) pairs nothing provides.
    ``host_entries``: files and symlinks copied from the build host (sorted by path),
    for a ``libraries`` layer. ``host_sources`` maps their image paths to host paths.
    ``elf_files``: how many loadable ELF files the image holds.
    """

    missing: list[tuple[str, str]]
    host_entries: list[Entry] = field(default_factory=list)
    host_sources: dict[str, str] = field(default_factory=dict)
    elf_files: int = 0


def resolve_closure(files: Mapping[str, Entry], *,
                    search_dirs: Sequence[str] = DEFAULT_SEARCH_DIRS,
                    library_path: Mapping[str, Sequence[str]] | None = None,
                    host: bool = False,
                    host_root: Path = Path("/"), runner: Runner = subprocess.run,
                    strict: bool = True,
                    known: Mapping[str, ElfInfo | None] | None = None,
                    roots: Iterable[str] | None = None) -> ClosureResult:
    """Check (and with ``host=True`` complete) the library closure of an image view.

    ``files`` maps image paths to entries (symlinks and hard links are followed
    inside it). ``library_path`` maps an image dir to the dirs the loader also
    searches, as LD_LIBRARY_PATH, for ELF files *inside* that dir: PyInstaller's
    bootloader is a plain executable (exec'd with no LD_LIBRARY_PATH), but what
    it loads from ``_internal`` finds its siblings there, so a onedir bundle at
    ``/app`` gives ``{"/app/_internal": ["/app/_internal"]}``. ``host_root`` and
    ``runner`` (for ``ldconfig -p``) let tests point the host side elsewhere.
    With ``strict`` (default) anything still missing raises
    :class:`ClosureError`; otherwise it is returned in ``missing``.

    ``known`` maps image paths of FILE entries of ``files`` to what reading them
    would give (an :class:`ElfInfo`, or None for anything not a loadable ELF
    file), so they are not opened again; the pipeline fills it from what the tar
    writer saw. Files not in it are read through their openers.

    ``roots``, if given, limits the check to the closure of those image paths
    (the files of the layers being built): the files of a base image are then
    only providers, since whoever built the base answers for them, and they may
    rely on an environment their own entrypoint sets up.
    """
    view = _View(dict(files))
    infos = _ElfCache(view, known)
    hostlibs = _HostLibraries(host_root, search_dirs, runner) if host else None
    candidates = _maybe_elf_files(view, infos.known)
    if roots is not None:
        wanted_roots = set(roots)
        candidates = [p for p in candidates if p in wanted_roots]
    pending = deque(sorted(candidates))
    elf_files = 0
    missing: list[tuple[str, str]] = []
    added: dict[str, Entry] = {}
    sources: dict[str, str] = {}
    while pending:
        path = pending.popleft()
        info = infos.get(path)
        if info is None:
            continue
        elf_files += 1
        wanted = [(info.interpreter, True)] if info.interpreter else []
        wanted += [(soname, False) for soname in info.needed]
        for name, is_interp in wanted:
            found = (view.resolve(name) if is_interp
                     else _find_library(view, infos, path, info, name,
                                        _ld_library_path(path, library_path), search_dirs))
            if found is not None:
                continue
            new = hostlibs.copy(view, name, info, is_interp) if hostlibs else []
            if not new:
                missing.append((path, name))
                continue
            for entry, host_path in new:
                view.add(entry)
                infos.forget(entry.path)
                added[entry.path] = entry
                sources[entry.path] = host_path
                if entry.kind is Kind.FILE:
                    pending.append(entry.path)
    if missing and strict:
        raise ClosureError(_message(missing, host))
    return ClosureResult(missing, [added[p] for p in sorted(added)],
                         {p: sources[p] for p in sorted(sources)}, elf_files)


def _maybe_elf_files(view: "_View", known: Mapping[str, ElfInfo | None]) -> list[str]:
    """The FILE and HARDLINK paths of ``view`` that may be loadable ELF files.

    A FILE that ``known`` calls "not ELF" (None) and whose directory is reached
    without a symlink resolves to itself, so :class:`_ElfCache` would answer None
    for it without reading anything: it is left out here at the cost of two dict
    lookups, rather than resolved (100 000 small files took 0.15 s that way).
    """
    unknown = object()
    paths = []
    plain_dir = None  # the last directory seen to be reached without a symlink
    for path, entry in view.files.items():
        if entry.kind is Kind.FILE:
            if known.get(path, unknown) is None:
                parent = path[:path.rfind("/")] or "/"
                if parent == plain_dir:
                    continue
                if view.resolve_dir(parent) == parent:
                    plain_dir = parent
                    continue
            paths.append(path)
        elif entry.kind is Kind.HARDLINK:
            paths.append(path)
    return paths


def _find_library(view: "_View", infos: "_ElfCache", path: str, info: ElfInfo, soname: str,
                  library_path: Sequence[str], search_dirs: Sequence[str]) -> str | None:
    if "/" in soname:
        return view.resolve(soname) if soname.startswith("/") else soname
    origin = posixpath.dirname(view.resolve(path) or path)
    dirs: list[str] = []
    if not info.runpath:
        dirs += [_expand(d, origin) for d in info.rpath]
    dirs += list(library_path)
    dirs += [_expand(d, origin) for d in info.runpath]
    dirs += list(search_dirs)
    for d in dirs:
        if not d.startswith("/"):
            continue  # relative entries are relative to the process's cwd: unknowable
        real = view.resolve(posixpath.join(d, soname))
        if real is None:
            continue
        candidate = infos.get(real)
        if candidate is not None and info.compatible(candidate):
            return real
    return None


def _ld_library_path(path: str, library_path: Mapping[str, Sequence[str]] | None) -> list[str]:
    dirs: list[str] = []
    for top, extra in sorted((library_path or {}).items()):
        if path.startswith(top.rstrip("/") + "/"):
            dirs += extra
    return dirs


def _expand(entry: str, origin: str) -> str:
    for token, value in (("$ORIGIN", origin), ("${ORIGIN}", origin),
                         ("$LIB", "lib/x86_64-linux-gnu"), ("${LIB}", "lib/x86_64-linux-gnu"),
                         ("$PLATFORM", "x86_64"), ("${PLATFORM}", "x86_64")):
        entry = entry.replace(token, value)
    return posixpath.normpath(entry) if entry.startswith("/") else entry


def _message(missing: list[tuple[str, str]], host: bool) -> str:
    where = ("neither in the image nor on the build host (install it on the build host, "
             "or add it to the base)" if host else
             "not in the image (add it to the base, or set libraries: {from: host})")
    needers: dict[str, list[str]] = {}
    for elf, name in missing:
        needers.setdefault(name, []).append(elf)
    lines = []
    for name, elfs in list(needers.items())[:_MAX_REPORTED]:
        more = f" (as do {len(elfs) - 1} more files)" if len(elfs) > 1 else ""
        lines.append(f"{elfs[0]} needs {name}{more}, which is {where}")
    if len(needers) > _MAX_REPORTED:
        lines.append(f"... and {len(needers) - _MAX_REPORTED} more missing libraries")
    return "\n".join(lines)


class _View:
    """Path lookups in a merged image view, following symlinks and hard links."""

    def __init__(self, files: dict[str, Entry]) -> None:
        self.files = files
        self._dirs: dict[str, str | None] = {}  # resolve_dir's answers

    def add(self, entry: Entry) -> None:
        """Put ``entry`` in the view (the only way besides new parent dirs, which
        :meth:`resolve_dir` already takes as plain directories)."""
        self.files[entry.path] = entry
        if entry.kind is not Kind.DIR:
            self._dirs.clear()

    def resolve(self, path: str) -> str | None:
        """The image path of the regular file ``path`` leads to, or None."""
        head, _, name = path.rpartition("/")
        real = self.resolve_dir(head or "/")
        if real is None:
            return None
        seen = 0
        current = path if real == head else posixpath.join(real, name)
        while True:
            entry = self.files.get(current)
            if entry is None:
                return None
            if entry.kind is Kind.FILE:
                return current
            if entry.kind is Kind.HARDLINK:
                linked = self.files.get(entry.target)
                return entry.target if linked is not None and linked.kind is Kind.FILE else None
            if entry.kind is not Kind.SYMLINK or seen >= _MAX_LINKS:
                return None
            seen += 1
            target = posixpath.join(posixpath.dirname(current), entry.target)
            parent = self.resolve_dir(posixpath.dirname(posixpath.normpath(target)))
            if parent is None:
                return None
            current = posixpath.join(parent, posixpath.basename(posixpath.normpath(target)))

    def resolve_dir(self, path: str) -> str | None:
        """``path`` with every symlinked component replaced by what it points to.

        A component with no entry is taken as a plain directory (layers need not
        list every parent); one that is a regular file gives None.
        """
        try:
            return self._dirs[path]
        except KeyError:
            real = self._dirs[path] = self._resolve_dir(path)
            return real

    def _resolve_dir(self, path: str) -> str | None:
        parts = [p for p in posixpath.normpath("/" + path).split("/") if p]
        current = "/"
        links = 0
        while parts:
            candidate = posixpath.join(current, parts.pop(0))
            entry = self.files.get(candidate)
            if entry is not None and entry.kind is Kind.SYMLINK:
                links += 1
                if links > _MAX_LINKS:
                    return None
                target = posixpath.normpath(posixpath.join(current, entry.target))
                parts = [p for p in target.split("/") if p] + parts
                current = "/"
            elif entry is not None and entry.kind is not Kind.DIR:
                return None
            else:
                current = candidate
        return current


class _ElfCache:
    """ElfInfo per resolved image path, read once, non-ELF files skipped by magic;
    what ``known`` holds is not read at all."""

    def __init__(self, view: _View, known: Mapping[str, ElfInfo | None] | None = None) -> None:
        self.view = view
        self.known: Mapping[str, ElfInfo | None] = known or {}
        self.forgotten: set[str] = set()
        self.cache: dict[str, ElfInfo | None] = {}

    def forget(self, path: str) -> None:
        """``path`` now holds another entry (one copied from the host)."""
        self.cache.pop(path, None)
        self.forgotten.add(path)

    def get(self, path: str) -> ElfInfo | None:
        real = self.view.resolve(path)
        if real is None:
            return None
        try:
            return self.cache[real]
        except KeyError:
            pass
        if real in self.known and real not in self.forgotten:
            return self.known[real]
        info = self.cache[real] = self._read(self.view.files[real])
        return info

    @staticmethod
    def _read(entry: Entry) -> ElfInfo | None:
        if entry.opener is None or entry.size < 52:
            return None
        from .elf import read_elf

        with entry.opener() as stream:
            return read_elf(stream)  # checks the magic bytes before parsing anything


class _HostLibraries:
    """Finds libraries on the build host and turns them into entries for the image."""

    def __init__(self, root: Path, search_dirs: Sequence[str], runner: Runner) -> None:
        self.root, self.search_dirs, self.runner = root, tuple(search_dirs), runner
        self._ldconfig: dict[str, list[str]] | None = None

    def copy(self, view: _View, name: str, needer: ElfInfo,
             is_interp: bool) -> list[tuple[Entry, str]]:
        """Entries (with their host paths) that make ``name`` resolvable; [] if not found."""
        if is_interp or "/" in name:
            return self._copy_chain(view, name) if self._exists(name) else []
        for image_dir, host_path in self._candidates(name):
            info = _read_host(self._host(host_path))
            if info is None or not needer.compatible(info):
                continue
            dest_dir = view.resolve_dir(image_dir) or image_dir
            return self._copy_chain(view, posixpath.join(dest_dir, name), host_path)
        return []

    def _candidates(self, name: str) -> Iterable[tuple[str, str]]:
        for d in self.search_dirs:
            yield d, posixpath.join(d, name)
        for path in self.ldconfig().get(name, []):
            d = posixpath.dirname(path)
            yield (d if d in self.search_dirs else self.search_dirs[0]), path

    def ldconfig(self) -> dict[str, list[str]]:
        if self._ldconfig is None:
            self._ldconfig = {}
            try:
                out = self.runner(["ldconfig", "-p"], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, check=False).stdout or ""
            except OSError:
                out = ""
            for line in out.splitlines():
                left, sep, path = line.partition(" => ")
                if sep:
                    self._ldconfig.setdefault(left.split()[0], []).append(path.strip())
        return self._ldconfig

    def _copy_chain(self, view: _View, image: str,
                    host_path: str | None = None) -> list[tuple[Entry, str]]:
        """Copy ``host_path`` to ``image``, following (and recreating) its symlink chain."""
        host_path = host_path or image
        out: list[tuple[Entry, str]] = []
        for _ in range(_MAX_LINKS):
            real = self._host(host_path)
            parent = view.resolve_dir(posixpath.dirname(image)) or posixpath.dirname(image)
            image = posixpath.join(parent, posixpath.basename(image))
            existing = view.files.get(image)
            if existing is not None and existing.kind is not Kind.DIR:
                return out  # already there (an earlier copy or the image's own)
            out += [(e, host_path) for e in _parents(view, parent)]
            if real.is_symlink():
                target = os.readlink(real)
                out.append((Entry.symlink(image, target), host_path))
                image = posixpath.normpath(posixpath.join(parent, target))
                host_path = posixpath.normpath(posixpath.join(posixpath.dirname(host_path), target))
                continue
            out.append((file_entry(real, image, real.stat(), None, 0, 0), host_path))
            return out
        raise ClosureError(f"{host_path}: too many levels of symbolic links on the build host")

    def _exists(self, path: str) -> bool:
        return self._host(path).exists()

    def _host(self, path: str) -> Path:
        return self.root / path.lstrip("/")


def _parents(view: _View, directory: str) -> list[Entry]:
    """Directory entries for the parents of ``directory`` that the view does not have yet."""
    made: list[Entry] = []
    current = "/"
    for part in [p for p in directory.split("/") if p]:
        current = posixpath.join(current, part)
        if current not in view.files:
            entry = Entry.directory(current)
            view.files[current] = entry
            made.append(entry)
    return made


def _read_host(path: Path) -> ElfInfo | None:
    from .elf import read_elf

    try:
        with open(path, "rb") as stream:
            return read_elf(stream)
    except OSError:
        return None
