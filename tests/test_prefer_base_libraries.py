"""A bundle's host copy of a library the base ships from Debian is left out: the
program loads the base's copy (scanners see it, the image is smaller)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from builder.cli import main
from builder.layers.entries import Entry
from builder.sources.archive import read_image
from builder.sources.attribution import HOST_FILES_LABEL, prefer_base_libraries
from builder.sources.files import tree_entries
from builder.sources.ldso import layout_for_platform

from helpers import layer_members, write
from runtime import prepare_bundle, runc_run, unpack
from test_closure_symbol_versions import libfoo

REPO = Path(__file__).resolve().parent.parent
LAYOUT = layout_for_platform("amd64")
LIBDIR = "/usr/lib/x86_64-linux-gnu"
SSL = Path(LIBDIR) / "libssl.so.3"


def base_view(root: Path, files: dict[str, Path], owned: list[str]) -> dict[str, Entry]:
    """A base holding ``files`` (image path -> host file); a Debian package ``libx``
    lists the ``owned`` ones in its md5sums, as ocibuild's bases write it."""
    for image, host in files.items():
        dest = root / image.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(host, dest)
    status = root / "var" / "lib" / "dpkg" / "status.d"
    status.mkdir(parents=True)
    (status / "libx").write_text("Package: libx\nStatus: install ok installed\n"
                                 "Version: 1.0-1\nArchitecture: amd64\n")
    (status / "libx.md5sums").write_text("".join(f"0123  {p.lstrip('/')}\n" for p in owned))
    return {e.path: e for e in tree_entries(root, "/")}


def bundle(root: Path, files: dict[str, Path]) -> list[Entry]:
    internal = root / "_internal"
    internal.mkdir(parents=True)
    for name, host in files.items():
        shutil.copy(host, internal / name)
    return tree_entries(root, "/app")


@pytest.mark.skipif(not SSL.exists(), reason="the build host has no libssl.so.3")
def test_a_debian_copy_in_the_base_replaces_the_bundles(tmp_path: Path) -> None:
    for d in ("new", "old"):
        (tmp_path / d).mkdir()
    foo_new = libfoo(tmp_path / "new" / "libfoo.so.1", [("FOO_1", ["foo_one"]),
                                                        ("FOO_2", ["foo_two"])])
    foo_old = libfoo(tmp_path / "old" / "libfoo.so.1", [("FOO_1", ["foo_one"])])
    base = base_view(tmp_path / "base", {f"{LIBDIR}/libssl.so.3": SSL,
                                         f"{LIBDIR}/libfoo.so.1": foo_old,
                                         "/opt/libbar.so.1": foo_old,
                                         f"{LIBDIR}/libbaz.so.1": foo_new},
                     owned=[f"{LIBDIR}/libssl.so.3", f"{LIBDIR}/libfoo.so.1",
                            "/opt/libbar.so.1"])
    entries = bundle(tmp_path / "app", {"libssl.so.3": SSL, "libfoo.so.1": foo_new,
                                        "libbar.so.1": foo_new, "libbaz.so.1": foo_new})
    kept, dropped = prefer_base_libraries(entries, base, ["/app/_internal"], LAYOUT)
    assert [(e.path, real) for e, real in dropped] == [
        ("/app/_internal/libssl.so.3", f"{LIBDIR}/libssl.so.3")]
    left = {e.path for e in kept}
    assert "/app/_internal/libssl.so.3" not in left
    # older than the bundle's (FOO_2 missing), off the default dirs, or not Debian's: kept
    assert {"/app/_internal/libfoo.so.1", "/app/_internal/libbar.so.1",
            "/app/_internal/libbaz.so.1"} <= left
    # no base, nothing dropped
    assert prefer_base_libraries(entries, {}, ["/app/_internal"], LAYOUT) == (entries, [])


APP = """\
import hashlib
import ssl

print(ssl.OPENSSL_VERSION, hashlib.sha256(b"x").hexdigest()[:8])
"""

MANIFEST = """\
image: t/ssl:1
base: {base}
layers:
  - name: app
    pyinstaller:
      entry: app.py
    dest: /app
config:
  entrypoint: ["/app/app"]
"""


@pytest.mark.slow
@pytest.mark.network  # the python-ml base's .debs
def test_a_bundle_needing_libssl_uses_the_bases_libssl3_and_still_answers(
        tmp_path: Path) -> None:
    write(tmp_path / "app.py", APP)
    manifest = write(tmp_path / "ocibuild.yaml", MANIFEST.format(
        base=REPO / "base_images" / "python-ml.yaml"))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["build", str(manifest), "-o", str(tmp_path / "ssl.tar"),
                     "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, err.getvalue()
    assert "the base's Debian copies used instead: " in err.getvalue()
    image = read_image(tmp_path / "ssl.tar")
    members = set().union(*(layer_members(image, i) for i in range(1, len(image.layers))))
    bundled = {Path(m).name for m in members if m.startswith("app/_internal/lib")}
    assert not {"libssl.so.3", "libcrypto.so.3"} & bundled, sorted(bundled)
    labels = image.config["config"].get("Labels") or {}
    host = json.loads(labels.get(HOST_FILES_LABEL, "{}"))
    assert "/app/_internal/libssl.so.3" not in host
    assert any(name.startswith("libpython") for name in map(lambda p: Path(p).name, host))
    run = unpack(tmp_path / "ssl.tar", tmp_path / "run")
    prepare_bundle(run)
    result = runc_run(run)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OpenSSL 3.") and result.stdout.split()[-1] == "2d711642"
