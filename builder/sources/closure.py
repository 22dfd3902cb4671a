"""The shared-library closure of an image: what its programs load, found as ld.so would.

:func:`resolve_closure` takes the merged image view (image path -> :class:`Entry`,
top layer winning) and loads, the way glibc's ``ld.so`` does, each *root*:

* the programs the config starts (entrypoint and cmd, through ``PATH``; a script's
  ``#!`` interpreter) and every executable in a ``PATH`` dir;
* Python extension modules (``*.cpython-*.so``, ``*.abi3.so``, ``*.so`` under
  ``site-packages``/``dist-packages``/``lib-dynload``), dlopen'ed by the interpreter;
* shared libraries nothing loads (what ctypes or a plugin loader would dlopen:
  PyInstaller records nothing about ctypes in its output, so every such library
  is taken as dlopen'ed, the cautious reading), outermost first.

A root's load is simulated in a process of its own, breadth first as
``_dl_map_object_deps``; each ``DT_NEEDED`` name is looked up in glibc's order::

    a name already loaded in the process (a requested name or a DT_SONAME, or the same file)
    DT_RPATH of the needing object, then of the object that loaded it, and so on up
             to the program (only if the needing object has no DT_RUNPATH; an object
             with DT_RUNPATH has no DT_RPATH at all)
    LD_LIBRARY_PATH  (``library_path``: see below)
    DT_RUNPATH of the needing object (for its own DT_NEEDED only)
    /etc/ld.so.cache of the image, if it has one
    the default dirs of the object's architecture (:mod:`.ldso`)

``$ORIGIN`` is the dir of the object (of the program: after symlinks, as
``/proc/self/exe``), ``$LIB`` and ``$PLATFORM`` what Debian's loader of that
architecture says. Candidates of another ELF class or machine are skipped like
the loader skips them. Once loaded, each object's ``DT_VERNEED`` versions must be
defined by the library it names (``DT_VERDEF``), else the start fails with
"version `X' not found": a build error here too.

An executable that no root reaches (a test binary in a wheel) is loaded as well,
but what it lacks is a warning naming it, not an error. With ``host=True`` what a
root lacks is copied from the build host (its default dirs, then ``ldconfig -p``),
with what those libraries need in turn and the interpreter, keeping the soname
symlinks (``libz.so.1 -> libz.so.1.2.13``). Whatever stays missing raises
:class:`ClosureError` naming the object, the soname or version, and only fixes
that would work.

Not modelled: ``glibc-hwcaps`` and legacy hwcap subdirs, ``DF_1_NODEFLIB``,
``dlopen`` calls by name from code (beyond "every unloaded library is a root"),
and libraries a process loaded earlier for another root.
"""

from __future__ import annotations

import os
import posixpath
import re
import subprocess
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, NamedTuple, Sequence

from ..errors import ClosureError
from ..layers.entries import Entry, Kind
from .files import file_entry
from .ldso import (LD_SO_CACHE, LD_SO_CONF, LoaderLayout, layout_for, ld_so_conf_dirs,
                   read_ld_cache)

if TYPE_CHECKING:  # .elf imports pyelftools (20 ms): only once a file must be read
    from .elf import ElfInfo

_MAX_LINKS = 40  # as the kernel's and ld.so's symlink loop limits
_MAX_REPORTED = 20
_MAX_SKIP_LISTED = 3  # roots named one by one in a skip hint; more get their common dir
_SHEBANG_LIMIT = 256  # bytes of a script read for its "#!" line (the kernel reads 256)
_EXTENSION = re.compile(r"^[^.]+\.(cpython-[^.]+|abi3|pypy[^.]*)\.so$")
_PYTHON_DIRS = ("site-packages", "dist-packages", "lib-dynload")

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class Verdict(NamedTuple):
    program: bool  # exec'd (else dlopen'ed)
    loads: bool    # every library and version it needs resolves


