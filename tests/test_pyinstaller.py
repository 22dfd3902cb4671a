"""Freezing with the real PyInstaller: the venv and output caches, failures, reproducibility.

The only stand-in is the runner: it records each command and runs it with
subprocess.run, so the tests can tell whether pip or PyInstaller ran.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from builder.errors import FreezeError, InputError
from builder.layers.entries import Kind
from builder.sources.pyinstaller import FrozenApp, PyInstallerOptions, bundle_entries, freeze

HELLO = 'import json\n\nprint(json.dumps({"hello": "frozen"}))\n'


class Recorder:
    """A runner that records every command and delegates to subprocess.run."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str], **kwargs: Any) -> "subprocess.CompletedProcess[str]":
        self.calls.append(list(cmd))
        return subprocess.run(cmd, **kwargs)

    def ran(self, module: str) -> int:
        """How many calls ran ``python -m <module>``."""
        return sum(1 for c in self.calls if "-m" in c and c[c.index("-m") + 1] == module)


def _app(folder: Path, source: str = HELLO, tag: str = "") -> PyInstallerOptions:
    """``folder/hello.py``; ``tag`` gives a test a cache key of its own: an optional
    import of a module that does not exist, so the app's import set differs."""
    folder.mkdir(parents=True, exist_ok=True)
    guard = f"try:\n    import ocibuild_tag_{tag}\nexcept ImportError:\n    pass\n"
    (folder / "hello.py").write_text(source + (guard if tag else ""))
    return PyInstallerOptions(entry=folder / "hello.py")


