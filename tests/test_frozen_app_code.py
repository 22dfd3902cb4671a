"""The app's own code in a split frozen app behaves as it does under ``python entry.py``.

Pure cases check the scan and the bundle's entries directly; the end-to-end case
freezes one small app (its own package, an entry in a subfolder, a dependency reached
only through a submodule, process pools of every start method without
``freeze_support()``, ``--add-data``, a ``files:`` layer) once for
the module and runs it under runc.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from builder.layers.entries import Kind
from builder.sources.app_code import added_data_names, scan_app
from builder.sources.launcher import launcher_source
from builder.sources.pyinstaller import FrozenApp, bundle_entries
from helpers import build_json, cli, write
from runtime import prepare_bundle, runc_run, runc_start_detached, runc_stop, unpack


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


# -- end to end: a small app with a package of its own, under runc ----------------------

_APP_FILES = {
    "requirements.txt": "requests\npyyaml\n",
    "data/extra.txt": "from a files layer\n",
    "src/templates/index.html": "<h1>hello</h1>\n",
    "src/server.py": """
        import os
        import sys
        from typing import TYPE_CHECKING
        import myapp.sub.deep as deep
        if TYPE_CHECKING:
            from not_installed_anywhere import Thing
        from myapp.server import main

        class Money:
            import decimal
            ONE = decimal.Decimal("1.5")

        def cube(x):
            return x ** 3

        if __name__ == "__main__":  # no multiprocessing.freeze_support(): the launcher calls it
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            here = os.path.dirname(__file__)
            print("argv", os.path.basename(sys.argv[0]), sys.argv[1:])
            print("file", __file__)
            print("deep", deep.VALUE, Money.ONE)
            print("template", open(os.path.join(here, "templates", "index.html")).read().strip())
            main()
            for method in ("spawn", "forkserver"):
                context = multiprocessing.get_context(method)
                with ProcessPoolExecutor(2, mp_context=context) as pool:
                    print(method, sorted(pool.map(cube, [2, 3])))
    """,
    "src/myapp/__init__.py": "from . import util\n",
    "src/myapp/util.py": """
        from requests.adapters import HTTPAdapter
        def helper():
            return HTTPAdapter.__name__
    """,
    "src/myapp/work.py": "def square(x):\n    return x * x\n",
    "src/myapp/data/greeting.txt": "package data\n",
    "src/myapp/sub/__init__.py": "",
    "src/myapp/sub/deep.py": """
        from ..util import helper
        from yaml import *
        VALUE = helper() + " " + safe_dump({"k": 1}).strip()
    """,
    "src/myapp/server.py": """
        import importlib.resources
        import multiprocessing
        import os
        from concurrent.futures import ProcessPoolExecutor
        from .work import square

        def main():
            here = os.path.dirname(__file__)
            print("resources", importlib.resources.files("myapp").joinpath(
                "data/greeting.txt").read_text().strip())
            print("dirname", open(os.path.join(here, "data", "greeting.txt")).read().strip())
            print("dynamic", __import__("json").dumps([1]))
            with ProcessPoolExecutor(2) as pool:
                print("fork", sorted(pool.map(square, [1, 2, 3])))
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(2, mp_context=spawn) as pool:
                print("spawn", sorted(pool.map(square, [4, 5])))
            print("files", open("/app/data/extra.txt").read().strip())
            print("version 1")
    """,
    "ocibuild.yaml": """
        image: test/own-package:1
        platform: linux/amd64
        base: scratch
        libraries: {from: host}
        layers:
          - name: app
            pyinstaller:
              entry: src/server.py
              requirements: requirements.txt
              extra_args: ["--add-data", "templates:templates"]
            dest: /app
          - name: data
            files:
              - {src: data/extra.txt, dest: /app/data/extra.txt}
        config:
          entrypoint: ["/app/server", "one", "--flag"]
          env: {PYTHONUNBUFFERED: "1"}
    """,
}

_EXPECTED = [
    "argv server ['one', '--flag']",
    "file /app/_app/server.py",
    "deep HTTPAdapter k: 1 1.5",
    "template <h1>hello</h1>",
    "resources package data",
    "dirname package data",
    "dynamic [1]",
    "fork [1, 4, 9]",
    "spawn [16, 25]",
    "files from a files layer",
    "version 1",
    "spawn [8, 27]",
    "forkserver [8, 27]",
]


def _bundle(image: Path, work: Path) -> Path:
    bundle = unpack(image, work)
    config = prepare_bundle(bundle, readonly=True, host_network=False)
    # a read-only root with a tmpfs /tmp (docker run --read-only --tmpfs /tmp): the
    # forkserver's socket lives there
    config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                             "options": ["nosuid", "nodev", "mode=1777"]})
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def _run_image(image: Path, work: Path) -> list[str]:
    done = runc_run(_bundle(image, work), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


@pytest.fixture(scope="module")
def own_package_app(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The app above, built once for the module: its folder, cache and first image."""
    root = tmp_path_factory.mktemp("own-package")
    for rel, text in _APP_FILES.items():
        write(root / rel, text)
    cache = root / "cache"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli("build", root / "ocibuild.yaml", "-o", root / "v1.tar", "--json",
                   "--cache-dir", cache)[0]
    assert code == 0, err.getvalue()
    return {"root": root, "cache": cache, "summary": json.loads(out.getvalue())}


