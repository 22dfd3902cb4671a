"""Freeze a Python app with PyInstaller in an isolated, cached build environment.

The flow is ``options -> venv (cached) -> PyInstaller run (cached) -> dist dir``;
:func:`bundle_entries` then turns the dist dir into layer entries. Two caches live
under ``cache_dir``, both written to a temporary name and renamed into place, so a
crash never leaves a half-written entry where a complete one is expected::

    cache_dir/venv/<venv key>/    python -m venv + pip install requirements + pyinstaller
    cache_dir/dist/<dist key>/    the PyInstaller output (onedir folder or onefile binary)

The venv key hashes the Python version, the requirements file's bytes and the
PyInstaller pins. The dist key hashes the venv key, the Python modules in the
entry script's folder and the files ``extra_args`` name there (path and content:
mtimes do not count), and the options. A
cache hit runs neither pip nor PyInstaller. Processes are started through
``runner`` (shaped like :func:`subprocess.run`) so tests can count them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import FreezeError, FreezeOptionError, InputError
from ..layers.entries import Entry
from .files import tree_entries

PYINSTALLER_PINS: tuple[str, ...] = ("pyinstaller==6.22.3", "pyinstaller-hooks-contrib==2026.9")
"""What is installed next to the app's requirements; part of every cache key."""

MODES = ("onedir", "onefile")
_KEY_VERSION = "4"  # bump when the layout or the PyInstaller command line changes
_DIST_VERSION = "2"  # bump when what a freeze checks or keeps changes (the venv stays)
_SKIP_DIRS = {"__pycache__", ".git", ".hg", ".svn", ".tox", ".venv", "venv", "build", "dist",
              ".mypy_cache", ".pytest_cache"}
_SOURCE_SUFFIXES = (".py", ".pyw", ".so", ".pth")
_LOG_TAIL_LINES = 40

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

    @property
    def name(self) -> str:
        """The executable's name: the entry script's stem (``app.py`` -> ``app``)."""
        return self.entry.stem


@dataclass(frozen=True)
class FrozenApp:
    """A finished freeze.

    ``dist_dir`` holds what goes under the layer's ``dest``: for onedir the
    executable plus ``_internal/``, for onefile the single executable.
    ``library_dirs`` are the dirs (relative to ``dist_dir``) that PyInstaller's
    bootloader puts on the loader's search path at run time; the library closure
    needs them to resolve what the bundle's own ``.so`` files link to.
    """

    dist_dir: Path
    executable: str
    cached: bool
    key: str
    library_dirs: tuple[str, ...] = ()