@dataclass(frozen=True)
class ClosureResult:
    """``missing``: (ELF image path, soname or interpreter) pairs nothing provides to a
    root's load. ``missing_versions``: (object, library, version) triples.
    ``stray``: (executable, what it lacks) for executables no root reaches (warnings).
    ``host_entries``: files and symlinks copied from the build host (sorted by path),
    for a ``libraries`` layer. ``host_sources`` maps their image paths to host paths.
    ``elf_files``: how many loadable ELF files were looked at. ``verdicts``: for
    every root and stray loaded, whether it was started as a program and whether
    its load would succeed (what a real loader is checked against).
    """

    missing: list[tuple[str, str]]
    host_entries: list[Entry] = field(default_factory=list)
    host_sources: dict[str, str] = field(default_factory=dict)
    elf_files: int = 0
    missing_versions: list[tuple[str, str, str]] = field(default_factory=list)
    stray: list[tuple[str, str]] = field(default_factory=list)
    verdicts: dict[str, Verdict] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        """One line per stray executable that would not start."""
        lacks: dict[str, list[str]] = {}
        for exe, name in self.stray:
            lacks.setdefault(exe, []).append(name)
        return [f"{exe}: no entrypoint, cmd or PATH reaches this executable, and it would "
                f"not start (it needs {', '.join(names)}); left out of the closure check"
                for exe, names in sorted(lacks.items())]


def resolve_closure(files: Mapping[str, Entry], *,
                    library_path: Mapping[str, Sequence[str]] | None = None,
                    host: bool = False,
                    host_root: Path = Path("/"), runner: Runner = subprocess.run,
                    strict: bool = True,
                    known: Mapping[str, ElfInfo | None] | None = None,
                    scope: Iterable[str] | None = None,
                    programs: Sequence[str] = (),
                    path_dirs: Sequence[str] = (),
                    skip: Callable[[str], bool] = lambda path: False,
                    layer_of: Callable[[str], str | None] = lambda path: None,
                    ) -> ClosureResult:
    """Check (and with ``host=True`` complete) the library closure of an image view.

    ``files`` maps image paths to entries (symlinks and hard links are followed
    inside it). ``library_path`` maps an image dir to the dirs the loader also
    searches, as LD_LIBRARY_PATH, for ELF files *inside* that dir: PyInstaller's
    bootloader runs what it loads from ``_internal`` with it on the search path,
    so a onedir bundle at ``/app`` gives ``{"/app/_internal": ["/app/_internal"]}``;
    ``{"/": dirs}`` is the config's ``LD_LIBRARY_PATH``. ``host_root`` and
    ``runner`` (for ``ldconfig -p``) let tests point the host side elsewhere.
    With ``strict`` (default) anything still missing raises
    :class:`ClosureError`; otherwise it is returned.

    ``known`` maps image paths of FILE entries of ``files`` to what reading them
    would give (an :class:`ElfInfo`, or None for anything not a loadable ELF
    file), so they are not opened again; the pipeline fills it from what the tar
    writer saw. Files not in it are read through their openers.

    ``scope``, if given, are the image paths the build answers for (the files of
    the layers being built): only they are roots; the files of a pulled base are
    then only providers, since whoever built the base answers for them.
    ``programs`` are the config's entrypoint and cmd programs (argv[0]), looked up
    along ``path_dirs`` (the config's ``PATH``) when they have no slash. ``skip``
    says which paths are left out of the check (they stay providers);
    ``layer_of`` names the layer a path comes from, for the error's way out.
    """
    view = _View(dict(files))
    infos = _ElfCache(view, known)
    hostlibs = _HostLibraries(host_root, runner) if host else None
    probe = _HostLibraries(host_root, runner)  # to suggest the host only when it helps
    candidates = _maybe_elf_files(view, infos.known)
    if scope is not None:
        wanted = set(scope)
        candidates = [p for p in candidates if p in wanted]
    candidates = [p for p in sorted(candidates) if not skip(p)]
    loader = _Loader(view, infos, library_path or {}, hostlibs)
    in_scope = {p: info for p in candidates if (info := infos.get(p)) is not None}

    def start(path: str) -> bool:
        return path in in_scope and not skip(path)

    roots = [p for p in _programs(view, programs, path_dirs) if start(p)]
    on_path = {posixpath.normpath(d) for d in path_dirs}
    roots += [p for p, info in in_scope.items()
              if info.is_program and posixpath.dirname(p) in on_path and p not in roots]
    for path in roots:
        loader.run(path, program=True, fatal=True)
    for path, info in in_scope.items():
        if not info.is_program and _is_extension(path):
            loader.run(path, program=False, fatal=True)
    # Libraries no root loaded: dlopen'ed by someone (ctypes, plugins), outermost first.
    while True:
        rest = {p: i for p, i in in_scope.items() if not i.is_program
                and view.resolve(p) not in loader.reached}
        if not rest:
            break
        wanted_names = {n for i in rest.values() for n in i.needed}
        top = [p for p, i in rest.items()
               if posixpath.basename(p) not in wanted_names and i.soname not in wanted_names]
        before = len(loader.reached)
        for path in top or list(rest):
            loader.run(path, program=False, fatal=True)
        if len(loader.reached) == before:
            break  # cannot happen (a root reaches itself); never loop on it
    for path, info in in_scope.items():
        if info.is_program and view.resolve(path) not in loader.reached:
            loader.run(path, program=True, fatal=False)
    result = ClosureResult(loader.missing, [loader.added[p] for p in sorted(loader.added)],
                           {p: loader.sources[p] for p in sorted(loader.sources)},
                           len(loader.seen), loader.missing_versions, loader.stray,
                           dict(sorted(loader.verdicts.items())))
    if (result.missing or result.missing_versions) and strict:
        raise ClosureError(_message(result, host, view, infos, probe,
                                    lambda key: _skip_hint(loader.roots_of.get(key, set()),
                                                           layer_of)))
    return result