def _run(frozen: FrozenApp, root: Path) -> str:
    """Install the frozen app's entries (bundle and own code) under ``root`` as a layer
    would, run it; its stdout."""
    for e in bundle_entries(frozen, "/app"):
        target = root / e.path.lstrip("/")
        if e.kind is Kind.DIR:
            target.mkdir(parents=True, exist_ok=True)
        elif e.kind is Kind.FILE:
            assert e.opener is not None
            target.parent.mkdir(parents=True, exist_ok=True)
            with e.opener() as src:
                target.write_bytes(src.read())
            target.chmod(e.mode)
    done = subprocess.run([str(root / "app" / frozen.executable)], capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module, so the venv is built once."""
    return tmp_path_factory.mktemp("freeze-cache")


def test_frozen_app_runs_and_becomes_entries(tmp_path: Path, shared_cache: Path) -> None:
    frozen = freeze(_app(tmp_path / "src"), cache_dir=shared_cache)
    assert isinstance(frozen, FrozenApp) and frozen.executable == "hello"
    assert _run(frozen, tmp_path / "root") == '{"hello": "frozen"}'
    entries = {e.path: e for e in bundle_entries(frozen, "/app")}
    assert entries["/app/_app/hello.py"].kind is Kind.FILE  # the app's own code, apart
    assert entries["/app"].kind is Kind.DIR
    assert entries["/app/hello"].kind is Kind.FILE and entries["/app/hello"].mode == 0o755
    assert entries["/app/_internal/json/__init__.pyc"].mode == 0o644  # modules as files
    assert frozen.library_dirs == ("_internal",)
    assert all(e.uid == 0 and e.gid == 0 for e in entries.values())


def test_second_freeze_runs_neither_pip_nor_pyinstaller(tmp_path: Path,
                                                        shared_cache: Path) -> None:
    options = _app(tmp_path / "src", tag="second")
    first = Recorder()
    cold = freeze(options, cache_dir=shared_cache, runner=first)
    assert first.ran("PyInstaller") == 1
    again = Recorder()
    warm = freeze(options, cache_dir=shared_cache, runner=again)
    assert again.calls == []
    assert warm.cached and warm.dist_dir == cold.dist_dir and warm.key == cold.key


def test_a_code_change_reuses_the_freeze_and_a_new_import_reruns_pyinstaller(
        tmp_path: Path, shared_cache: Path) -> None:
    options = _app(tmp_path / "src", tag="changing")
    before = freeze(options, cache_dir=shared_cache)
    # a touch that changes only the mtime is not a change: keys hash content
    os.utime(options.entry, (1, 1))
    assert freeze(options, cache_dir=shared_cache).key == before.key
    # files PyInstaller does not read (a model, a built image) are not inputs either
    (options.entry.parent / "model.joblib").write_bytes(b"weights")
    (options.entry.parent / "image.tar").write_bytes(b"an earlier build")
    assert freeze(options, cache_dir=shared_cache).key == before.key
    # new code that imports nothing new: the dependencies are reused as they are
    options.entry.write_text(options.entry.read_text().replace('"frozen"', '"edited"'))
    runner = Recorder()
    edited = freeze(options, cache_dir=shared_cache, runner=runner)
    assert runner.calls == [] and edited.key == before.key and edited.cached
    assert _run(edited, tmp_path / "edited") == '{"hello": "edited"}'
    # a new import (of the standard library, here) is analysed again; pip is not rerun
    options.entry.write_text("import csv\n" + options.entry.read_text())
    runner = Recorder()
    after = freeze(options, cache_dir=shared_cache, runner=runner)
    assert runner.ran("PyInstaller") == 1
    assert runner.ran("pip") == 0 and runner.ran("venv") == 0
    assert not after.cached and after.key != before.key


def test_options_are_part_of_the_key(tmp_path: Path, shared_cache: Path) -> None:
    options = _app(tmp_path / "src", tag="options")
    plain = freeze(options, cache_dir=shared_cache)
    runner = Recorder()
    other = freeze(PyInstallerOptions(entry=options.entry, hidden_imports=("csv",)),
                   cache_dir=shared_cache, runner=runner)
    assert other.key != plain.key and runner.ran("PyInstaller") == 1
    assert any("--hidden-import" in c for c in runner.calls)


def test_pyinstaller_warnings_reach_the_log_also_from_the_cache(tmp_path: Path,
                                                                shared_cache: Path) -> None:
    options = _app(tmp_path / "src", tag="warnings")
    warned = PyInstallerOptions(entry=options.entry, collect_submodules=("json",),
                                extra_args=("--hidden-import", "no_such_module_xyz"))
    for cached in (False, True):
        lines: list[str] = []
        frozen = freeze(warned, cache_dir=shared_cache, log=lines.append)
        assert frozen.cached is cached
        assert "pyinstaller: ERROR: Hidden import 'no_such_module_xyz' not found" in lines


def test_two_cold_freezes_in_different_dirs_are_byte_identical(tmp_path: Path) -> None:
    one = freeze(_app(tmp_path / "a" / "src"), cache_dir=tmp_path / "a" / "cache")
    two = freeze(_app(tmp_path / "elsewhere" / "deeper" / "src"),
                 cache_dir=tmp_path / "elsewhere" / "cache")
    assert not one.cached and not two.cached
    assert one.key == two.key
    assert _digests(one.dist_dir) == _digests(two.dist_dir)
    # no build path leaks into the bundle
    for path in one.dist_dir.rglob("*"):
        if path.is_file():
            assert str(tmp_path).encode() not in path.read_bytes(), path


def test_onefile_gives_one_executable(tmp_path: Path, shared_cache: Path) -> None:
    options = _app(tmp_path / "src")
    frozen = freeze(PyInstallerOptions(entry=options.entry, mode="onefile"),
                    cache_dir=shared_cache)
    assert [p.name for p in frozen.dist_dir.iterdir()] == ["hello"]
    assert frozen.library_dirs == ()
    out = subprocess.run([str(frozen.dist_dir / "hello")], capture_output=True, text=True,
                         check=True)
    assert "frozen" in out.stdout
    # what the packed libpython loads from the image (the closure checks it): glibc's
    # libm and libc, not libpython itself, which the executable carries
    assert {"libc.so.6", "libm.so.6"} <= set(frozen.packed_needs)
    assert not any(name.startswith("libpython") for name in frozen.packed_needs)
    again = freeze(PyInstallerOptions(entry=options.entry, mode="onefile"),
                   cache_dir=shared_cache)
    assert again.cached and again.packed_needs == frozen.packed_needs


def test_extra_args_paths_are_relative_to_the_app(tmp_path: Path, shared_cache: Path) -> None:
    source = ("import pathlib, sys\n"
              "print(pathlib.Path(sys._MEIPASS, 'greeting.txt').read_text())\n")
    options = _app(tmp_path / "src", source)
    (tmp_path / "src" / "greeting.txt").write_text("hello from data")
    frozen = freeze(PyInstallerOptions(entry=options.entry,
                                       extra_args=("--add-data", "greeting.txt:.")),
                    cache_dir=shared_cache)
    assert _run(frozen, tmp_path / "root") == "hello from data"
    # a file named by extra_args is an input: changing it changes the key
    (tmp_path / "src" / "greeting.txt").write_text("hello again")
    again = freeze(PyInstallerOptions(entry=options.entry,
                                      extra_args=("--add-data", "greeting.txt:.")),
                   cache_dir=shared_cache)
    assert again.key != frozen.key


def test_extra_args_may_reach_outside_the_app_folder(tmp_path: Path, shared_cache: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "helper.py").write_text("WORD = 'shared'\n")
    options = _app(tmp_path / "app", "import helper\nprint(helper.WORD)\n")
    frozen = freeze(PyInstallerOptions(entry=options.entry, extra_args=("--paths", "../lib")),
                    cache_dir=shared_cache)
    assert _run(frozen, tmp_path / "root") == "shared"
    (tmp_path / "lib" / "helper.py").write_text("WORD = 'changed'\n")
    again = freeze(PyInstallerOptions(entry=options.entry, extra_args=("--paths", "../lib")),
                   cache_dir=shared_cache)
    assert again.key != frozen.key


def test_failed_freeze_shows_the_log_tail_and_a_fix(tmp_path: Path, shared_cache: Path) -> None:
    options = _app(tmp_path / "src", tag="failing")
    missing = PyInstallerOptions(entry=options.entry, extra_args=("--add-data", "nothere.txt:."))
    with pytest.raises(FreezeError) as err:
        freeze(missing, cache_dir=shared_cache)
    message = str(err.value)
    assert "PyInstaller failed to freeze hello.py" in message
    assert "  | " in message and "nothere.txt" in message
    full_log = Path(message.split("(full log: ")[1].split(")")[0])
    assert "nothere.txt" in full_log.read_text()
    assert not list((shared_cache / "tmp").iterdir())  # the scratch dir is gone


def test_app_code_that_does_not_parse_names_the_file_and_line(tmp_path: Path,
                                                             shared_cache: Path) -> None:
    options = _app(tmp_path / "src", "import json\nprint(json.dumps(\n")
    runner = Recorder()
    with pytest.raises(FreezeError, match=r"hello\.py:[23]: the app's code does not parse"):
        freeze(options, cache_dir=shared_cache, runner=runner)
    assert runner.ran("PyInstaller") == 0


def test_missing_module_hint_names_the_hidden_import(tmp_path: Path) -> None:
    from builder.sources.pyinstaller_log import freeze_failure  # the log → fix mapping

    proc = subprocess.CompletedProcess(["x"], 1, stdout="...\nModuleNotFoundError: "
                                       "No module named 'sklearn.ensemble'\n", stderr="")
    message = freeze_failure(PyInstallerOptions(entry=tmp_path / "app.py"), proc)
    assert "likely fix: add sklearn.ensemble to hidden_imports" in message


def test_pip_failure_is_a_freeze_error(tmp_path: Path) -> None:
    options = _app(tmp_path / "src")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("this is not a requirement ((\n")
    with pytest.raises(FreezeError) as err:
        freeze(PyInstallerOptions(entry=options.entry, requirements=requirements),
               cache_dir=tmp_path / "cache")
    assert "pip install -r requirements.txt failed" in str(err.value)
    assert not (tmp_path / "cache" / "venv").exists() or not any(
        p.name != ".tmp" and not p.name.startswith(".tmp-")
        for p in (tmp_path / "cache" / "venv").iterdir())


def test_bad_inputs_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        freeze(PyInstallerOptions(entry=tmp_path / "nope.py"), cache_dir=tmp_path)
    options = _app(tmp_path / "src")
    with pytest.raises(InputError, match="mode"):
        freeze(PyInstallerOptions(entry=options.entry, mode="twodir"), cache_dir=tmp_path)


def test_a_package_in_the_app_folder_ships_whole_with_its_data(tmp_path: Path,
                                                              shared_cache: Path) -> None:
    """The app's own packages are its code: they ship whole (data included) beside the
    frozen dependencies, so ``collect_data`` of them is satisfied without PyInstaller,
    and a change to their data changes the app's files, not the freeze."""
    source = ("import importlib.resources\n"
              "print(importlib.resources.files('mypkg').joinpath('data/greeting.txt')"
              ".read_text())\n")
    options = _app(tmp_path / "src", source)
    package = tmp_path / "src" / "mypkg"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "data" / "greeting.txt").write_text("hello from a package")
    (tmp_path / "src" / "model.bin").write_bytes(b"weights")
    collect = PyInstallerOptions(entry=options.entry, hidden_imports=("mypkg",),
                                 collect_data=("mypkg",))
    frozen = freeze(collect, cache_dir=shared_cache)
    assert frozen.app is not None and "mypkg/data/greeting.txt" in frozen.app.files
    assert _run(frozen, tmp_path / "one") == "hello from a package"
    (package / "data" / "greeting.txt").write_text("changed")
    again = freeze(collect, cache_dir=shared_cache)
    assert again.key == frozen.key and again.cached
    assert _run(again, tmp_path / "two") == "changed"