def freeze(options: PyInstallerOptions, *, cache_dir: Path, runner: Runner = subprocess.run,
           log: Log = lambda message: None, source_date_epoch: int | None = None) -> FrozenApp:
    """Freeze ``options.entry``; reuse the cached output when no input changed.

    ``source_date_epoch`` (default: ``$SOURCE_DATE_EPOCH``, else 0) is given to pip
    and PyInstaller and is part of the cache key. Raises :class:`InputError` for a
    missing entry or requirements file, :class:`FreezeError` when venv, pip or
    PyInstaller fail (with the log's tail and a likely fix).
    """
    _check_inputs(options)
    epoch = _epoch(source_date_epoch)
    python = options.python or sys.executable
    python_id = _python_identity(options.python, runner)
    venv_key = _digest({"v": _KEY_VERSION, "python": python_id, "pins": PYINSTALLER_PINS,
                        "requirements": _file_digest(options.requirements)})
    dist_key = _digest({"v": _KEY_VERSION, "dist": _DIST_VERSION, "venv": venv_key,
                        "epoch": epoch,
                        "sources": _tree_digest(options),
                        "options": _options_for_key(options)})
    cache_dir = Path(cache_dir)
    exe = options.name
    lib_dirs = ("_internal",) if options.mode == "onedir" else ()
    dist = cache_dir / "dist" / dist_key
    warnings = dist.with_name(dist_key + ".warnings")
    if dist.is_dir():
        log(f"pyinstaller: {options.entry.name}: cached ({dist_key[:12]})")
        for line in _read_lines(warnings):  # what PyInstaller said when it made it
            log(f"pyinstaller: {line}")
        return FrozenApp(dist, exe, True, dist_key, lib_dirs)

    env = _build_env(epoch)
    venv = _ensure_venv(cache_dir / "venv" / venv_key, python, options.requirements,
                        runner=runner, log=log, env=env)
    log(f"pyinstaller: freezing {options.entry.name} ({options.mode})")
    with tempfile.TemporaryDirectory(prefix="freeze-", dir=_scratch_parent(cache_dir)) as tmp:
        scratch = Path(tmp)
        src = scratch / "src"
        _copy_sources(options, src)
        out = scratch / "out"
        # Run from the copy of the entry's folder, so relative paths in extra_args
        # (--add-data, --icon …) mean what they mean next to the app.
        args = pyinstaller_args(options, _extra_args_outside_made_absolute(options))
        for name in requirement_names(options.requirements):
            # dist-info for every requirement (and what it pulls in), so SBOMs and
            # scanners can see the Python packages inside the bundle.
            args += ["--recursive-copy-metadata", name]
        cmd = [str(venv / "bin" / "python"), "-m", "PyInstaller", *args,
               "--distpath", "../dist", "--workpath", "../work", "--specpath", ".",
               options.entry.name]
        proc = _run(runner, cmd, cwd=src, env={**env, "PYINSTALLER_CONFIG_DIR": str(scratch)})
        produced = scratch / "dist" / (exe if options.mode == "onedir" else "")
        if proc.returncode != 0 or not (produced / exe).exists():
            raise FreezeError(_freeze_failure(options, proc, _keep_log(cache_dir, dist_key, proc),
                                              src))
        problems = _problems(_output(proc))
        for line in problems:
            log(f"pyinstaller: {line}")
        _check_declared(options, _output(proc))
        _drop_outside_records(produced)
        if options.strip and options.mode == "onefile":
            log("pyinstaller: strip is not applied in onefile mode (see builder.sources.elfstrip)")
        if options.strip and options.mode == "onedir":
            from .elfstrip import strip_tree  # pyelftools: only when freezing

            report = strip_tree(produced, skip=(exe,), runner=runner)
            log(f"pyinstaller: stripped {len(report.stripped)} files, saved "
                f"{report.saved / 1e6:.1f} MB; kept {len(report.kept)} unstripped "
                f"(strip would break them)")
        if options.mode == "onedir":
            produced.rename(out)
        else:
            out.mkdir()
            (produced / exe).rename(out / exe)
        _write_lines(warnings, problems)
        _publish(out, dist)
    return FrozenApp(dist, exe, False, dist_key, lib_dirs)


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


def bundle_entries(dist_dir: Path, dest: str) -> list[Entry]:
    """Entries for everything under ``dist_dir`` (a :attr:`FrozenApp.dist_dir`), at ``dest``.

    Modes are normalized by :func:`tree_entries` (0755 for executables and
    libraries, 0644 otherwise), owners are 0:0, symlinks stay links.
    """
    if not Path(dist_dir).is_dir():
        raise InputError(f"{dist_dir}: not a directory")
    return tree_entries(Path(dist_dir), dest)


def _drop_outside_records(bundle: Path) -> None:
    """Remove RECORD rows for files outside site-packages (``../../../bin/flask``).

    Those are console scripts, which a bundle never holds; their hashes cover a
    shebang naming the build venv's path, so keeping the rows would make two
    builds in different directories differ.
    """
    for record in sorted(bundle.rglob("*.dist-info/RECORD")):
        lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if not line.startswith("../")]
        if kept != lines:
            record.write_text("".join(kept), encoding="utf-8")


# --- the venv --------------------------------------------------------------------------

