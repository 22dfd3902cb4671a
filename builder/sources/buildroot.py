"""Hermetic build roots: a directory tree assembled from locked Debian packages of the
target architecture, and a runner that runs commands inside it.

A ``pyinstaller:`` layer with ``build_root: python-build.yaml`` (a base definition,
:mod:`.debian`) is frozen by the root's own Python, pip, ``ldd`` and ``strip``; the
build host's Python and libraries are never used, so the bundle depends only on the
lock, the wheels and the app. The freeze is connected through its two seams:
``PyInstallerOptions.python`` (the root's interpreter) and ``runner``.

How a command runs: ``bwrap`` (bubblewrap) mounts the root read-only as ``/``, with
``/proc``, ``/dev``, a fresh ``/tmp`` and, at their own paths, the few host paths the
freeze names (the freeze cache, the app's folder, the requirements file, pip's
configuration, cache and local indexes, ``/etc/resolv.conf``). The network namespace
is shared, so pip reaches the index the host's pip configuration names.

Privileges:

* **native** (the root's architecture is the host's): none beyond an unprivileged user
  namespace, which ``bwrap`` makes (Debian and Fedora allow them; Ubuntu 24.04's
  AppArmor restriction needs ``bwrap`` allowed), or root;
* **foreign** (arm64 on amd64): the same, plus a ``binfmt_misc`` handler for the
  architecture registered with the ``F`` flag (``qemu-user-static`` +
  ``binfmt-support``; registering needs root once, running does not).

Without ``bwrap``, or without the handler, the freeze fails with an error naming the
package to install.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..errors import FreezeError
from ..layers.build import layer_cache_key
from ..layers.entries import Entry, Kind

Runner = Callable[..., "subprocess.CompletedProcess[str]"]

BUILD_ROOT_FORMAT = 1
"""Bumped when a materialized root for the same lock would differ."""

QEMU_MACHINES = {"arm64": "aarch64", "amd64": "x86_64", "arm": "arm", "ppc64le": "ppc64le",
                 "s390x": "s390x", "riscv64": "riscv64", "386": "i386"}
"""Debian architecture → the name of its ``qemu-<name>`` binfmt_misc handler."""

def _default_definition() -> Path:
    """The checkout's ``base_images/python-build.yaml`` (an editable install), else the
    copy a wheel installs under ``<prefix>/share/ocibuild/base_images/``."""
    checkout = Path(__file__).resolve().parents[2] / "base_images" / "python-build.yaml"
    installed = Path(sys.prefix) / "share" / "ocibuild" / "base_images" / "python-build.yaml"
    return checkout if checkout.is_file() or not installed.is_file() else installed


DEFAULT_DEFINITION = _default_definition()
"""The build root a ``pyinstaller:`` layer freezes in when its manifest names none:
Debian's Python 3.11 and what pip and PyInstaller need, locked per architecture."""
HOST = "host"
"""``build_root: host``: freeze with the Python running ocibuild, as before build roots."""

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")

PIP_CONFIG_FILES = ("/etc/pip.conf", "/etc/xdg/pip", "~/.config/pip", "~/.pip")
HOST_FILES = ("/etc/resolv.conf", "/etc/hosts")
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class BuildRoot:
    """A build root: where it is (or will be), what it is for, and its identity."""

    path: Path
    architecture: str
    key: str
    """The lock's and definition's content and the architecture: equal keys, equal roots."""
    python: str
    """The interpreter inside the root (an absolute path there)."""
    definition: Path | None = None
    """The base definition it is made from (None: made by hand, e.g. by a test)."""

    @property
    def made(self) -> bool:
        return (self.path / ".complete").exists()


def locate(definition_path: Path, architecture: str, cache_dir: Path) -> BuildRoot:
    """The build root ``definition_path`` describes for ``architecture``: its key, its
    place under ``cache_dir/buildroot/`` and its interpreter, known from the definition
    and the lock alone (nothing is downloaded or made: a build whose frozen layers all
    come from a cache never needs the root itself). Remembered while neither file
    changes: a build asks several times."""
    stamps = tuple((s.st_mtime_ns, s.st_ctime_ns, s.st_size, s.st_ino) for s in (
        os.stat(f) for f in (definition_path, _lock_path(definition_path)) if os.path.exists(f)))
    return _locate(Path(definition_path), architecture, Path(cache_dir), stamps)


