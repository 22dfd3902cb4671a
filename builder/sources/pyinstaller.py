"""Freeze a Python app with PyInstaller in an isolated, cached build environment.

The flow is ``options -> venv (cached) -> PyInstaller run (cached) -> dist dir``;
:func:`bundle_entries` then turns the dist dir into layer entries. Two caches live
under ``cache_dir``, both written to a temporary name and renamed into place, so a
crash never leaves a half-written entry where a complete one is expected::

    cache_dir/venv/<venv key>/    python -m venv + pip install requirements + pyinstaller
    cache_dir/dist/<dist key>/    the PyInstaller output (onedir folder or onefile binary)

The venv (:mod:`.buildvenv`) key hashes the Python version (or the build root's key),
the requirements file's bytes, pip's options and the PyInstaller pins. The dist key hashes the venv key, the Python modules in the
entry script's folder and the files ``extra_args`` name there (path and content:
mtimes do not count), and the options. A
cache hit runs neither pip nor PyInstaller. Processes are started through
``runner`` (shaped like :func:`subprocess.run`) so tests can count them.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import FreezeError, InputError
from ..humanize import count
from ..layers.entries import Entry
from .app_code import AppCode, added_data_names, scan_app
from .buildvenv import PIP_OPTIONS, drop_outside_records, ensure_venv, publish, run_tool
from .files import tree_entries
from .launcher import APP_DIR, HOOK_NAME, SCRIPT_NAME, SIGTERM_HOOK, launcher_source
from .pyinstaller_log import (check_declared, freeze_failure, keep_log, output_of, problems,
                              tail)

PYINSTALLER_PINS: tuple[str, ...] = ("pyinstaller==6.22.3", "pyinstaller-hooks-contrib==2026.9")
"""What is installed next to the app's requirements; part of every cache key."""
MODES = ("onedir", "onefile")
_KEY_VERSION = "4"  # bump when the layout or the PyInstaller command line changes
_DIST_VERSION = "4"  # bump when what a freeze checks or keeps changes (the venv stays)
_SKIP_DIRS = {"__pycache__", ".git", ".hg", ".svn", ".tox", ".venv", "venv", "build", "dist",
              ".mypy_cache", ".pytest_cache"}
_SOURCE_SUFFIXES = (".py", ".pyw", ".so", ".pth")

Runner = Callable[..., "subprocess.CompletedProcess[str]"]
Log = Callable[[str], None]


@dataclass(frozen=True)
class PyInstallerOptions:
    """What the manifest's ``pyinstaller:`` layer says; paths are absolute.

    ``entry``: Required. The app's main script; its directory is the source tree.
    ``requirements``: Optional. A pip requirements file installed into the venv.
    ``hidden_imports`` / ``collect_data`` / ``collect_submodules`` / ``collect_all`` /
    ``excludes``: Optional. Module names passed to PyInstaller's options of the same
    name (``excludes`` is ``--exclude-module``).
    ``strip``: Optional, default True. Strip symbols from the bundle's libraries
    (onedir only; see :mod:`builder.sources.elfstrip` for why not PyInstaller's own).
    ``mode``: Optional, ``onedir`` (default) or ``onefile``.
    ``extra_args``: Optional. More PyInstaller arguments; relative paths in them
    (``--add-data data:data``, ``--paths ../lib``) are relative to the entry's
    folder, and the files they name are part of the cache key.
    ``python``: Optional. The interpreter that builds the venv (default: ocibuild's own).
    ``build_root``: Optional. A base definition to freeze in, hermetically
    (:mod:`builder.sources.buildroot` sets ``python``, ``environment`` and the runner).
    ``environment``: what else identifies the build environment (a build root's key);
    part of the venv key.
    """

    entry: Path
    requirements: Path | None = None
    hidden_imports: tuple[str, ...] = ()
    collect_data: tuple[str, ...] = ()
    collect_submodules: tuple[str, ...] = ()
    collect_all: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    strip: bool = True
    mode: str = "onedir"
    extra_args: tuple[str, ...] = ()
    python: str | None = None
    build_root: Path | None = None
    environment: str | None = None

    @property
    def name(self) -> str:
        """The executable's name: the entry script's stem (``app.py`` -> ``app``)."""
        return self.entry.stem


