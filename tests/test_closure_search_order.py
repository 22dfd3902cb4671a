"""The closure follows glibc's search order: RPATH along the chain of loaders, RUNPATH
for an object's own needs only, names already loaded, ld.so.cache, per-architecture
dirs; roots are programs, extension modules and unloaded libraries; strays warn."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from builder.errors import ClosureError
from builder.layers.entries import Entry
from builder.sources.closure import resolve_closure
from builder.sources.files import tree_entries
from builder.sources.ldso import layout_for, layout_for_platform, read_ld_cache

from conftest import require_tool, unavailable

EXT = "_fblas.cpython-311-x86_64-linux-gnu.so"


def gcc(*args: str | Path) -> None:
    subprocess.run([require_tool("gcc"), *map(str, args)], check=True, capture_output=True)


def c_file(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def shared(out: Path, soname: str, body: str, *link: str | Path) -> Path:
    src = c_file(out.parent.parent / "src", soname + ".c", body)
    out.parent.mkdir(parents=True, exist_ok=True)
    gcc("-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", out, src, *link)
    return out


def scipy_like(root: Path, *, tag: str = "--disable-new-dtags") -> Path:
    """``site-packages/scipy/linalg/_fblas...so`` with DT_RPATH ``$ORIGIN/../../scipy.libs``
    needs ``libgfortran-x.so.5`` there (no path of its own), which needs ``libquadmath``:
    found only through its loader's RPATH, as in the scipy wheel."""
    sp = root / "site-packages"
    libs = sp / "scipy.libs"
    shared(libs / "libquadmath-q.so.0", "libquadmath-q.so.0", "int quad(void) { return 4; }\n")
    shared(libs / "libgfortran-f.so.5", "libgfortran-f.so.5",
           "int quad(void);\nint fort(void) { return quad() + 1; }\n",
           "-L", libs, "-l:libquadmath-q.so.0")
    ext_dir = sp / "scipy" / "linalg"
    ext_dir.mkdir(parents=True)
    src = c_file(root / "src", "ext.c", "int fort(void);\nint PyInit__fblas(void) "
                 "{ return fort(); }\n")
    gcc("-shared", "-fPIC", "-o", ext_dir / EXT, src, "-L", libs, "-l:libgfortran-f.so.5",
        f"-Wl,{tag},-rpath,$ORIGIN/../../scipy.libs")
    return sp


def view_of(tree: Path, dest: str) -> dict[str, Entry]:
    return {e.path: e for e in tree_entries(tree, dest)}


def host_c_runtime() -> dict[str, Entry]:
    """The host's libc and loader at the image's default paths (what a cc base has)."""
    out: dict[str, Entry] = {}
    for path in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"):
        real = Path(path).resolve()
        out[path] = Entry.file(path, lambda real=real: open(real, "rb"), real.stat().st_size)
    return out


def test_rpath_of_the_loading_object_finds_what_a_library_without_one_needs(
        tmp_path: Path) -> None:
    sp = scipy_like(tmp_path / "t")
    view = {**view_of(sp, "/app"), **host_c_runtime()}
    assert resolve_closure(view).missing == []
    # the library really is needed: without it the build fails, naming it
    del view["/app/scipy.libs/libquadmath-q.so.0"]
    with pytest.raises(ClosureError) as err:
        resolve_closure(view)
    assert ("/app/scipy.libs/libgfortran-f.so.5 needs libquadmath-q.so.0, which is not in "
            "the image") in str(err.value)


def test_runpath_is_not_inherited_by_what_the_object_loads(tmp_path: Path) -> None:
    sp = scipy_like(tmp_path / "t", tag="--enable-new-dtags")  # DT_RUNPATH, not DT_RPATH
    view = {**view_of(sp, "/app"), **host_c_runtime()}
    missing = resolve_closure(view, strict=False).missing
    assert missing == [("/app/scipy.libs/libgfortran-f.so.5", "libquadmath-q.so.0")]


def test_a_name_already_loaded_is_reused(tmp_path: Path) -> None:
    """``libtwo`` (no path of its own) needs ``libone``, which the program loaded first
    through its RUNPATH: the loader reuses it rather than searching."""
    lib = tmp_path / "app" / "lib"
    shared(lib / "libone.so", "libone.so", "int one(void) { return 1; }\n")
    shared(lib / "libtwo.so", "libtwo.so", "int one(void);\nint two(void) { return one(); }\n",
           "-L", lib, "-lone")
    src = c_file(tmp_path / "src", "main.c", "int one(void);\nint two(void);\n"
                 "int main(void) { return one() + two(); }\n")
    gcc("-o", tmp_path / "app" / "prog", src, "-L", lib, "-lone", "-ltwo",
        "-Wl,--enable-new-dtags,-rpath,$ORIGIN/lib")
    view = {**view_of(tmp_path / "app", "/app"), **host_c_runtime()}
    assert resolve_closure(view, programs=["/app/prog"]).missing == []
    # dlopen'ed on its own (nothing loaded it), libtwo would not find libone: it is a
    # root only when no program loads it
    del view["/app/prog"]
    missing = resolve_closure(view, strict=False).missing
    assert missing == [("/app/lib/libtwo.so", "libone.so")]


