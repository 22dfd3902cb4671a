"""A library with the right soname but not the symbol version a program needs is a
build error naming the program, the library and the version."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from builder.errors import ClosureError
from builder.sources.closure import resolve_closure
from builder.sources.elf import read_elf
from builder.sources.files import tree_entries

from conftest import require_tool
from test_closure_search_order import host_c_runtime

FOO = "int foo_one(void) { return 1; }\nint foo_two(void) { return 2; }\n"


def gcc(*args: str | Path) -> None:
    subprocess.run([require_tool("gcc"), *map(str, args)], check=True, capture_output=True)


def libfoo(out: Path, nodes: list[tuple[str, list[str]]]) -> Path:
    """``libfoo.so.1`` exporting its symbols under the version ``nodes`` given."""
    script = out.with_suffix(".map")
    script.write_text("".join(f"{name} {{ global: {'; '.join(syms)}; "
                              f"{'local: *; ' if i == 0 else ''}}};\n"
                              for i, (name, syms) in enumerate(nodes)))
    src = out.with_suffix(".c")
    src.write_text(FOO if len(nodes) > 1 else "int foo_one(void) { return 1; }\n")
    gcc("-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", f"-Wl,--version-script,{script}",
        "-o", out, src)
    return out


@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, Path]:
    """Two trees with the same program (it calls a FOO_2 symbol): one whose
    ``libfoo.so.1`` defines FOO_1 and FOO_2, one whose copy has only FOO_1."""
    build = tmp_path / "build"
    build.mkdir()
    both = libfoo(build / "libfoo.so.1", [("FOO_1", ["foo_one"]), ("FOO_2", ["foo_two"])])
    (build / "main.c").write_text("int foo_two(void);\nint main(void) { return foo_two(); }\n")
    trees = []
    for name, lib_nodes in (("new", None), ("old", [("FOO_1", ["foo_one"])])):
        tree = tmp_path / name
        (tree / "lib").mkdir(parents=True)
        gcc("-o", tree / "prog", build / "main.c", "-L", build, "-l:libfoo.so.1",
            "-Wl,--enable-new-dtags,-rpath,$ORIGIN/lib")
        if lib_nodes is None:
            (tree / "lib" / "libfoo.so.1").write_bytes(both.read_bytes())
        else:
            older = tmp_path / "older"
            older.mkdir()
            libfoo(older / "libfoo.so.1", lib_nodes)
            (tree / "lib" / "libfoo.so.1").write_bytes((older / "libfoo.so.1").read_bytes())
        trees.append(tree)
    return trees[0], trees[1]


def test_elf_reads_needed_and_defined_versions(images: tuple[Path, Path]) -> None:
    new, old = images
    with open(new / "prog", "rb") as f:
        prog = read_elf(f)
    with open(old / "lib" / "libfoo.so.1", "rb") as f:
        lib = read_elf(f)
    assert prog is not None and lib is not None
    assert ("libfoo.so.1", ("FOO_2",)) in prog.verneed
    assert lib.verdef == ("FOO_1",)


def test_a_missing_symbol_version_is_an_error_naming_object_library_and_version(
        images: tuple[Path, Path]) -> None:
    new, old = images
    view = {**{e.path: e for e in tree_entries(new, "/app")}, **host_c_runtime()}
    assert resolve_closure(view, programs=["/app/prog"]).missing_versions == []
    view = {**{e.path: e for e in tree_entries(old, "/app")}, **host_c_runtime()}
    with pytest.raises(ClosureError) as err:
        resolve_closure(view, programs=["/app/prog"])
    assert ("/app/prog needs version FOO_2 of /app/lib/libfoo.so.1, which that library "
            "does not define") in str(err.value)
