"""ELF reading and the library closure, on programs compiled here with gcc."""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import pytest

from builder.errors import ClosureError
from builder.layers.entries import Entry, Kind
from builder.sources.closure import resolve_closure
from builder.sources.elf import read_elf
from builder.sources.elfstrip import strip_tree
from builder.sources.files import tree_entries

from conftest import require_tool
from helpers import cli, write
from runtime import prepare_bundle, runc_run, unpack

INTERP = "/lib64/ld-linux-x86-64.so.2"
HELLO = ["/app/bin/hello"]  # the entrypoint: a root of the closure


def _gcc(*args: str | Path) -> None:
    subprocess.run([require_tool("gcc"), *map(str, args)], check=True, capture_output=True)


@pytest.fixture
def native_app(tmp_path: Path) -> Path:
    """``app/bin/hello`` linked against ``app/lib/libgreet.so.1`` (RUNPATH $ORIGIN/../lib)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "greet.c").write_text('#include <stdio.h>\nvoid greet(void) { puts("hi"); }\n')
    (src / "main.c").write_text("void greet(void);\nint main(void) { greet(); return 0; }\n")
    app = tmp_path / "app"
    (app / "lib").mkdir(parents=True)
    (app / "bin").mkdir()
    _gcc("-shared", "-fPIC", "-Wl,-soname,libgreet.so.1", "-o", app / "lib" / "libgreet.so.1.0",
         src / "greet.c")
    (app / "lib" / "libgreet.so.1").symlink_to("libgreet.so.1.0")
    (app / "lib" / "libgreet.so").symlink_to("libgreet.so.1")
    _gcc("-o", app / "bin" / "hello", src / "main.c", "-L", app / "lib", "-lgreet",
         "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib")
    return app


def _view(entries: list[Entry]) -> dict[str, Entry]:
    return {e.path: e for e in entries}


def test_read_elf_reports_interpreter_needed_runpath_and_soname(native_app: Path) -> None:
    with open(native_app / "bin" / "hello", "rb") as f:
        exe = read_elf(f)
    with open(native_app / "lib" / "libgreet.so.1.0", "rb") as f:
        lib = read_elf(f)
    assert exe is not None and lib is not None
    assert exe.interpreter == INTERP
    assert exe.needed == ("libgreet.so.1", "libc.so.6")
    assert exe.runpath == ("$ORIGIN/../lib",) and exe.rpath == ()
    assert lib.soname == "libgreet.so.1" and "libc.so.6" in lib.needed
    assert exe.compatible(lib)


def test_read_elf_skips_non_elf_and_object_files(tmp_path: Path, native_app: Path) -> None:
    (tmp_path / "x.c").write_text("int x;\n")
    _gcc("-c", "-o", tmp_path / "x.o", tmp_path / "x.c")
    (tmp_path / "text").write_bytes(b"\x7fELF but not really")
    for name in ("x.o", "text"):
        with open(tmp_path / name, "rb") as f:
            assert read_elf(f) is None
    with open(native_app / "bin" / "hello", "rb") as f:  # a non-seekable stream works too
        import io
        data = f.read()

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b):  # type: ignore[no-untyped-def]
            chunk = self.inner.read(len(b))
            b[:len(chunk)] = chunk
            return len(chunk)

    info = read_elf(Pipe())  # type: ignore[arg-type]
    assert info is not None and info.needed == ("libgreet.so.1", "libc.so.6")


def test_missing_native_library_names_the_file_and_the_soname(native_app: Path) -> None:
    (native_app / "lib" / "libgreet.so.1").unlink()  # the soname link is gone
    view = _view(tree_entries(native_app, "/app"))
    with pytest.raises(ClosureError) as err:
        resolve_closure(view, programs=HELLO)
    message = str(err.value)
    assert "/app/bin/hello needs libgreet.so.1, which is not in the image" in message
    assert "libraries: {from: host}" in message
    assert f"needs {INTERP}" in message and "needs libc.so.6" in message


def test_runpath_origin_resolves_inside_the_image(native_app: Path) -> None:
    view = _view(tree_entries(native_app, "/app"))
    result = resolve_closure(view, strict=False, programs=HELLO)
    needed = {name for _, name in result.missing}
    assert "libgreet.so.1" not in needed           # found through $ORIGIN/../lib
    assert needed == {INTERP, "libc.so.6"}         # scratch: the system part is missing
    assert result.elf_files == 2


def test_library_path_stands_for_a_launchers_ld_library_path(native_app: Path, tmp_path: Path) -> None:
    _gcc("-o", native_app / "bin" / "plain", tmp_path / "src" / "main.c", "-L",
         native_app / "lib", "-lgreet")  # no RUNPATH: found only through library_path
    view = _view(tree_entries(native_app, "/app"))
    plain = ["/app/bin/plain"]
    missing = resolve_closure(view, strict=False, programs=plain).missing
    assert ("/app/bin/plain", "libgreet.so.1") in missing
    missing = resolve_closure(view, strict=False, library_path={"/app": ["/app/lib"]},
                              programs=plain).missing
    assert ("/app/bin/plain", "libgreet.so.1") not in missing
    # it applies only to the ELF files under its key, as a launcher's LD_LIBRARY_PATH does
    missing = resolve_closure(view, strict=False, library_path={"/app/lib": ["/app/lib"]},
                              programs=plain).missing
    assert ("/app/bin/plain", "libgreet.so.1") in missing


def test_host_libraries_complete_the_closure(native_app: Path) -> None:
    view = _view(tree_entries(native_app, "/app"))
    result = resolve_closure(view, host=True, programs=HELLO)
    assert result.missing == []
    paths = {e.path: e for e in result.host_entries}
    libc = [p for p in paths if p.endswith("/libc.so.6")]
    assert libc, sorted(paths)
    assert INTERP in paths
    # the soname symlink layout of the host is kept: the loader path is a link on Debian
    interp = paths[INTERP]
    if interp.kind is Kind.SYMLINK:
        assert interp.target.endswith("ld-linux-x86-64.so.2")
    # copied files are ELF and complete: the merged view now resolves with no host
    merged = {**view, **paths}
    assert resolve_closure(merged, programs=HELLO).missing == []
    assert [e.path for e in result.host_entries] == sorted(paths)


def test_directory_symlinks_in_the_image_are_followed(native_app: Path) -> None:
    """A merged-/usr base (``/lib -> usr/lib``) finds libraries through the link."""
    view = _view(tree_entries(native_app, "/app"))
    libs = resolve_closure(view, host=True, programs=HELLO).host_entries
    moved: dict[str, Entry] = {"/lib": Entry.symlink("/lib", "usr/lib"),
                               "/lib64": Entry.symlink("/lib64", "usr/lib64")}
    for e in libs:
        for old, new in (("/lib/", "/usr/lib/"), ("/lib64/", "/usr/lib64/")):
            if e.path.startswith(old):
                e = Entry(new + e.path[len(old):], e.kind, e.mode, e.uid, e.gid, e.size,
                          e.opener, e.target, e.link_key)
        if e.path not in ("/lib", "/lib64"):
            moved[e.path] = e
    assert resolve_closure({**view, **moved}, programs=HELLO).missing == []


def test_a_library_of_another_class_is_not_a_match(native_app: Path, tmp_path: Path) -> None:
    view = _view(tree_entries(native_app, "/app"))
    lib = view["/app/lib/libgreet.so.1.0"]
    # a 64-bit libgreet under the default dirs is accepted ...
    fake = dict(view)
    fake["/usr/lib/libgreet.so.1"] = Entry(
        "/usr/lib/libgreet.so.1", Kind.FILE, 0o755, size=lib.size, opener=lib.opener)
    del fake["/app/lib/libgreet.so.1"]
    assert ("/app/bin/hello", "libgreet.so.1") not in resolve_closure(fake, strict=False, programs=HELLO).missing
    # ... a file that only has the right name is not
    fake["/usr/lib/libgreet.so.1"] = Entry.bytes_file("/usr/lib/libgreet.so.1", b"\x7fELF" * 20)
    assert ("/app/bin/hello", "libgreet.so.1") in resolve_closure(fake, strict=False, programs=HELLO).missing


def _manifest(root: Path, app: Path, libraries: str) -> Path:
    return write(root / "ocibuild.yaml", f"""
        image: test/native:1
        base: scratch
        libraries: {{from: {libraries}}}
        layers:
          - name: app
            files:
              - {{src: {app}, dest: /app}}
        config:
          user: "65532:65532"
          entrypoint: ["/app/bin/hello"]
        """)


def test_build_fails_naming_the_native_file_and_soname(native_app: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    (native_app / "lib" / "libgreet.so.1").unlink()
    for libraries in ("none", "host"):  # the host has no libgreet either
        code, _, err = cli("build", _manifest(tmp_path, native_app, libraries), "-o",
                           tmp_path / "x.tar", capsys=capsys)
        assert code != 0
        assert "/app/bin/hello needs libgreet.so.1" in err
    assert not (tmp_path / "x.tar").exists()


def test_libraries_from_host_make_a_scratch_image_run(native_app: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    code, _, err = cli("build", _manifest(tmp_path, native_app, "none"), "-o",
                       tmp_path / "x.tar", capsys=capsys)
    assert code != 0 and "/app/bin/hello needs libc.so.6" in err
    code, _, err = cli("build", _manifest(tmp_path, native_app, "host"), "-o",
                       tmp_path / "x.tar", capsys=capsys)
    assert code == 0, err
    bundle = unpack(tmp_path / "x.tar", tmp_path / "unpacked")
    prepare_bundle(bundle)
    result = runc_run(bundle)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hi"


def test_strip_tree_strips_libraries_and_keeps_what_it_would_break(native_app: Path) -> None:
    lib = native_app / "lib" / "libgreet.so.1.0"
    exe = native_app / "bin" / "hello"
    before, exe_bytes = lib.stat().st_size, exe.read_bytes()
    report = strip_tree(native_app, skip=("bin/hello",))
    assert report.stripped == ["lib/libgreet.so.1.0"] and report.kept == []
    assert lib.stat().st_size < before and report.saved == before - lib.stat().st_size
    assert exe.read_bytes() == exe_bytes            # the executable is never touched
    ctypes.CDLL(str(lib)).greet()                   # still loads
    assert not list(native_app.rglob(".*.stripped"))
    # a "strip" whose output is not the same ELF object is not taken
    stripped = lib.read_bytes()
    junk = ("python3", "-c", "import sys; open(sys.argv[2], 'wb').write(b'junk')")
    report = strip_tree(native_app, skip=("bin/hello",), strip=junk)
    assert report.kept == ["lib/libgreet.so.1.0"] and lib.read_bytes() == stripped


def test_closure_does_not_open_files_it_is_told_about() -> None:
    def boom():
        raise AssertionError("opened a file the closure was told about")

    view = _view([Entry.file("/data/blob", boom, 4096)])
    assert resolve_closure(view, known={"/data/blob": None}).elf_files == 0
    with pytest.raises(AssertionError, match="opened"):
        resolve_closure(view)


def test_closure_trusts_a_verdict_only_for_the_path_it_was_made_for(native_app: Path) -> None:
    """A path known "not ELF" but reached through a directory symlink names another
    entry (here an ELF program), which is checked under both names, as before."""
    def boom():
        raise AssertionError("opened a file the closure was told about")

    hello = str(native_app / "bin" / "hello")
    view = _view([Entry.file("/usr/bin/hello", lambda: open(hello, "rb"), 4096),
                  Entry.symlink("/bin", "usr/bin"), Entry.file("/bin/hello", boom, 4096),
                  Entry.file("/usr/bin/notes", boom, 4096)])
    known = {"/bin/hello": None, "/usr/bin/notes": None}
    result = resolve_closure(view, known=known, strict=False, path_dirs=["/usr/bin", "/bin"])
    assert result.elf_files == 1  # one file, under two names
    assert {elf for elf, _ in result.missing} == {"/bin/hello", "/usr/bin/hello"}


def test_rebuild_sees_an_elf_file_that_replaced_a_text_file_of_the_same_size(
        native_app: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The tar writer's ELF notes are per layer content: the closure of a rebuild
    trusts them only for an unchanged layer, so a new ELF file is never missed."""
    elf = (native_app / "bin" / "hello").read_bytes()
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "prog").write_bytes(b"#" * len(elf))
    manifest = write(tmp_path / "m.yaml", f"""
        image: t/t:1
        libraries: {{from: none}}
        layers:
          - name: app
            files:
              - {{src: {tree}, dest: /app}}
        config:
          entrypoint: ["/app/prog"]
        """)
    args = ("build", manifest, "-o", tmp_path / "x.tar", "--cache-dir", tmp_path / "cache")
    assert cli(*args, capsys=capsys)[0] == 0
    assert cli(*args, capsys=capsys)[0] == 0  # a no-op rebuild from the notes
    (tree / "new").write_bytes(elf)
    (tree / "new").replace(tree / "prog")     # same size, same name, new content
    code, _, err = cli(*args, capsys=capsys)
    assert code != 0 and "/app/prog needs libc.so.6" in err