@pytest.mark.slow
def test_an_app_with_its_own_package_runs_split_as_it_runs_under_python(
        own_package_app: dict, tmp_path: Path) -> None:
    names = [layer["name"] for layer in own_package_app["summary"]["layers"]]
    assert names[:4] == ["app:python", "app:packages", "app:stdlib", "app:modules"]
    assert _run_image(own_package_app["root"] / "v1.tar", tmp_path) == _EXPECTED


@pytest.mark.slow
def test_a_body_edit_in_a_submodule_rebuilds_only_the_code_and_runs(
        own_package_app: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = own_package_app["root"]
    module = root / "src/myapp/server.py"
    module.write_text(module.read_text().replace('"version 1"', '"version 2"'))
    summary, log = build_json(root / "ocibuild.yaml", tmp_path / "v2.tar",
                              own_package_app["cache"], capsys)
    assert "freezing" not in log
    before = {layer["name"]: layer["digest"] for layer in own_package_app["summary"]["layers"]}
    changed = {layer["name"] for layer in summary["layers"]
               if layer["digest"] != before[layer["name"]]}
    assert changed == {"app"}
    assert "version 2" in _run_image(tmp_path / "v2.tar", tmp_path / "run")


def test_only_an_app_that_uses_process_pools_gets_their_worker_entry() -> None:
    """The launcher serves spawn/forkserver workers (freeze_support) before the entry
    runs, for apps that import multiprocessing or concurrent.futures; others' bundles
    do not grow by multiprocessing."""
    plain = launcher_source("app.py", ("import os",))
    pooled = launcher_source("app.py", ("from concurrent.futures import ProcessPoolExecutor",))
    assert "multiprocessing" not in plain
    serve = pooled.index("multiprocessing.freeze_support()")
    assert pooled.index("sys.path.insert(0, _APP)") < serve < pooled.index("exec(_code")
    assert "freeze_support" in launcher_source("app.py", ("import multiprocessing.pool",))


def test_a_folder_named_like_a_stdlib_package_is_not_the_apps_unless_a_package(
        tmp_path: Path) -> None:
    """Python imports the standard library's ``http`` over an ``http/`` folder without
    ``__init__.py`` beside the script, so its imports stay in the import set (else the
    bundle would lack ``http.server``); a regular package of that name is the app's."""
    write(tmp_path / "app.py", "import http.server\nimport email.utils\nimport handlers.api\n")
    write(tmp_path / "http/routes.py", "x = 1\n")
    write(tmp_path / "email/__init__.py", "")
    write(tmp_path / "handlers/api.py", "import json\n")  # a namespace package of the app's
    app = scan_app(tmp_path / "app.py")
    assert app.imports == ("import http.server", "import json")
    assert app.files == ("app.py", "email/__init__.py", "handlers/api.py")


@pytest.mark.slow
def test_onefile_on_scratch_gets_what_its_packed_libpython_loads_and_stops_on_sigterm(
        own_package_app: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The libraries inside a onefile executable are not image files, yet libpython
    needs glibc's libm: the closure takes it from the host, and the app starts (in a
    tmpfs /tmp, where it unpacks) and ends on SIGTERM, its atexit handler run."""
    root = own_package_app["root"]
    write(root / "src/loop.py", """
        import atexit, time
        atexit.register(lambda: print("atexit ran", flush=True))
        print("started", flush=True)
        while True:
            time.sleep(0.1)
    """)
    write(root / "onefile.yaml", """
        image: test/onefile:1
        platform: linux/amd64
        base: scratch
        libraries: {from: host}
        layers:
          - name: app
            pyinstaller: {entry: src/loop.py, requirements: requirements.txt, mode: onefile}
            dest: /app
        config:
          entrypoint: ["/app/loop"]
    """)
    build_json(root / "onefile.yaml", tmp_path / "onefile.tar", own_package_app["cache"], capsys)
    bundle = _bundle(tmp_path / "onefile.tar", tmp_path)
    log = tmp_path / "container.log"
    cid, proc = runc_start_detached(bundle, log)
    try:
        deadline = time.monotonic() + 60
        while b"started" not in log.read_bytes() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        assert proc.poll() is None, log.read_text(errors="replace")
        subprocess.run(["runc", "kill", cid, "TERM"], check=True, capture_output=True)
        assert proc.wait(timeout=10) == 143
    finally:
        runc_stop(cid, proc)
    assert log.read_text().splitlines() == ["started", "atexit ran"]