def test_a_stray_executable_is_a_warning_naming_it(tmp_path: Path) -> None:
    """torch's ``bin/test_shim``: RUNPATH ``$ORIGIN`` only, its library elsewhere."""
    pkg = tmp_path / "site-packages" / "torch"
    shared(pkg / "lib" / "libshm.so", "libshm.so", "int shm(void) { return 0; }\n")
    (pkg / "bin").mkdir()
    src = c_file(tmp_path / "src", "shim.c", "int shm(void);\nint main(void) { return shm(); }\n")
    gcc("-o", pkg / "bin" / "test_shim", src, "-L", pkg / "lib", "-lshm",
        "-Wl,--enable-new-dtags,-rpath,$ORIGIN")
    view = {**view_of(tmp_path / "site-packages", "/app"), **host_c_runtime()}
    result = resolve_closure(view)
    assert result.missing == []
    assert result.warnings == [
        "/app/torch/bin/test_shim: no entrypoint, cmd or PATH reaches this executable, and "
        "it would not start (it needs libshm.so); left out of the closure check"]
    # started by the config, it is a root: an error, and the image's copy is named
    with pytest.raises(ClosureError) as err:
        resolve_closure(view, programs=["/app/torch/bin/test_shim"])
    message = str(err.value)
    assert "not on its search path (the image has it at /app/torch/lib/libshm.so" in message
    assert "from: host" not in message  # the host has no libshm: that would not help


def test_programs_are_looked_up_along_path_and_through_a_shebang(tmp_path: Path) -> None:
    app = tmp_path / "app"
    src = c_file(tmp_path / "src", "main.c", "int main(void) { return 0; }\n")
    (app / "bin").mkdir(parents=True)
    gcc("-o", app / "bin" / "interp", src)
    (app / "run.sh").write_text("#!/usr/bin/env interp -x\n")
    view = view_of(app, "/opt")  # no libc: the program cannot start
    for programs in (["interp"], ["/opt/run.sh"]):
        with pytest.raises(ClosureError) as err:
            resolve_closure(view, programs=programs, path_dirs=["/opt/bin"],
                            scope=["/opt/bin/interp"])
        assert "/opt/bin/interp needs libc.so.6" in str(err.value)
    # on PATH it is a root even when nothing names it
    with pytest.raises(ClosureError):
        resolve_closure(view, path_dirs=["/opt/bin"])
    assert resolve_closure(view, strict=False).warnings  # off PATH: a stray


def test_host_fix_is_suggested_only_when_the_host_has_the_library(tmp_path: Path) -> None:
    app = tmp_path / "app"
    shared(app / "lib" / "libmine.so.1", "libmine.so.1", "int mine(void) { return 0; }\n")
    src = c_file(tmp_path / "src", "main.c", "int mine(void);\nint main(void) { return mine(); }\n")
    gcc("-o", app / "prog", src, "-L", app / "lib", "-l:libmine.so.1")
    shutil.rmtree(app / "lib")
    with pytest.raises(ClosureError) as err:
        resolve_closure(view_of(app, "/app"), programs=["/app/prog"])
    lines = {line.split(" needs ")[1].split(",")[0]: line for line in str(err.value).splitlines()}
    assert "libraries: {from: host}" in lines["libc.so.6"]      # the host has libc
    assert "libraries: {from: host}" not in lines["libmine.so.1"]


def test_the_images_ld_so_cache_is_searched_and_ld_so_conf_alone_is_not(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shared(root / "opt" / "vendor" / "libvendor.so.2", "libvendor.so.2",
           "int vendor(void) { return 0; }\n")
    src = c_file(tmp_path / "src", "main.c", "int vendor(void);\nint main(void) "
                 "{ return vendor(); }\n")
    (root / "bin").mkdir()
    gcc("-o", root / "bin" / "prog", src, "-L", root / "opt" / "vendor", "-l:libvendor.so.2")
    (root / "etc" / "ld.so.conf.d").mkdir(parents=True)
    (root / "etc" / "ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    (root / "etc" / "ld.so.conf.d" / "vendor.conf").write_text("# vendor\n/opt/vendor\n")
    programs = ["/bin/prog"]
    view = {**view_of(root, "/"), **host_c_runtime()}
    with pytest.raises(ClosureError) as err:
        resolve_closure(view, programs=programs)
    assert ("in /opt/vendor, which /etc/ld.so.conf names but the loader reads only "
            "/etc/ld.so.cache") in str(err.value)
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    subprocess.run([ldconfig, "-r", root, "-C", "/etc/ld.so.cache", "-f", "/etc/ld.so.conf",
                    "-X"], check=True, capture_output=True)
    entries = read_ld_cache((root / "etc" / "ld.so.cache").read_bytes())
    assert ("libvendor.so.2", 0x0303, "/opt/vendor/libvendor.so.2") in entries
    view = {**view_of(root, "/"), **host_c_runtime()}
    assert resolve_closure(view, programs=programs).missing == []


def test_the_host_ld_so_cache_reads_as_ldconfig_prints_it() -> None:
    cache = Path("/etc/ld.so.cache")
    if not cache.exists():
        unavailable("the build host has no /etc/ld.so.cache (Debian's libc-bin writes one)")
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    printed = set()
    for line in out.splitlines()[1:]:
        left, sep, path = line.partition(" => ")
        if sep:
            printed.add((left.split()[0], path.strip()))
    assert {(name, path) for name, _, path in read_ld_cache(cache.read_bytes())} == printed


def test_loader_dirs_and_tokens_follow_the_architecture() -> None:
    arm = layout_for_platform("arm64")
    assert arm.default_dirs == ("/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                                "/lib", "/usr/lib")
    assert (arm.lib, arm.platform) == ("lib/aarch64-linux-gnu", "aarch64")
    assert layout_for("EM_AARCH64", 64) == arm
    assert layout_for("EM_X86_64", 64).default_dirs[0] == "/lib/x86_64-linux-gnu"
    with pytest.raises(ClosureError, match="mips"):
        layout_for_platform("mips")