def _programs(view: "_View", programs: Sequence[str], path_dirs: Sequence[str]) -> list[str]:
    """The ELF files the config's programs are: argv[0] along PATH, and the
    interpreter of a ``#!`` script (once; ``/usr/bin/env NAME`` looks NAME up)."""
    out: list[str] = []
    for name in programs:
        for _ in range(2):
            path = _which(view, name, path_dirs)
            if path is None:
                break
            head = _head(view, path)
            if not head.startswith(b"#!"):
                out.append(path)
                break
            words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
            if not words:
                break
            if posixpath.basename(words[0]) == "env" and len(words) > 1:
                env = _which(view, words[0], path_dirs)
                if env is not None:
                    out.append(env)
                words = words[1:]
            name = words[0]
    return out


def _which(view: "_View", name: str, path_dirs: Sequence[str]) -> str | None:
    if "/" in name:
        return view.resolve(name if name.startswith("/") else "/" + name)
    for d in path_dirs:
        if d.startswith("/"):
            found = view.resolve(posixpath.join(d, name))
            if found is not None:
                return found
    return None


def _head(view: "_View", path: str) -> bytes:
    entry = view.files.get(path)
    if entry is None or entry.opener is None:
        return b""
    with entry.opener() as f:
        return f.read(_SHEBANG_LIMIT)


def _is_extension(path: str) -> bool:
    """Whether ``path`` is named like a Python extension module."""
    name = posixpath.basename(path)
    if _EXTENSION.match(name):
        return True
    return (name.endswith(".so") and name.count(".") == 1
            and any(part in _PYTHON_DIRS for part in path.split("/")))


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


class _Object:
    """One object loaded in a simulated process."""

    __slots__ = ("path", "real", "info", "loader", "origin")

    def __init__(self, path: str, real: str, info: ElfInfo, loader: "_Object | None",
                 origin: str) -> None:
        self.path, self.real, self.info, self.loader, self.origin = (
            path, real, info, loader, origin)