@dataclass(frozen=True)
class FrozenApp:
    """A finished freeze.

    ``dist_dir`` holds what PyInstaller made, which goes under the layer's
    ``dest``: for onedir the executable plus ``_internal/``, for onefile the
    single executable. ``app`` is, for a split bundle, the app's own code, which
    is not in ``dist_dir`` and goes to ``dest/_app`` (:func:`bundle_entries`).
    ``library_dirs`` are the dirs (relative to ``dist_dir``) that PyInstaller's
    bootloader puts on the loader's search path at run time; the library closure
    needs them to resolve what the bundle's own ``.so`` files link to.
    """

    dist_dir: Path
    executable: str
    cached: bool
    key: str
    library_dirs: tuple[str, ...] = ()
    app: AppCode | None = None
    packed_needs: tuple[str, ...] = ()
    """onefile: what the libraries packed in the executable need and do not pack."""


@dataclass(frozen=True)
class FreezePlan:
    """What a freeze will do, known before pip or PyInstaller run: its cache key
    (``key``, content only: it travels between machines), the app's own code (None
    for onefile), the options PyInstaller's analysis gets, the launcher script."""

    options: PyInstallerOptions
    analysed: PyInstallerOptions
    app: AppCode | None
    venv_key: str
    key: str
    script: str | None
    epoch: int

    @property
    def library_dirs(self) -> tuple[str, ...]:
        return ("_internal",) if self.options.mode == "onedir" else ()


def plan_freeze(options: PyInstallerOptions, *, runner: Runner = subprocess.run,
                source_date_epoch: int | None = None) -> FreezePlan:
    """Scan the app and compute the freeze's keys (no pip, no PyInstaller; a process
    only to ask a foreign ``options.python`` its version)."""
    _check_inputs(options)
    epoch = _epoch(source_date_epoch)
    app = _scan_own_code(options) if options.mode == "onedir" else None
    analysed = _without_own_modules(options, app)
    # a build root's key covers its interpreter (version, build, architecture): no need
    # to start it (through bwrap, and qemu for a foreign one) on every build
    python_id = (f"{options.python} of the build root" if options.environment
                 else _python_identity(options.python, runner))
    venv_key = _digest({"v": _KEY_VERSION, "python": python_id, "pins": PYINSTALLER_PINS,
                        "pip": PIP_OPTIONS,
                        **({"environment": options.environment} if options.environment else {}),
                        "requirements": _file_digest(options.requirements)})
    script = launcher_source(app.entry, app.imports) if app is not None else None
    dist_key = _digest({"v": _KEY_VERSION, "dist": _DIST_VERSION, "venv": venv_key,
                        "epoch": epoch, "hook": SIGTERM_HOOK,
                        "sources": _tree_digest(options, whole_app=app is None),
                        "launcher": script,
                        "options": _options_for_key(analysed)})
    return FreezePlan(options, analysed, app, venv_key, dist_key, script, epoch)


