"""The app's own code in a split frozen app behaves as it does under ``python entry.py``.

Pure cases check the scan and the bundle's entries directly; the end-to-end case
freezes one small app (its own package, an entry in a subfolder, a dependency reached
only through a submodule, process pools, ``--add-data``, a ``files:`` layer) once for
the module and runs it under runc.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from builder.layers.entries import Kind
from builder.sources.app_code import added_data_names, scan_app
from builder.sources.pyinstaller import FrozenApp, bundle_entries
from helpers import write


def test_add_data_names_are_the_top_level_names_it_creates(tmp_path: Path) -> None:
    write(tmp_path / "static/a.css", "a")
    write(tmp_path / "static/js/b.js", "b")
    write(tmp_path / "config.yaml", "c: 1")
    args = ("--add-data", "templates:templates", "--add-data=static:web/static",
            "--add-binary", "config.yaml:.", "--add-data", "static:.", "--paths", "../lib",
            "--add-data")
    assert added_data_names(args, tmp_path) == ("a.css", "config.yaml", "js", "templates",
                                                "web")


def test_add_data_beside_the_entry_is_reached_from_its_file(tmp_path: Path) -> None:
    """PyInstaller put the entry (``__file__``) in ``_internal/`` beside what
    ``--add-data`` adds; the split bundle runs it from ``_app/``, so it links those names
    there (an own file of the same name wins)."""
    write(tmp_path / "src/app.py", "import mypkg\n")
    write(tmp_path / "src/mypkg/__init__.py", "")
    write(tmp_path / "src/mypkg/data.txt", "own")
    dist = tmp_path / "dist"
    write(dist / "_internal/templates/index.html", "<h1>")
    write(dist / "_internal/mypkg/data.txt", "added by --add-data mypkg/data.txt:mypkg")
    write(dist / "app", "exe")
    app = replace(scan_app(tmp_path / "src/app.py"),
                  data_names=("mypkg", "not-there", "templates"))
    entries = bundle_entries(FrozenApp(dist, "app", True, "k", ("_internal",), app), "/app")
    links = {e.path: e.target for e in entries if e.kind is Kind.SYMLINK}
    assert links == {"/app/_app/templates": "../_internal/templates"}
    assert {"/app/_app/mypkg/data.txt", "/app/_app/app.py"} <= {e.path for e in entries}