def _lock_path(definition_path: Path) -> Path:
    """Where a definition's lock is (as ``BaseDefinition.lock_path`` says)."""
    path = Path(definition_path)
    return path.with_name(f"{path.stem}.lock.json")


@functools.lru_cache(maxsize=32)
def _locate(definition_path: Path, architecture: str, cache_dir: Path,
            stamps: tuple[tuple[int, int, int, int], ...]) -> BuildRoot:
    from .debian import load_base_definition
    from .debian.base import load_lock

    definition = load_base_definition(definition_path)
    if architecture not in definition.all_architectures:
        raise FreezeError(f"build root {definition_path.name} is for "
                          f"{', '.join(definition.all_architectures)}, not {architecture}")
    definition = definition.for_architecture(architecture)
    lock = load_lock(definition)
    key = layer_cache_key("build-root", BUILD_ROOT_FORMAT, definition.lock_path.read_bytes(),
                          definition_path.read_bytes(), architecture)
    return BuildRoot(cache_dir / "buildroot" / key, architecture, key,
                     _interpreter(definition_path, [p.name for p in lock.packages]),
                     definition_path)


def _interpreter(definition_path: Path, packages: Sequence[str]) -> str:
    """The root's Python, named by the package that ships it: ``python3.N`` (or
    ``python3.N-minimal``) gives ``/usr/bin/python3.N``, the newest if several."""
    versions = sorted(int(m.group(1)) for m in (re.fullmatch(r"python3\.(\d+)(?:-minimal)?", n)
                                                for n in packages) if m)
    if versions:
        return f"/usr/bin/python3.{versions[-1]}"
    if "python3" in packages:
        return "/usr/bin/python3"
    raise FreezeError(f"build root {definition_path.name} has no Python: add python3 (and "
                      "python3-venv) to its packages")


def assemble(definition_path: Path, architecture: str, cache_dir: Path,
             log: Any = lambda message: None) -> BuildRoot:
    """The build root ``definition_path`` describes for ``architecture``, made if it is
    not yet (:func:`ensure`)."""
    root = locate(definition_path, architecture, cache_dir)
    ensure(root, cache_dir, log)
    return root