def _ensure_venv(venv: Path, python: str, requirements: Path | None, *, runner: Runner,
                 log: Log, env: dict[str, str]) -> Path:
    if (venv / "bin" / "python").exists():
        return venv
    log(f"pyinstaller: creating build venv {venv.name[:12]}")
    venv.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=venv.parent))
    try:
        _check(runner, [python, "-m", "venv", str(tmp)], "creating the venv", env=env)
        # python -m pip, never bin/pip: the scripts' shebangs name the temporary path.
        pip = [str(tmp / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
               "--no-input", "--progress-bar", "off"]
        if requirements is not None:
            _check(runner, [*pip, "-r", str(requirements)], f"pip install -r {requirements.name}",
                   env=env, hint=_pip_hint)
        _check(runner, [*pip, *PYINSTALLER_PINS], "pip install pyinstaller", env=env,
               hint=_pip_hint)
        _publish(tmp, venv)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return venv


def _check(runner: Runner, cmd: Sequence[str], what: str, *, env: dict[str, str],
           hint: Callable[[str], str | None] = lambda out: None) -> None:
    proc = _run(runner, cmd, env=env)
    if proc.returncode != 0:
        out = _output(proc)
        fix = hint(out)
        raise FreezeError(f"{what} failed (exit {proc.returncode}):\n{_tail(out)}"
                          + (f"\nlikely fix: {fix}" if fix else ""))


def _pip_hint(out: str) -> str | None:
    m = re.search(r"No matching distribution found for (\S+)", out)
    if m:
        return (f"check that {m.group(1)} is spelled right and that its version exists "
                "for this Python on the configured package index")
    if "THESE PACKAGES DO NOT MATCH THE HASHES" in out:
        return "update the hashes in the requirements file"
    return None


# --- failure reports -------------------------------------------------------------------

_FIXES: tuple[tuple[str, Callable[[re.Match[str]], str]], ...] = (
    (r"ModuleNotFoundError: No module named '([\w.]+)'",
     lambda m: f"add {m.group(1)} to hidden_imports (or to requirements if it is not installed)"),
    (r"Hidden import '([\w.]+)' not found",
     lambda m: f"install the package that provides {m.group(1)} (requirements) "
               "or remove it from hidden_imports"),
    (r"FileNotFoundError: .*?'([^']+)'",
     lambda m: f"{m.group(1)} is missing from the bundle: add its package to collect_data"),
    (r"Script file '([^']+)' does not exist",
     lambda m: f"check the entry path ({m.group(1)})"),
    (r"SyntaxError", lambda m: "fix the syntax error shown above (PyInstaller compiles every "
                                "module it collects)"),
)


def _freeze_failure(options: PyInstallerOptions, proc: "subprocess.CompletedProcess[str]",
                    full_log: Path | None = None, copy: Path | None = None) -> str:
    """The error for a failed run; paths into the scratch ``copy`` of the app's folder
    (a syntax error's ``File "…/app.py", line 2``) name the user's files instead."""
    out = _output(proc)
    if copy is not None:
        out = out.replace(str(copy) + "/", str(options.entry.parent.resolve()) + "/")
    where = f" (full log: {full_log})" if full_log else ""
    message = (f"PyInstaller failed to freeze {options.entry.name} (exit {proc.returncode}); "
               f"last lines of its log{where}:\n{_tail(out)}")
    for pattern, fix in _FIXES:
        m = re.search(pattern, out)
        if m:
            return f"{message}\nlikely fix: {fix(m)}"
    return message


def _problems(out: str, most: int = 10) -> list[str]:
    """PyInstaller's WARNING/ERROR lines from a run that still succeeded (without
    their timestamps): a misspelled hidden import shows up here, not as a failure."""
    found = [m.group(1) for m in re.finditer(r"^\d+ ((?:WARNING|ERROR): .*)$", out, re.M)]
    return found[:most] + ([f"... and {len(found) - most} more"] if len(found) > most else [])


_MISSING_HIDDEN_IMPORT = re.compile(r"ERROR: Hidden import '([^']+)' not found")
_NOT_A_PACKAGE = re.compile(r"collect_data_files - skipping data collection for module "
                            r"'([^']+)' as it is not a package")


def _check_declared(options: PyInstallerOptions, out: str) -> None:
    """Refuse a run in which something the manifest declares was not found (PyInstaller
    reports it and succeeds; the app would fail at run time). Raised before the
    bundle is cached, so every build says it until the manifest is fixed."""
    hidden = [m for m in _MISSING_HIDDEN_IMPORT.findall(out) if m in options.hidden_imports]
    if hidden:
        raise FreezeOptionError(
            f"{', '.join(map(repr, hidden))}: no such module in the app or its requirements "
            "(check the name, or add the package that provides it to requirements)",
            "hidden_imports")
    declared = set(options.collect_data) | set(options.collect_all)
    not_packages = [m for m in _NOT_A_PACKAGE.findall(out) if m in declared]
    if not_packages:
        option = "collect_data" if not_packages[0] in options.collect_data else "collect_all"
        raise FreezeOptionError(
            f"{', '.join(map(repr, not_packages))}: not a package of the app or its "
            "requirements, so it has no data to collect", option)


def _keep_log(cache_dir: Path, key: str, proc: "subprocess.CompletedProcess[str]") -> Path | None:
    """Save a failed run's whole output under ``cache_dir/logs``; None if that fails."""
    path = cache_dir / "logs" / f"{key[:16]}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_output(proc), encoding="utf-8")
    except OSError:
        return None
    return path


def _tail(text: str) -> str:
    lines = text.rstrip().splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join("  | " + line for line in lines)


def _output(proc: "subprocess.CompletedProcess[str]") -> str:
    return (proc.stdout or "") + (proc.stderr or "")


# --- keys and helpers ------------------------------------------------------------------

def _run(runner: Runner, cmd: Sequence[str], *, env: dict[str, str],
         cwd: Path | None = None) -> "subprocess.CompletedProcess[str]":
    try:
        return runner(list(cmd), cwd=cwd, env=env, stdout=subprocess.PIPE,
                      stderr=subprocess.STDOUT, text=True, check=False)
    except OSError as e:
        raise FreezeError(f"cannot run {cmd[0]}: {e}") from e


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
    proc = _run(runner, [python, "-c", probe], env=_build_env(0))
    if proc.returncode != 0:
        raise FreezeError(f"cannot run the build interpreter {python}:\n{_tail(_output(proc))}")
    return (proc.stdout or "").strip()


def _options_for_key(options: PyInstallerOptions) -> dict[str, Any]:
    return {"entry": options.entry.name, "args": pyinstaller_args(options),
            "strip": options.strip and options.mode == "onedir"}


def _file_digest(path: Path | None) -> str | None:
    if path is None:
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _source_files(options: PyInstallerOptions) -> tuple[list[Path], list[Path]]:
    """What PyInstaller may read: (files in the app's folder, files outside it).

    Inside: the Python modules, every file of the app's own packages (directories
    with an ``__init__.py``, and everything below them: the data ``collect_data``
    and ``collect_all`` gather), the entry, and whatever ``extra_args`` name there
    (``--add-data data:data``); these are copied to the scratch dir. Outside: what
    ``extra_args`` name by absolute path; PyInstaller reads those in place. Other
    files of the folder (a model, a built image tarball, the manifest) are neither
    hashed nor copied, so changing them does not rerun PyInstaller.
    """
    src = options.entry.parent.resolve()
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


def _tree_digest(options: PyInstallerOptions) -> str:
    inside, outside = _source_files(options)
    src = options.entry.parent.resolve()
    h = hashlib.sha256()
    for path in inside + outside:
        name = path.relative_to(src).as_posix() if path in inside else str(path)
        h.update(f"{name}\0{_file_digest(path)}\0".encode())
    return h.hexdigest()


def _copy_sources(options: PyInstallerOptions, dst: Path) -> None:
    src = options.entry.parent.resolve()
    for path in _source_files(options)[0]:
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


def _publish(tmp: Path, final: Path) -> None:
    """Rename a finished ``tmp`` to ``final``; if another build won the race, keep theirs."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():
            raise


def _check_inputs(options: PyInstallerOptions) -> None:
    if options.mode not in MODES:
        raise InputError(f"pyinstaller mode must be one of {', '.join(MODES)}, not {options.mode!r}")
    if not options.entry.is_file():
        raise InputError(f"pyinstaller entry {options.entry} does not exist")
    if options.requirements is not None and not options.requirements.is_file():
        raise InputError(f"requirements file {options.requirements} does not exist")
