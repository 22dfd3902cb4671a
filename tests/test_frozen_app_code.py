"""The app's own code in a split frozen app behaves as it does under ``python entry.py``.

Pure cases check the scan and the bundle's entries directly; the end-to-end case
freezes one small app (its own package, an entry in a subfolder, a dependency reached
only through a submodule, process pools, ``--add-data``, a ``files:`` layer) once for
the module and runs it under runc.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from builder.layers.entries import Kind
from builder.sources.app_code import added_data_names, scan_app
from builder.sources.launcher import launcher_source
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


def test_the_launcher_runs_the_entry_as_main_keeping_argv_and_main(tmp_path: Path) -> None:
    """Run the launcher with a Python that sits where the executable would: the entry
    sees ``sys.argv`` as given (a frozen app's argv[0] is its executable), ``__file__`` in
    ``_app/``, and a thread that outlives the entry still pickles by ``__main__``."""
    write(tmp_path / "_app/main.py", """
        import pickle, sys, threading
        def answer():
            return 42
        print(__name__, __file__, sys.argv)
        def later():
            threading.Event().wait(0.2)
            print("thread", pickle.loads(pickle.dumps(answer))())
        threading.Thread(target=later).start()
    """)
    (tmp_path / "app").symlink_to(os.path.realpath(sys.executable))
    (tmp_path / "launcher.py").write_text(launcher_source("main.py", ("import pickle",)))
    done = subprocess.run([str(tmp_path / "app"), str(tmp_path / "launcher.py"), "--port", "1"],
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"__main__ {tmp_path}/_app/main.py {[str(tmp_path / 'launcher.py'), '--port', '1']}",
        "thread 42"]