def ensure(root: BuildRoot, cache_dir: Path, log: Any = lambda message: None) -> None:
    """Make ``root`` unless it is made: its locked packages materialized once per lock
    (written to a temp dir and renamed), then the root's own ``ldconfig``."""
    from .debian import base_entries, load_base_definition
    from .debian.base import load_lock

    host_can_run(root.architecture)
    if not root.made:
        assert root.definition is not None, "a build root made by hand must exist"
        definition = load_base_definition(root.definition).for_architecture(root.architecture)
        lock = load_lock(definition)
        log(f"build root: {definition.name} for {root.architecture} "
            f"({len(lock.packages)} locked packages)")
        root.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.key[:12]}.", dir=root.path.parent))
        try:
            materialize(base_entries(definition, lock, cache_dir), tmp)
            # What libc-bin's postinst does: /etc/ld.so.cache, which ldconfig -p (and
            # so PyInstaller's library lookup) reads; made by the root's own ldconfig.
            made = RootRunner(replace(root, path=tmp), writable=True)(
                ["/sbin/ldconfig"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, check=False)
            if made.returncode != 0:
                raise FreezeError(f"build root {definition.name}: ldconfig failed: "
                                  f"{made.stdout.strip()[-2000:]}")
            (tmp / ".complete").touch()
            try:
                os.replace(tmp, root.path)
            except OSError as e:
                if not root.made:  # not another build that made it meanwhile
                    raise FreezeError(f"build root {definition.name}: cannot put it in "
                                      f"place at {root.path}: {e}") from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if not (root.path / root.python.lstrip("/")).exists():
        raise FreezeError(f"build root {root.path.name[:12]}: {root.python} is missing "
                          "(its package list names a Python whose binary is not there)")


def materialize(entries: Iterable[Entry], dest: Path) -> None:
    """Write layer entries out as a directory tree (owners not kept; no setuid bits).

    The entries are those of a base layer, already checked to stay inside ``/``; nothing
    is written through a symlink that leads out of ``dest`` (an absolute one would lead
    into the host's own tree).
    """
    dirs: list[tuple[Path, int]] = []
    top = os.path.realpath(dest)
    for e in entries:
        target = dest / e.path.lstrip("/")
        parent = os.path.realpath(target.parent)
        if parent != top and not parent.startswith(top + os.sep):
            raise FreezeError(f"build root: {e.path} would be written through a symlink "
                              f"that leads outside the root ({parent})")
        if e.kind is Kind.DIR:
            target.mkdir(parents=True, exist_ok=True)
            dirs.append((target, e.mode & 0o1777))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if e.kind is Kind.SYMLINK:
            os.symlink(e.target, target)
        elif e.kind is Kind.HARDLINK:
            os.link(dest / e.target.lstrip("/"), target)
        else:
            assert e.opener is not None
            with e.opener() as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.chmod(target, e.mode & 0o777)
    for directory, mode in reversed(dirs):
        os.chmod(directory, mode | 0o700)


def host_can_run(architecture: str) -> None:
    """Raise unless this host can run ``architecture`` programs (natively, or through a
    qemu-user binfmt_misc handler)."""
    from ..platforms import host_architecture

    if architecture == host_architecture():
        return
    machine = QEMU_MACHINES.get(architecture, architecture)
    handler = BINFMT_DIR / f"qemu-{machine}"
    try:
        enabled = handler.read_text().splitlines()[:1] == ["enabled"]
    except OSError:
        enabled = False
    if not enabled:
        raise FreezeError(
            f"this {host_architecture()} host cannot run {architecture} programs: no "
            f"binfmt_misc handler {handler} (install qemu-user-static and binfmt-support: "
            f"apt-get install qemu-user-static binfmt-support)")


def freeze_setup(options: Any, architecture: str, cache_dir: Path, runner: Runner,
                 log: Any = lambda message: None) -> tuple[Any, Runner]:
    """The options and runner a ``pyinstaller:`` layer freezes with: unchanged without a
    ``build_root``; else the root's interpreter, its key, and ``runner`` moved inside it.
    The root is made when the runner first runs something, so a freeze found in a cache
    never makes it."""
    if options.build_root is None:
        return options, runner
    root = locate(options.build_root, architecture, cache_dir)
    ro = [options.entry.parent] + ([options.requirements.parent] if options.requirements
                                   else [])
    inside = RootRunner(root, rw=[cache_dir / "pyinstaller"], ro=ro, inner=runner,
                        prepare=lambda: ensure(root, cache_dir, log))
    return replace(options, python=root.python, environment=root.key), inside


class RootRunner:
    """Runs commands inside a :class:`BuildRoot`, shaped like :func:`subprocess.run`.

    ``rw`` and ``ro`` are host paths made visible at the same path (read-write, or
    read-only); everything else comes from the root. The ``bwrap`` command line goes to
    ``inner`` (:func:`subprocess.run`, or a runner that shows progress).
    """

    def __init__(self, root: BuildRoot, *, rw: Sequence[Path] = (), ro: Sequence[Path] = (),
                 bwrap: str | None = None, inner: Runner = subprocess.run,
                 writable: bool = False, prepare: Callable[[], None] | None = None) -> None:
        self.root = root
        self.inner = inner
        self.prepare = prepare  # makes the root, before the first command
        self.writable = writable  # only while a root is assembled
        self._bwrap, self._rw, self._ro = bwrap, list(rw), list(ro)
        self.bwrap: str | None = None  # checked and found when first needed: a build whose
        self.rw: list[Path] = []       # freeze comes from a cache needs neither bwrap nor
        self.ro: list[Path] = []       # qemu, nor the host's pip configuration

    def _ready(self) -> None:
        if self.bwrap is not None:
            return
        bwrap = self._bwrap or shutil.which("bwrap")
        if bwrap is None:
            raise FreezeError("a hermetic build root runs its commands with bwrap, which is "
                              "not installed (apt-get install bubblewrap)")
        host_can_run(self.root.architecture)
        for path in self._rw:
            Path(path).mkdir(parents=True, exist_ok=True)
        self.rw = _existing([*self._rw, *pip_cache()])
        self.ro = [p for p in _existing([*self._ro, *host_pip_paths(), *map(Path, HOST_FILES)])
                   if not any(p == w or w in p.parents for w in self.rw)]
        self.bwrap = bwrap

    def command(self, cmd: Sequence[str], cwd: str | os.PathLike[str] | None = None) -> list[str]:
        """The ``bwrap`` command line that runs ``cmd`` in the root."""
        self._ready()
        args = [self.bwrap, "--bind" if self.writable else "--ro-bind", str(self.root.path), "/",
                "--proc", "/proc",
                "--dev", "/dev", "--tmpfs", "/tmp", "--die-with-parent"]
        binds = sorted([(p, "--bind") for p in self.rw] + [(p, "--ro-bind") for p in self.ro],
                       key=lambda b: len(b[0].parts))
        for path, flag in binds:
            self._mountpoint(path)
            args += [flag, str(path), str(path)]
        if cwd is not None:
            args += ["--chdir", str(cwd)]
        return [*args, "--", *cmd]

    def __call__(self, cmd: Sequence[str], *, cwd: Any = None, env: dict[str, str] | None = None,
                 **kwargs: Any) -> "subprocess.CompletedProcess[str]":
        self._ready()
        if self.prepare is not None:
            self.prepare()
            self.prepare = None
        env = dict(os.environ if env is None else env)
        env["PATH"] = ROOT_PATH  # the root's programs, never the host's
        done = self.inner(self.command(cmd, cwd), env=env, **kwargs)
        said = done.stdout if isinstance(done.stdout, str) else ""
        if done.returncode != 0 and said.startswith("bwrap:"):
            raise FreezeError(_bwrap_refused(said.splitlines()[0], cmd[0]))
        return done

    def _mountpoint(self, path: Path) -> None:
        """A host path under ``/tmp`` lands on bwrap's tmpfs; elsewhere the read-only
        root needs an (empty) file or directory to mount it on."""
        if path.parts[:2] == ("/", "tmp"):
            return
        inside = self.root.path / str(path).lstrip("/")
        if inside.exists() or inside.is_symlink():
            return
        if path.is_dir():
            inside.mkdir(parents=True, exist_ok=True)
        else:
            inside.parent.mkdir(parents=True, exist_ok=True)
            inside.touch()


def _bwrap_refused(line: str, program: str) -> str:
    """What to do when bwrap itself failed (it speaks before the program could)."""
    why = f"bwrap could not start {program} in the build root: {line.strip()[:300]}"
    if any(w in line for w in ("namespace", "uid map", "Operation not permitted",
                               "Permission denied")):
        return (why + " (this host does not let unprivileged users create user namespaces:"
                " allow them, e.g. sysctl kernel.unprivileged_userns_clone=1 or an AppArmor "
                "profile for bwrap, run as root, or freeze with the host's Python: "
                "build_root: host)")
    return why


def host_pip_paths() -> list[Path]:
    """pip's configuration files and what they (and ``PIP_*`` variables) name on disk:
    local indexes, find-links, certificates, constraints, the download cache."""
    found: list[Path] = []
    for name in PIP_CONFIG_FILES:
        path = Path(os.path.expanduser(name))
        if path.exists():
            found.append(path)
    texts = [v for k, v in os.environ.items() if k.startswith("PIP_")]
    for path in list(found):
        files = path.rglob("*") if path.is_dir() else [path]
        for f in files:
            if f.is_file():
                try:
                    texts.append(f.read_text(encoding="utf-8", errors="replace"))
                except OSError:
                    pass
    for text in texts:
        for word in text.replace("=", " ").replace("'", " ").replace('"', " ").split():
            word = word.removeprefix("file://").rstrip("/")
            if word.startswith("/") and Path(word).exists():
                # a local index's pages link to files beside simple/ (../../files/…)
                found.append(Path(word).parent if Path(word).name == "simple" else Path(word))
    return found


def pip_cache() -> list[Path]:
    """pip's download cache, shared with the host's pip (wheels are checked by hash)."""
    cache = Path(os.environ.get("PIP_CACHE_DIR") or os.path.expanduser("~/.cache/pip"))
    return [cache] if cache.is_dir() else []


def _existing(paths: Iterable[Path]) -> list[Path]:
    """Absolute, existing, each once, none inside another of them."""
    out: list[Path] = []
    for p in sorted({Path(os.path.abspath(p)) for p in paths if Path(p).exists()},
                    key=lambda p: len(p.parts)):
        if not any(p == q or q in p.parents for q in out):
            out.append(p)
    return out