def freeze(options: PyInstallerOptions, *, cache_dir: Path, runner: Runner = subprocess.run,
           log: Log = lambda message: None, source_date_epoch: int | None = None,
           plan: FreezePlan | None = None) -> FrozenApp:
    """Freeze ``options.entry``; reuse the cached output when no input changed.

    A onedir app is frozen *split*: PyInstaller freezes a generated launcher
    whose only knowledge of the app is its import set (:mod:`.app_code`,
    :mod:`.launcher`), so the cached dependencies serve every code change that
    imports nothing new; the app's own files are returned in ``FrozenApp.app``.
    A onefile app is frozen whole, as one executable. ``plan`` is
    :func:`plan_freeze`'s result when the caller already has it.

    ``source_date_epoch`` (default: ``$SOURCE_DATE_EPOCH``, else 0) is given to pip
    and PyInstaller and is part of the cache key. Raises :class:`InputError` for a
    missing entry or requirements file, :class:`FreezeError` when venv, pip or
    PyInstaller fail (with the log's tail and a likely fix).
    """
    plan = plan or plan_freeze(options, runner=runner, source_date_epoch=source_date_epoch)
    app, analysed, script, epoch, dist_key = (plan.app, plan.analysed, plan.script,
                                              plan.epoch, plan.key)
    python = options.python or sys.executable
    cache_dir = Path(cache_dir)
    exe = options.name
    lib_dirs = plan.library_dirs
    dist = cache_dir / "dist" / dist_key
    warnings = dist.with_name(dist_key + ".warnings")
    for line in app.warnings if app is not None else ():
        log(f"pyinstaller: {line}")
    if dist.is_dir():
        log(f"pyinstaller: {options.entry.name}: dependencies cached ({dist_key[:12]})"
            if app is not None else f"pyinstaller: {options.entry.name}: cached ({dist_key[:12]})")
        for line in _read_lines(warnings):  # what PyInstaller said when it made it
            log(f"pyinstaller: {line}")
        return FrozenApp(dist, exe, True, dist_key, lib_dirs, app,
                         _onefile_needs(options, dist))

    env = _build_env(epoch)
    venv = ensure_venv(cache_dir / "venv" / plan.venv_key, python, options.requirements,
                       PYINSTALLER_PINS, runner=runner, log=log, env=env)
    log(f"pyinstaller: freezing {options.entry.name} ({options.mode}"
        + (f", {len(app.imports)} imports of the app's code analysed)" if app else ")"))
    with tempfile.TemporaryDirectory(prefix="freeze-", dir=_scratch_parent(cache_dir)) as tmp:
        scratch = Path(tmp)
        src = scratch / "src"
        _copy_sources(options, src, whole_app=app is None)
        if script is not None:
            (src / SCRIPT_NAME).write_text(script, encoding="utf-8")
        (scratch / HOOK_NAME).write_text(SIGTERM_HOOK, encoding="utf-8")
        out = scratch / "out"
        # Run from the copy of the entry's folder, so relative paths in extra_args
        # (--add-data, --icon …) mean what they mean next to the app.
        args = pyinstaller_args(analysed, _extra_args_outside_made_absolute(options))
        args += ["--runtime-hook", str(scratch / HOOK_NAME)]
        if app is not None:
            # Pure-Python modules as .pyc files beside their packages, not in one
            # archive inside the executable: each then lands in its distribution's
            # layer, and the executable (which changes with the import set) stays tiny.
            args += ["--debug", "noarchive"]
        for name in requirement_names(options.requirements):
            # dist-info for every requirement (and what it pulls in), so SBOMs and
            # scanners can see the Python packages inside the bundle.
            args += ["--recursive-copy-metadata", name]
        drop_outside_records(venv / "lib")  # before PyInstaller copies any dist-info
        cmd = [str(venv / "bin" / "python"), "-m", "PyInstaller", *args,
               "--distpath", "../dist", "--workpath", "../work", "--specpath", ".",
               SCRIPT_NAME if script is not None else options.entry.name]
        proc = run_tool(runner, cmd, cwd=src, env={**env, "PYINSTALLER_CONFIG_DIR": str(scratch)})
        produced = scratch / "dist" / (exe if options.mode == "onedir" else "")
        if proc.returncode != 0 or not (produced / exe).exists():
            raise FreezeError(freeze_failure(options, proc, keep_log(cache_dir, dist_key, proc),
                                             src))
        said = problems(output_of(proc))
        for line in said:
            log(f"pyinstaller: {line}")
        check_declared(analysed, output_of(proc))
        if options.strip and options.mode == "onefile":
            log("pyinstaller: strip is not applied in onefile mode (see builder.sources.elfstrip)")
        if options.strip and options.mode == "onedir":
            from .elfstrip import strip_tree  # pyelftools: only when freezing

            report = strip_tree(produced, skip=(exe,), runner=runner)
            log(f"pyinstaller: stripped {count(len(report.stripped), 'file')}, saved "
                f"{report.saved / 1e6:.1f} MB; kept {len(report.kept)} unstripped "
                f"(strip would break them)")
        if options.mode == "onedir":
            produced.rename(out)
        else:
            out.mkdir()
            (produced / exe).rename(out / exe)
        _write_lines(warnings, said)
        publish(out, dist)
    return FrozenApp(dist, exe, False, dist_key, lib_dirs, app,
                     _onefile_needs(options, dist))


def _onefile_needs(options: PyInstallerOptions, dist: Path) -> tuple[str, ...]:
    if options.mode != "onefile":
        return ()
    from .onefile_libs import recorded_needs

    return recorded_needs(dist / options.name, scratch=_scratch_parent(dist.parent.parent))


def _scan_own_code(options: PyInstallerOptions) -> AppCode:
    """The app's own code; ``hidden_imports`` naming its modules are roots of it."""
    try:
        app = scan_app(options.entry, options.hidden_imports)
    except InputError as e:
        raise FreezeError(str(e)) from e
    return replace(app, data_names=added_data_names(options.extra_args, app.root))


