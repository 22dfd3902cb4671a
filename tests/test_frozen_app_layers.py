"""A frozen app is several layers: a code change reuses the dependencies byte for byte.

The scan of the app's own code and the bundle planner are pure and tested directly;
the end-to-end cases edit a copy of examples/iris against the session's iris cache
and run the result under runc.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from builder.errors import InputError
from builder.layers.entries import Entry, Kind
from builder.sources.app_code import scan_app
from builder.sources.bundle_plan import DIST_LAYER_MIN_BYTES, plan_bundle
from builder.sources.launcher import launcher_source
from conftest import copy_iris
from helpers import build_json, write
from runtime import prepare_bundle, runc_start_detached, runc_stop, unpack
from test_iris_freeze import SAMPLE, free_port, post_when_up


# -- the scan of the app's own code ---------------------------------------------------

def test_scan_follows_own_modules_and_ships_packages_whole(tmp_path: Path) -> None:
    write(tmp_path / "main.py", """
        import os, json as j
        from helpers import shout
        from mypkg.sub import thing
        from flask import Flask, request
        from flask import jsonify
        from numpy.linalg import *
        def later():
            import sqlite3
            import importlib
            importlib.import_module("yaml")
    """)
    write(tmp_path / "helpers.py", "import requests\n\ndef shout(x):\n    return x\n")
    write(tmp_path / "mypkg/__init__.py", "from . import sub\n")
    write(tmp_path / "mypkg/sub.py", "from .other import thing\nimport click\n")
    write(tmp_path / "mypkg/other.py", "thing = 1\n")
    write(tmp_path / "mypkg/data/table.csv", "a,b\n")
    write(tmp_path / "unused.py", "import pytest\n")  # not reached from main.py
    write(tmp_path / "mypkg/__pycache__/sub.cpython-311.pyc", "junk")
    app = scan_app(tmp_path / "main.py")
    assert app.entry == "main.py"
    assert app.files == ("helpers.py", "main.py", "mypkg/__init__.py", "mypkg/data/table.csv",
                         "mypkg/other.py", "mypkg/sub.py")
    assert app.imports == ("from flask import Flask, jsonify, request", "import click",
                           "import importlib", "import json", "import numpy.linalg",
                           "import os", "import requests", "import sqlite3", "import yaml")
    assert {"main", "helpers", "mypkg"} <= app.own


def test_scan_reports_imports_by_computed_name(tmp_path: Path) -> None:
    write(tmp_path / "app.py", "import importlib\nname = 'x'\nimportlib.import_module(name)\n")
    app = scan_app(tmp_path / "app.py")
    assert app.warnings == ("app.py:3: imports a module by a computed name; declare it in "
                            "hidden_imports if it is not found at run time",)


def test_own_modules_named_as_hidden_imports_are_part_of_the_app(tmp_path: Path) -> None:
    write(tmp_path / "app.py", "print('hi')\n")
    write(tmp_path / "plugins/__init__.py", "import yaml\n")
    app = scan_app(tmp_path / "app.py", ("plugins", "sklearn.ensemble"))
    assert "plugins/__init__.py" in app.files and "import yaml" in app.imports


def test_own_code_that_does_not_parse_names_the_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "app.py", "import broken\n")
    write(tmp_path / "broken.py", "x = 1\ndef f(:\n")
    with pytest.raises(InputError, match=r"broken\.py:2: the app's code does not parse"):
        scan_app(tmp_path / "app.py")


def test_the_launcher_depends_on_the_imports_not_on_the_code(tmp_path: Path) -> None:
    write(tmp_path / "app.py", "import os\nprint(os.sep)\n")
    first = launcher_source(scan_app(tmp_path / "app.py").entry,
                            scan_app(tmp_path / "app.py").imports)
    write(tmp_path / "app.py", "import os\nprint(os.getcwd(), 'changed')\n")
    again = scan_app(tmp_path / "app.py")
    assert launcher_source(again.entry, again.imports) == first
    write(tmp_path / "app.py", "import os, csv\n")
    added = scan_app(tmp_path / "app.py")
    assert launcher_source(added.entry, added.imports) != first
    compile(launcher_source(added.entry, added.imports), "launcher", "exec")


# -- the planner ----------------------------------------------------------------------

def _file(path: str, size: int = 10) -> Entry:
    return Entry(path, Kind.FILE, 0o644, size=size)


def test_planner_orders_layers_from_least_to_most_often_changed() -> None:
    big = DIST_LAYER_MIN_BYTES
    entries = [Entry("/app", Kind.DIR, 0o755), Entry("/app/_internal", Kind.DIR, 0o755),
               _file("/app/app", 1000),
               _file("/app/_internal/libpython3.11.so.1.0"), _file("/app/_internal/libssl.so.3"),
               _file("/app/_internal/python3.11/lib-dynload/_ssl.so"),
               _file("/app/_internal/numpy/core/_multi.so", big),
               _file("/app/_internal/numpy.libs/libopenblas.so", big),
               _file("/app/_internal/numpy-2.0.dist-info/METADATA"),
               _file("/app/_internal/scipy/x.so", 2 * big),
               _file("/app/_internal/markupsafe/_speedups.so"),
               _file("/app/_internal/json/__init__.pyc"), _file("/app/_internal/os.pyc"),
               _file("/app/_app/app.py"), Entry("/app/_internal/empty", Kind.DIR, 0o755)]
    owners = {"numpy": "numpy 2.0", "numpy.libs": "numpy 2.0", "numpy-2.0.dist-info": "numpy 2.0",
              "scipy": "scipy 1.0", "markupsafe": "markupsafe 3.0"}
    groups = plan_bundle(entries, "/app", "app", owners)
    assert [g.part for g in groups] == ["python", "numpy", "scipy", "packages", "stdlib",
                                        "modules", "code"]
    paths = {g.part: [e.path for e in g.entries] for g in groups}
    assert paths["python"] == ["/app/_internal/libpython3.11.so.1.0", "/app/_internal/libssl.so.3",
                               "/app/_internal/python3.11/lib-dynload/_ssl.so",
                               "/app/_internal/empty"]
    assert paths["numpy"] == ["/app/_internal/numpy/core/_multi.so",
                              "/app/_internal/numpy.libs/libopenblas.so",
                              "/app/_internal/numpy-2.0.dist-info/METADATA"]
    assert paths["packages"] == ["/app/_internal/markupsafe/_speedups.so"]
    assert paths["stdlib"] == ["/app/_internal/json/__init__.pyc", "/app/_internal/os.pyc"]
    assert paths["modules"] == ["/app/app"] and paths["code"] == ["/app/_app/app.py"]
    every = [p for g in groups for p in paths[g.part]]
    assert sorted(every) == sorted(e.path for e in entries
                                   if e.kind is not Kind.DIR or e.path == "/app/_internal/empty")


def test_planner_gives_small_distributions_one_shared_layer() -> None:
    entries = [_file("/srv/_internal/a/x.py"), _file("/srv/_internal/b/y.py"), _file("/srv/srv")]
    groups = plan_bundle(entries, "/srv", "srv", {"a": "a 1", "b": "b 2"})
    assert [g.part for g in groups] == ["packages", "modules"]
    assert groups[0].detail == "2 distributions (2 files)"


# -- end to end: iris ------------------------------------------------------------------


def _digests(summary: dict) -> dict[str, str]:
    return {layer["name"]: layer["digest"] for layer in summary["layers"]}


def _serve(image: Path, tmp_path: Path) -> tuple[str, subprocess.Popen, int, Path]:
    bundle = unpack(image, tmp_path)
    config = prepare_bundle(bundle, readonly=True, host_network=True)
    port = free_port()
    config["process"]["env"].append(f"PORT={port}")
    (bundle / "config.json").write_text(json.dumps(config))
    log = tmp_path / "container.log"
    cid, proc = runc_start_detached(bundle, log)
    return cid, proc, port, log


@pytest.mark.slow
@pytest.mark.network
def test_iris_is_split_into_layers_named_for_what_they_hold(iris_image: dict) -> None:
    names = [layer["name"] for layer in iris_image["summary"]["layers"]]
    assert names[0] == "base" and names[-2:] == ["app", "model"]
    assert names[1] == "app:python" and "app:modules" in names and "app:scipy" in names
    layers = {layer["name"]: layer for layer in iris_image["summary"]["layers"]}
    assert layers["app"]["size"] < 64 << 10  # the app's own code: kilobytes


@pytest.mark.slow
@pytest.mark.network
def test_a_code_change_reuses_every_dependency_layer_and_serves_the_new_code(
        iris_image: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = copy_iris(tmp_path)
    app = manifest.parent / "app.py"
    app.write_text(app.read_text().replace("return jsonify(result=int(model.predict([data])[0]))",
                                           "return jsonify(result=int(model.predict([data])[0]),"
                                           " edited=True)"))
    started = time.monotonic()
    summary, log = build_json(manifest, tmp_path / "edited.tar", iris_image["cache"], capsys)
    assert time.monotonic() - started < 30
    assert "freezing" not in log and "creating build venv" not in log
    before, after = _digests(iris_image["summary"]), _digests(summary)
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed == {"app"}
    cid, proc, port, log_path = _serve(tmp_path / "edited.tar", tmp_path)
    try:
        answer = post_when_up(f"http://127.0.0.1:{port}/predict", SAMPLE, proc, log_path)
    finally:
        runc_stop(cid, proc)
    assert answer == {"result": 2, "edited": True}


@pytest.mark.slow
@pytest.mark.network
def test_a_new_import_reanalyses_the_dependencies_and_the_image_serves_it(
        iris_image: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``import sqlite3``, which nothing in the bundle imported: its module, its
    extension and libsqlite3 must be there when the app starts."""
    manifest = copy_iris(tmp_path)
    app = manifest.parent / "app.py"
    source = app.read_text().replace("import joblib\n", "import joblib\nimport sqlite3\n")
    app.write_text(source.replace(
        "return jsonify(result=int(model.predict([data])[0]))",
        "return jsonify(result=int(model.predict([data])[0]), "
        "sqlite=sqlite3.connect(':memory:').execute('select 40 + 2').fetchone()[0])"))
    summary, log = build_json(manifest, tmp_path / "new-import.tar", iris_image["cache"], capsys)
    assert "freezing app.py" in log and "creating build venv" not in log
    before, after = _digests(iris_image["summary"]), _digests(summary)
    assert after["app:stdlib"] != before["app:stdlib"]  # sqlite3's modules are in it now
    assert after["app:numpy"] == before["app:numpy"]  # numpy's files are as they were
    cid, proc, port, log_path = _serve(tmp_path / "new-import.tar", tmp_path)
    try:
        answer = post_when_up(f"http://127.0.0.1:{port}/predict", SAMPLE, proc, log_path)
    finally:
        runc_stop(cid, proc)
    assert answer == {"result": 2, "sqlite": 42}