def test_a_declared_hidden_import_that_does_not_exist_is_an_error(tmp_path: Path,
                                                                  shared_cache: Path) -> None:
    """PyInstaller reports it and succeeds; the frozen app would fail when it imports it.
    Nothing is cached, so the next build says it again."""
    from builder.errors import FreezeOptionError

    options = _app(tmp_path / "src", tag="hidden")
    bad = PyInstallerOptions(entry=options.entry, hidden_imports=("json", "nosuch.module"))
    for _ in range(2):
        with pytest.raises(FreezeOptionError, match="'nosuch.module': no such module") as e:
            freeze(bad, cache_dir=shared_cache)
        assert e.value.option == "hidden_imports"
    with pytest.raises(FreezeOptionError, match="'nosuchpkg': not a package"):
        freeze(PyInstallerOptions(entry=options.entry, collect_data=("nosuchpkg",)),
               cache_dir=shared_cache)


def test_a_package_that_cannot_build_from_source_gets_a_hint_about_wheels() -> None:
    """pip's words when an sdist needs a compiler the build root lacks."""
    from builder.sources.buildvenv import _pip_hint

    said = ("  error: command 'x86_64-linux-gnu-gcc' failed: No such file or directory\n"
            "  ERROR: Failed building wheel for cext\n"
            "ERROR: Could not build wheels for cext, which is required to install "
            "pyproject.toml-based projects\n")
    hint = _pip_hint(said)
    assert hint is not None and hint.startswith("cext has no wheel for this Python")
    assert "build_root" in hint
    assert _pip_hint("ERROR: Could not build wheels for cext, which is required") == hint
    assert _pip_hint("Successfully installed cext-1.0") is None
