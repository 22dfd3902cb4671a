"""The app's own code, apart from its dependencies: what a split freeze ships and keys.

A frozen app is two things that change at very different rates: its dependencies
(the interpreter, numpy, scipy …: what PyInstaller's analysis collects) and its own
modules (changed by every commit). :func:`scan_app` reads the app's own code with
:mod:`ast` — no process, no import — and says

* which of its files are the app's own code, reachable from the entry: the modules
  it imports from its folder, and its packages whole (data included);
* the *import set*: every ``import`` statement of that code that names a module
  outside it (the standard library and the requirements), normalized and sorted.

The import set is all PyInstaller's analysis needs to know of the app, so the
dependency freeze is keyed by it and re-runs only when it changes; the app's own
files become a small layer of their own. What the scan cannot see — a module
imported by a computed name — PyInstaller cannot see either: such names belong in
``hidden_imports`` (the scan warns where it finds one).
"""

from __future__ import annotations

import ast
import glob
import os
import posixpath
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

SKIP_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".tox", ".venv", "venv", "build",
                       "dist", ".mypy_cache", ".pytest_cache", "node_modules"})
"""Folders never shipped as app code, even inside a package."""

_EXTENSION_SUFFIXES = (".so",)


@dataclass(frozen=True)
class AppCode:
    """The app's own code, as :func:`scan_app` found it.

    ``root``: the entry's folder (where the app's modules live). ``files``: the
    app's own files, relative to ``root`` (POSIX, sorted). ``imports``: the import
    statements that leave the app's code (``import os``, ``from flask import
    Flask, request``), sorted and unique. ``own``: the top-level names that are
    the app's (its modules and packages). ``warnings``: imports the scan cannot
    follow (computed names), with file and line.
    """

    root: Path
    entry: str
    files: tuple[str, ...]
    imports: tuple[str, ...]
    own: frozenset[str]
    warnings: tuple[str, ...] = ()
    data_names: tuple[str, ...] = ()
    """What ``--add-data`` puts at the top of ``_internal/`` (:func:`added_data_names`)."""


def scan_app(entry: Path, extra_roots: tuple[str, ...] = ()) -> AppCode:
    """Scan the app whose main script is ``entry``.

    ``extra_roots`` are module names that are roots too (``hidden_imports`` that
    name the app's own modules, for code it loads by a computed name). Raises
    :class:`InputError` for own code that does not parse (PyInstaller would fail
    on it too), naming the file and line.
    """
    root = entry.parent.resolve()
    scanner = _Scanner(root)
    scanner.own.add(entry.stem)
    scanner.add_file(entry.resolve())
    for name in extra_roots:
        scanner.add_module(name)
    scanner.run()
    return AppCode(root=root, entry=entry.resolve().relative_to(root).as_posix(),
                   files=tuple(sorted(scanner.files)),
                   imports=tuple(sorted(scanner.imports)),
                   own=frozenset(scanner.own), warnings=tuple(scanner.warnings))


def added_data_names(extra_args: tuple[str, ...], root: Path) -> tuple[str, ...]:
    """The top-level names under ``_internal/`` that ``--add-data``/``--add-binary``
    in ``extra_args`` create (relative sources are relative to ``root``), sorted.

    A frozen entry's ``__file__`` used to lie in ``_internal/``, so code reads such
    data beside it (``os.path.dirname(__file__)``, Flask's ``templates/``); a split
    bundle links these names into ``_app/`` so that keeps working.
    """
    names: set[str] = set()
    args = list(extra_args)
    for i, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        if flag not in ("--add-data", "--add-binary"):
            continue
        if not eq:
            if i + 1 >= len(args):
                continue
            value = args[i + 1]
        source, sep, dest = value.rpartition(":")
        if not sep:
            continue
        dest = posixpath.normpath(dest.replace(os.sep, "/")).lstrip("/")
        if dest not in ("", "."):
            names.add(dest.split("/", 1)[0])
            continue
        for match in sorted(glob.glob(str(root / source))):  # DEST "." copies into the root
            found = Path(match)
            names.update(c.name for c in found.iterdir()) if found.is_dir() \
                else names.add(found.name)
    return tuple(sorted(n for n in names if n not in ("", ".", "..")))