class _Loader:
    """Simulates glibc loading one root at a time; collects what is missing."""

    def __init__(self, view: "_View", infos: "_ElfCache",
                 library_path: Mapping[str, Sequence[str]],
                 hostlibs: "_HostLibraries | None") -> None:
        self.view, self.infos, self.library_path, self.hostlibs = (
            view, infos, library_path, hostlibs)
        self.reached: set[str] = set()   # real paths some root loaded
        self.seen: set[str] = set()      # real paths looked at (roots, strays, loaded)
        self.missing: list[tuple[str, str]] = []
        self.missing_versions: list[tuple[str, str, str]] = []
        self.stray: list[tuple[str, str]] = []
        self.verdicts: dict[str, Verdict] = {}
        self.roots_of: dict[tuple[str, ...], set[str]] = {}  # what failed -> whose load
        self.added: dict[str, Entry] = {}
        self.sources: dict[str, str] = {}
        self._found: dict[tuple[str, tuple[str, ...], str, int], tuple[str, str] | None] = {}
        self._cache: dict[str, list[tuple[int, str]]] | None = None

    def run(self, path: str, *, program: bool, fatal: bool) -> None:
        real = self.view.resolve(path)
        info = self.infos.get(path)
        if real is None or info is None:
            return
        missing: list[tuple[str, str]] = []
        versions: list[tuple[str, str, str]] = []
        root = _Object(path, real, info, None,
                       posixpath.dirname(real if program else path))
        loaded: list[_Object] = [root]
        names: dict[str, _Object] = {}
        by_real: dict[str, _Object] = {real: root}
        if info.soname:
            names[info.soname] = root
        # A program names its ld.so; whatever dlopens a library runs under the
        # architecture's own (libc.so.6 needs it by its soname).
        interp_path = (info.interpreter if program else
                       layout_for(info.machine, info.elf_class).interpreter)
        if interp_path and (program or self.view.resolve(interp_path) is not None):
            interp = self._require(interp_path, root, missing, fatal)
            if interp is not None:
                obj = _Object(interp_path, interp[1], interp[2], root,
                              posixpath.dirname(interp_path))
                by_real[obj.real] = obj
                names[interp_path] = obj
                if obj.info.soname:
                    names[obj.info.soname] = obj
                loaded.append(obj)
        queue = deque([root])
        while queue:
            obj = queue.popleft()
            deps: dict[str, _Object] = {}
            for name in obj.info.needed:
                if name in names:
                    deps[name] = names[name]
                    continue
                found = self._require(name, obj, missing, fatal)
                if found is None:
                    continue
                candidate, found_real, found_info = found
                new = by_real.get(found_real)
                if new is None:
                    new = _Object(candidate, found_real, found_info, obj,
                                  posixpath.dirname(candidate))
                    by_real[found_real] = new
                    loaded.append(new)
                    queue.append(new)
                    if found_info.soname:
                        names.setdefault(found_info.soname, new)
                names[name] = new
                deps[name] = new
            for lib, wanted in obj.info.verneed:
                provider = deps.get(lib) or names.get(lib)
                if provider is None or not provider.info.verdef:
                    continue  # missing already, or unversioned (the loader only warns)
                for version in wanted:
                    if version not in provider.info.verdef:
                        versions.append((obj.path, provider.path, version))
        reals = {o.real for o in loaded}
        self.seen |= reals
        self.verdicts[path] = Verdict(program, not missing and not versions)
        if fatal:
            self.reached |= reals
            self.missing += [m for m in missing if m not in self.missing]
            self.missing_versions += [v for v in versions if v not in self.missing_versions]
            for key in [*missing, *versions]:
                self.roots_of.setdefault(key, set()).add(path)
        else:
            self.stray += [(path, name) for _, name in missing]
            self.stray += [(path, f"{lib} version {v}") for _, lib, v in versions]

    def _require(self, name: str, obj: _Object, missing: list[tuple[str, str]],
                 fatal: bool) -> tuple[str, str, ElfInfo] | None:
        """Find ``name`` for ``obj``; with host libraries allowed, copy it first if need be."""
        found = self.find(name, obj)
        if found is None and fatal and self.hostlibs is not None:
            layout = layout_for(obj.info.machine, obj.info.elf_class)
            new = self.hostlibs.copy(self.view, name, obj.info, layout)
            for entry, host_path in new:
                self.view.add(entry)
                self.infos.forget(entry.path)
                self.added[entry.path] = entry
                self.sources[entry.path] = host_path
            if new:
                self._found.clear()
                found = self.find(name, obj)
        if found is None:
            missing.append((obj.path, name))
        return found

    def find(self, name: str, obj: _Object) -> tuple[str, str, ElfInfo] | None:
        """(path as found, real path, info) of what the loader maps for ``name``."""
        if "/" in name:
            real = self.view.resolve(name) if name.startswith("/") else None
            info = self.infos.get(real) if real is not None else None
            if name.startswith("/"):
                return (name, real, info) if real is not None and info is not None else None
            return None
        dirs = self.search_dirs(obj)
        key = (name, dirs, obj.info.machine, obj.info.elf_class)
        if key in self._found:
            hit = self._found[key]
        else:
            hit = self._found[key] = self._search(name, dirs, obj.info)
        if hit is None:
            return None
        info = self.infos.get(hit[1])
        return (hit[0], hit[1], info) if info is not None else None

    def search_dirs(self, obj: _Object) -> tuple[str, ...]:
        """The dirs searched for ``obj``'s DT_NEEDED before the cache and default dirs."""
        layout = layout_for(obj.info.machine, obj.info.elf_class)
        dirs: list[str] = []
        if not obj.info.runpath:
            link: _Object | None = obj
            while link is not None:
                dirs += [_expand(d, link.origin, layout) for d in link.info.effective_rpath]
                link = link.loader
        dirs += _ld_library_path(obj.path, self.library_path)
        dirs += [_expand(d, obj.origin, layout) for d in obj.info.runpath]
        return tuple(dirs)

    def _search(self, name: str, dirs: tuple[str, ...],
                needer: ElfInfo) -> tuple[str, str] | None:
        layout = layout_for(needer.machine, needer.elf_class)
        for d in dirs:
            hit = self._try(posixpath.join(d, name), needer) if d.startswith("/") else None
            if hit is not None:
                return hit
        for flags, path in self.ld_cache().get(name, []):
            if flags == layout.cache_flags:
                hit = self._try(path, needer)
                if hit is not None:
                    return hit
        for d in layout.default_dirs:
            hit = self._try(posixpath.join(d, name), needer)
            if hit is not None:
                return hit
        return None

    def _try(self, path: str, needer: ElfInfo) -> tuple[str, str] | None:
        real = self.view.resolve(path)
        if real is None:
            return None
        candidate = self.infos.get(real)
        if candidate is not None and needer.compatible(candidate):
            return path, real
        return None

    def ld_cache(self) -> dict[str, list[tuple[int, str]]]:
        """The image's /etc/ld.so.cache by soname ({} without one)."""
        if self._cache is None:
            self._cache = {}
            data = _read_small(self.view, LD_SO_CACHE)
            if data is not None:
                for soname, flags, path in read_ld_cache(data):
                    self._cache.setdefault(soname, []).append((flags, path))
        return self._cache