def _without_own_modules(options: PyInstallerOptions, app: AppCode | None) -> PyInstallerOptions:
    """The options PyInstaller's analysis gets: module names of the app's own code are
    left out (that code ships whole in its own layer, beside the analysis)."""
    if app is None:
        return options

    def third_party(names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(n for n in names if n.split(".", 1)[0] not in app.own)

    return replace(options, hidden_imports=third_party(options.hidden_imports),
                   collect_data=third_party(options.collect_data),
                   collect_submodules=third_party(options.collect_submodules),
                   collect_all=third_party(options.collect_all))


_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_names(requirements: Path | None) -> list[str]:
    """The distribution names a requirements file asks for (options and URLs skipped)."""
    if requirements is None:
        return []
    names = []
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-", "git+", "http:", "https:", "file:")):
            continue
        match = _REQUIREMENT_NAME.match(line)
        if match:
            names.append(match.group(1))
    return sorted(set(names), key=str.lower)


def pyinstaller_args(options: PyInstallerOptions,
                     extra_args: Sequence[str] | None = None) -> list[str]:
    """The PyInstaller options an :class:`PyInstallerOptions` stands for (no paths);
    ``extra_args`` replaces ``options.extra_args`` when given."""
    args = ["--noconfirm", "--clean", "--log-level", "WARN", "--name", options.name,
            f"--{options.mode}"]
    for flag, names in (("--hidden-import", options.hidden_imports),
                        ("--collect-data", options.collect_data),
                        ("--collect-submodules", options.collect_submodules),
                        ("--collect-all", options.collect_all),
                        ("--exclude-module", options.excludes)):
        for name in names:
            args += [flag, name]
    return args + list(options.extra_args if extra_args is None else extra_args)


def _extra_args_outside_made_absolute(options: PyInstallerOptions) -> list[str]:
    """``extra_args`` with relative paths that leave the app's folder (``--paths ../lib``)
    made absolute: PyInstaller runs in a copy of the folder, where they would miss."""
    src = options.entry.parent.resolve()
    out = []
    for arg in options.extra_args:
        head, sep, tail = arg.partition(":")
        named = (src / head).resolve() if head and not head.startswith(("-", "/")) else None
        if named is not None and named.exists() and not named.is_relative_to(src):
            arg = f"{named}{sep}{tail}"
        out.append(arg)
    return out


def bundle_entries(frozen: FrozenApp | Path, dest: str) -> list[Entry]:
    """Entries for a frozen app at ``dest``: everything under its ``dist_dir`` and, for
    a split bundle, the app's own files under ``dest/_app`` (a bare ``Path`` is a
    dist dir alone), and there a link to each name ``--add-data`` put in
    ``_internal/``, which the entry's ``__file__`` used to be beside.

    Modes are normalized by :func:`tree_entries` (0755 for executables and
    libraries, 0644 otherwise), owners are 0:0, symlinks stay links.
    """
    dist_dir = frozen.dist_dir if isinstance(frozen, FrozenApp) else Path(frozen)
    if not dist_dir.is_dir():
        raise InputError(f"{dist_dir}: not a directory")
    entries = tree_entries(dist_dir, dest)
    app = frozen.app if isinstance(frozen, FrozenApp) else None
    if app is not None:
        entries += app_entries(app, dest,
                               lambda name: os.path.lexists(dist_dir / "_internal" / name))
    return entries


def app_entries(app: AppCode, dest: str, in_bundle: Callable[[str], bool]) -> list[Entry]:
    """The app's own files of a split bundle, under ``dest/_app``, and links to what
    ``--add-data`` put in ``_internal/`` (``in_bundle(name)``: whether it is there)."""
    base = posixpath.join(dest, APP_DIR)
    entries: list[Entry] = []
    for rel in app.files:
        entries.extend(tree_entries(app.root / rel, posixpath.join(base, rel)))
    own = {rel.split("/", 1)[0] for rel in app.files}
    for name in app.data_names:  # --add-data beside the entry, where it used to be
        if name not in own and in_bundle(name):
            entries.append(Entry.symlink(posixpath.join(base, name), f"../_internal/{name}"))
    return entries


def freeze_warnings(frozen: FrozenApp) -> list[str]:
    """What PyInstaller said (warnings) when it made this bundle."""
    return _read_lines(frozen.dist_dir.with_name(frozen.key + ".warnings"))


# --- keys and helpers ------------------------------------------------------------------

def _build_env(epoch: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PYINSTALLER"))}
    env.update(SOURCE_DATE_EPOCH=str(epoch), PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", LC_ALL="C.UTF-8", TZ="UTC")
    return env


def _epoch(value: int | None) -> int:
    if value is not None:
        return int(value)
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError as e:
        raise InputError(f"SOURCE_DATE_EPOCH={raw!r} is not an integer") from e


def _python_identity(python: str | None, runner: Runner) -> str:
    """The build interpreter's version and platform; our own is read without a process."""
    probe = "import sys, platform; print(sys.version, sys.implementation.cache_tag, platform.machine())"
    if python is None:
        import platform
        return f"{sys.version} {sys.implementation.cache_tag} {platform.machine()}"
    proc = run_tool(runner, [python, "-c", probe], env=_build_env(0))
    if proc.returncode != 0:
        raise FreezeError(f"cannot run the build interpreter {python}:\n{tail(output_of(proc))}")
    return (proc.stdout or "").strip()


def _options_for_key(options: PyInstallerOptions) -> dict[str, Any]:
    return {"entry": options.entry.name, "args": pyinstaller_args(options),
            "strip": options.strip and options.mode == "onedir"}


def _file_digest(path: Path | None) -> str | None:
    if path is None:
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _source_files(options: PyInstallerOptions, *, whole_app: bool = True
                  ) -> tuple[list[Path], list[Path]]:
    """What PyInstaller may read: (files in the app's folder, files outside it).

    Inside, when it freezes the ``whole_app`` (onefile): the Python modules, every file of the app's own packages (directories
    with an ``__init__.py``, and everything below them: the data ``collect_data``
    and ``collect_all`` gather), the entry, and whatever ``extra_args`` name there
    (``--add-data data:data``); these are copied to the scratch dir. Outside: what
    ``extra_args`` name by absolute path; PyInstaller reads those in place. Other
    files of the folder (a model, a built image tarball, the manifest) are neither
    hashed nor copied, so changing them does not rerun PyInstaller. A split freeze
    reads only what ``extra_args`` name: the app's code is its own layer.
    """
    src = options.entry.parent.resolve()
    inside: set[Path] = set()
    if whole_app:
        in_package = _PackageDirs(src)
        inside = {p for p in _walk(src) if p.suffix in _SOURCE_SUFFIXES or in_package(p.parent)}
        inside.add(options.entry.resolve())
    outside: set[Path] = set()
    for arg in options.extra_args:
        named = (src / arg.split(":")[0]).resolve()
        if not named.exists():
            continue
        files = _walk(named) if named.is_dir() else [named]
        (inside if named.is_relative_to(src) else outside).update(files)
    return sorted(inside), sorted(outside)


class _PackageDirs:
    """Whether a directory below ``root`` is inside a regular package (it or a parent
    below ``root`` holds ``__init__.py``); answers are remembered per directory."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._known: dict[Path, bool] = {root: False}

    def __call__(self, directory: Path) -> bool:
        known = self._known.get(directory)
        if known is None:
            known = (directory / "__init__.py").is_file() or self(directory.parent)
            self._known[directory] = known
        return known


def _walk(top: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.endswith(".egg-info"))
        found += [Path(root) / f for f in sorted(files) if not f.endswith((".pyc", ".pyo"))]
    return found


def _tree_digest(options: PyInstallerOptions, *, whole_app: bool) -> str:
    inside, outside = _source_files(options, whole_app=whole_app)
    src = options.entry.parent.resolve()
    h = hashlib.sha256()
    for path in inside + outside:
        name = path.relative_to(src).as_posix() if path in inside else str(path)
        h.update(f"{name}\0{_file_digest(path)}\0".encode())
    return h.hexdigest()


def _copy_sources(options: PyInstallerOptions, dst: Path, *, whole_app: bool) -> None:
    src = options.entry.parent.resolve()
    dst.mkdir(parents=True, exist_ok=True)
    for path in _source_files(options, whole_app=whole_app)[0]:
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _scratch_parent(cache_dir: Path) -> Path:
    path = cache_dir / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []


def _write_lines(path: Path, lines: list[str]) -> None:
    """Keep PyInstaller's warnings beside its cached output (best effort)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    except OSError:
        pass


def _check_inputs(options: PyInstallerOptions) -> None:
    if options.mode not in MODES:
        raise InputError(f"pyinstaller mode must be one of {', '.join(MODES)}, not {options.mode!r}")
    if not options.entry.is_file():
        raise InputError(f"pyinstaller entry {options.entry} does not exist")
    if options.requirements is not None and not options.requirements.is_file():
        raise InputError(f"requirements file {options.requirements} does not exist")