def own_top_level(root: Path, name: str) -> Path | None:
    """The file or package dir of top-level module ``name`` in the app's folder, if any:
    ``name.py``, a package (or namespace package, unless the standard library has
    that name) ``name/``, or an extension module ``name.*.so``."""
    if not name.isidentifier():
        return None
    module = root / f"{name}.py"
    if module.is_file():
        return module
    package = root / name
    if package.is_dir() and package.name not in SKIP_DIRS and _has_python(package):
        if (package / "__init__.py").is_file() or name not in sys.stdlib_module_names:
            return package
        # a namespace portion loses to the standard library's module of that name,
        # wherever that lies on sys.path: `import http.server` beside an `http/` folder
    for candidate in sorted(root.glob(f"{name}.*")):
        if candidate.is_file() and candidate.name.endswith(_EXTENSION_SUFFIXES):
            return candidate
    return None


# -- the scan -------------------------------------------------------------------------

def _has_python(directory: Path) -> bool:
    for _, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        if any(f.endswith((".py",) + _EXTENSION_SUFFIXES) for f in files):
            return True
    return False


class _Scanner:
    """A worklist over the app's own files: each Python file is parsed once, each
    top-level own name resolved once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: set[str] = set()
        self.imports: set[str] = set()
        self.own: set[str] = set()
        self.warnings: list[str] = []
        self._todo: list[Path] = []
        self._resolved: dict[str, bool] = {}
        self._from: dict[str, set[str]] = {}  # module -> names, merged into one statement

    def add_file(self, path: Path) -> None:
        rel = path.relative_to(self.root).as_posix()
        if rel not in self.files:
            self.files.add(rel)
            if path.suffix == ".py":
                self._todo.append(path)

    def add_module(self, dotted: str) -> bool:
        """Make the app's own module ``dotted`` (its top-level name) part of the app;
        False if the name is not the app's."""
        top = dotted.split(".", 1)[0]
        known = self._resolved.get(top)
        if known is not None:
            return known
        found = own_top_level(self.root, top)
        self._resolved[top] = found is not None
        if found is None:
            return False
        self.own.add(top)
        if found.is_dir():  # a package ships whole: its modules and its data
            for base, dirs, names in os.walk(found):
                dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS
                                 and not d.endswith(".egg-info"))
                for name in sorted(names):
                    if not name.endswith((".pyc", ".pyo")):
                        self.add_file(Path(base) / name)
        else:
            self.add_file(found)
        return True

    def run(self) -> None:
        while self._todo:
            self._scan(self._todo.pop())
        for module, names in self._from.items():
            self.imports.add(f"from {module} import {', '.join(sorted(names))}")

    def _scan(self, path: Path) -> None:
        rel = path.relative_to(self.root).as_posix()
        try:
            tree = ast.parse(path.read_bytes(), filename=rel)
        except SyntaxError as e:
            raise InputError(f"{path}:{e.lineno or 0}: the app's code does not parse: "
                             f"{e.msg}") from e
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: cannot read the app's code: {e}") from e
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if not self.add_module(alias.name):
                        self.imports.add(f"import {alias.name}")
            elif isinstance(node, ast.ImportFrom):
                self._import_from(node)
            elif isinstance(node, ast.Call):
                self._computed_import(node, rel)

    def _import_from(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module or node.module == "__future__":
            return  # relative: within the app's own package, which ships whole
        if self.add_module(node.module):
            return
        names = {alias.name for alias in node.names}
        if "*" in names:  # illegal in a function: the module itself says the same
            self.imports.add(f"import {node.module}")
            names.discard("*")
        if names:
            self._from.setdefault(node.module, set()).update(names)

    def _computed_import(self, node: ast.Call, rel: str) -> None:
        """``importlib.import_module("x")`` / ``__import__("x")``: a literal name is
        followed like an import; a computed one is reported."""
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name not in ("import_module", "__import__") or not node.args:
            return
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            dotted = arg.value
            if (dotted and all(part.isidentifier() for part in dotted.split("."))
                    and not self.add_module(dotted)):
                self.imports.add(f"import {dotted}")
        else:
            self.warnings.append(f"{rel}:{node.lineno}: imports a module by a computed name; "
                                 "declare it in hidden_imports if it is not found at run time")