def _read_small(view: "_View", path: str, limit: int = 64 << 20) -> bytes | None:
    real = view.resolve(path)
    entry = view.files.get(real) if real else None
    if entry is None or entry.opener is None:
        return None
    with entry.opener() as f:
        return f.read(limit)


def _ld_library_path(path: str, library_path: Mapping[str, Sequence[str]]) -> list[str]:
    dirs: list[str] = []
    for top, extra in sorted(library_path.items()):
        if top == "/" or path.startswith(top.rstrip("/") + "/"):
            dirs += extra
    return dirs


def _expand(entry: str, origin: str, layout: LoaderLayout) -> str:
    for token, value in (("$ORIGIN", origin), ("${ORIGIN}", origin),
                         ("$LIB", layout.lib), ("${LIB}", layout.lib),
                         ("$PLATFORM", layout.platform), ("${PLATFORM}", layout.platform)):
        entry = entry.replace(token, value)
    return posixpath.normpath(entry) if entry.startswith("/") else entry


def _message(result: ClosureResult, host: bool, view: "_View", infos: "_ElfCache",
             probe: "_HostLibraries", skip_hint: Callable[[tuple[str, ...]], str]) -> str:
    """One line per missing name (and version), each with only the fixes that work."""
    needers: dict[str, list[str]] = {}
    for elf, name in result.missing:
        needers.setdefault(name, []).append(elf)
    conf_dirs: list[str] | None = None
    lines = []
    for name, elfs in list(needers.items())[:_MAX_REPORTED]:
        more = f" (as do {len(elfs) - 1} more files)" if len(elfs) > 1 else ""
        first = elfs[0]
        needer = infos.get(first)
        where = "neither in the image nor on the build host" if host else "not in the image"
        elsewhere = _same_name(view, infos, name, needer)
        if conf_dirs is None:
            conf_dirs = _conf_dirs(view)
        listed = [d for d in conf_dirs if view.resolve(posixpath.join(d, name))]
        if listed and "/" not in name:
            where = (f"in {listed[0]}, which {LD_SO_CONF} names but the loader reads only "
                     f"{LD_SO_CACHE}, and that does not list it (set LD_LIBRARY_PATH in "
                     "config.env")
        elif elsewhere:
            where = (f"not on its search path (the image has it at {elsewhere[0]}: "
                     "add that dir to its RUNPATH, or to LD_LIBRARY_PATH in config.env")
        fixes = [] if elsewhere else ["add it to the base"]
        if (not host and needer is not None and not elsewhere
                and probe.has(name, needer, layout_for(needer.machine, needer.elf_class))):
            fixes.append("set libraries: {from: host}")
        fixes.append(skip_hint((first, name)))
        fix = ", or ".join(f for f in fixes if f)
        if elsewhere or listed:
            where += f"{', or ' + fix if fix else ''})"
        elif fix:
            where += f" ({fix})"
        lines.append(f"{first} needs {name}{more}, which is {where}")
    if len(needers) > _MAX_REPORTED:
        lines.append(f"... and {len(needers) - _MAX_REPORTED} more missing libraries")
    for elf, lib, version in result.missing_versions[:_MAX_REPORTED]:
        lines.append(f"{elf} needs version {version} of {lib}, which that library does not "
                     f"define (the program was built against a newer one: build it on "
                     f"the base's release, or put a newer {posixpath.basename(lib)} in the "
                     f"base; {skip_hint((elf, lib, version))})")
    return "\n".join(lines)