@pytest.mark.slow
@pytest.mark.network
def test_iris_ends_promptly_on_sigterm_as_pid_1(iris_image: dict, tmp_path: Path) -> None:
    cid, proc, port, log_path = _serve(iris_image["tar"], tmp_path)
    try:
        assert post_when_up(f"http://127.0.0.1:{port}/predict", SAMPLE, proc,
                            log_path) == {"result": 2}
        sent = time.monotonic()
        subprocess.run(["runc", "kill", cid, "TERM"], check=True, capture_output=True)
        proc.wait(timeout=10)
        assert time.monotonic() - sent < 2, log_path.read_text(errors="replace")
    finally:
        runc_stop(cid, proc)


def test_an_exclude_pattern_needs_to_match_in_one_of_a_frozen_apps_layers_only() -> None:
    """A split bundle is several image layers; ``exclude: [/app/_internal/torch/bin]``
    matches in one of them, which is enough (a pattern matching in none is an error)."""
    from builder.errors import ManifestError
    from builder.manifest import LayerSpec, PathGlob
    from builder.pipeline import _Selection

    spec = LayerSpec("app", 3, exclude=(PathGlob("/app/_internal/torch/bin", 9),),
                     closure_skip=(PathGlob("/app/app", 10),))
    parts = [[_file("/app/_internal/libpython3.11.so.1.0")],
             [_file("/app/_internal/torch/bin/test_shim"), _file("/app/_internal/torch/x.so")],
             [_file("/app/app")]]
    selection = _Selection(spec, "m.yaml")
    kept = [selection.keep(part) for part in parts]
    selection.check()
    assert [[e.path for e in k] for k in kept] == [
        ["/app/_internal/libpython3.11.so.1.0"], ["/app/_internal/torch/x.so"], ["/app/app"]]
    nothing = _Selection(LayerSpec("app", 3, exclude=(PathGlob("/app/nope", 9),)), "m.yaml")
    for part in parts:
        nothing.keep(part)
    with pytest.raises(ManifestError, match="matches nothing in layer 'app'"):
        nothing.check()