def _skip_hint(roots: set[str], layer_of: Callable[[str], str | None]) -> str:
    """The ``closure: {skip}`` line that leaves out the roots whose load failed (skipping
    the library that lacks something would not help: its loaders still load it)."""
    layers = {layer_of(root) for root in roots}
    if len(layers) != 1 or None in layers:
        return ""
    ordered = sorted(roots)
    patterns = ordered if len(ordered) <= _MAX_SKIP_LISTED else [
        posixpath.commonpath(ordered) + "/*"]
    return (f"leave what loads it out of the check with closure: "
            f"{{skip: [{', '.join(patterns)}]}} on layer {layers.pop()!r}")


def _same_name(view: "_View", infos: "_ElfCache", name: str,
               needer: ElfInfo | None) -> list[str]:
    """Image paths of compatible libraries called ``name`` (for "not on its search path")."""
    if "/" in name or needer is None:
        return []
    out = []
    for path, entry in view.files.items():
        if (posixpath.basename(path) == name and entry.kind is not Kind.DIR):
            info = infos.get(path)
            if info is not None and needer.compatible(info):
                out.append(path)
    return sorted(out)


def _conf_dirs(view: "_View") -> list[str]:
    def listdir(folder: str) -> list[str]:
        real = view.resolve_dir(folder) or folder
        prefix = real.rstrip("/") + "/"
        return [p[len(prefix):] for p in view.files
                if p.startswith(prefix) and "/" not in p[len(prefix):]]

    return ld_so_conf_dirs(lambda p: _read_small(view, p, 1 << 20), listdir)


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

    def __init__(self, root: Path, runner: Runner) -> None:
        self.root, self.runner = root, runner
        self._ldconfig: dict[str, list[str]] | None = None

    def has(self, name: str, needer: ElfInfo, layout: LoaderLayout) -> bool:
        """Whether :meth:`copy` would find ``name`` for ``needer`` on the host."""
        if "/" in name:
            return name.startswith("/") and self._exists(name)
        return self._match(name, needer, layout) is not None

    def copy(self, view: _View, name: str, needer: ElfInfo,
             layout: LoaderLayout) -> list[tuple[Entry, str]]:
        """Entries (with their host paths) that make ``name`` resolvable; [] if not found.
        A name with a slash (the interpreter) is copied to the same path."""
        if "/" in name:
            return self._copy_chain(view, name) if self.has(name, needer, layout) else []
        match = self._match(name, needer, layout)
        if match is None:
            return []
        image_dir, host_path = match
        dest_dir = view.resolve_dir(image_dir) or image_dir
        return self._copy_chain(view, posixpath.join(dest_dir, name), host_path)

    def _match(self, name: str, needer: ElfInfo,
               layout: LoaderLayout) -> tuple[str, str] | None:
        for image_dir, host_path in self._candidates(name, layout.default_dirs):
            info = _read_host(self._host(host_path))
            if info is not None and needer.compatible(info):
                return image_dir, host_path
        return None

    def _candidates(self, name: str, dirs: Sequence[str]) -> Iterable[tuple[str, str]]:
        for d in dirs:
            yield d, posixpath.join(d, name)
        for path in self.ldconfig().get(name, []):
            d = posixpath.dirname(path)
            yield (d if d in dirs else dirs[0]), path

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


ImageView = _View
"""Path lookups in a merged image view (symlinks, hard links): for other modules."""
