"""Hermetic freezes: a ``pyinstaller:`` layer with ``build_root:`` is frozen by the
root's own Python (Debian's, from base_images/python-build.yaml, locked per
architecture), never the build host's. Here: the errors, the runner's view of the
host, and the root's safety; tests/test_hermetic_freeze_hosts.py freezes for real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.platforms import host_architecture
from builder.sources import buildroot
from helpers import cli, write
from test_platforms_runtime import QEMU_HINT

REPO = Path(__file__).resolve().parent.parent
BUILD_ROOT = REPO / "base_images" / "python-build.yaml"
APP = "print('hi')\n"


def test_no_binfmt_handler_is_an_error_naming_the_package(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(buildroot, "BINFMT_DIR", tmp_path / "binfmt_misc")  # none registered
    (tmp_path / "app.py").write_text(APP)
    manifest = write(tmp_path / "ocibuild.yaml", f"""
        image: test/hermetic:1
        platforms: [linux/arm64]
        layers:
          - name: app
            pyinstaller: {{entry: app.py, build_root: {BUILD_ROOT}}}
        """)
    code, _, err = cli("build", manifest, "-o", tmp_path / "i.tar", capsys=capsys)
    assert code == 1
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    assert "cannot run arm64 programs" in line and "qemu-user-static" in line
    assert not (tmp_path / "i.tar").exists()
    assert QEMU_HINT.startswith("apt-get install -y qemu-user-static")


def test_build_root_must_name_a_base_definition(tmp_path, capsys):
    (tmp_path / "app.py").write_text(APP)
    manifest = write(tmp_path / "ocibuild.yaml", """
        image: test/hermetic:1
        layers:
          - name: app
            pyinstaller: {entry: app.py, build_root: nowhere.yaml}
        """)
    code, _, err = cli("build", manifest, "-o", tmp_path / "i.tar", capsys=capsys)
    assert code == 1
    assert f"{manifest}:4: layers[0].pyinstaller.build_root: 'nowhere.yaml' is not a base " \
           "definition file" in err


def test_a_freeze_is_hermetic_unless_the_manifest_says_build_root_host(tmp_path):
    from builder.manifest import load_manifest

    (tmp_path / "app.py").write_text(APP)

    def build_root(line: str):
        manifest = write(tmp_path / "ocibuild.yaml", f"""
            image: test/hermetic:1
            layers:
              - name: app
                pyinstaller: {{entry: app.py{line}}}
            """)
        [layer] = load_manifest(manifest).layers
        return layer.pyinstaller.build_root

    assert build_root("") == buildroot.DEFAULT_DEFINITION == BUILD_ROOT
    assert build_root(", build_root: host") is None
    assert build_root(f", build_root: {BUILD_ROOT}") == BUILD_ROOT


def test_a_missing_default_build_root_says_how_to_name_one(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(buildroot, "DEFAULT_DEFINITION", tmp_path / "gone" / "python-build.yaml")
    (tmp_path / "app.py").write_text(APP)
    manifest = write(tmp_path / "ocibuild.yaml", """
        image: test/hermetic:1
        layers:
          - name: app
            pyinstaller: {entry: app.py}
        """)
    code, _, err = cli("build", manifest, "-o", tmp_path / "i.tar", capsys=capsys)
    assert code == 1
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    assert f"{manifest}:4: layers[0].pyinstaller: ocibuild's default build root" in line
    assert "build_root: host" in line


def test_root_runner_sees_the_root_and_only_the_paths_it_is_given(tmp_path):
    """The runner's command line: the root read-only as /, the freeze cache writable,
    the app read-only, nothing of the host's /usr."""
    root = buildroot.BuildRoot(tmp_path / "root", host_architecture(), "k",
                               "/usr/bin/python3.11")
    (tmp_path / "root").mkdir()
    (tmp_path / "cache").mkdir()
    (tmp_path / "app").mkdir()
    runner = buildroot.RootRunner(root, rw=[tmp_path / "cache"], ro=[tmp_path / "app"],
                                  bwrap="/usr/bin/bwrap")
    cmd = runner.command(["/usr/bin/python3.11", "-V"], cwd=tmp_path / "app")
    assert cmd[:4] == ["/usr/bin/bwrap", "--ro-bind", str(tmp_path / "root"), "/"]
    pairs = list(zip(cmd, cmd[1:], cmd[2:]))
    assert ("--bind", str(tmp_path / "cache"), str(tmp_path / "cache")) in pairs
    assert ("--ro-bind", str(tmp_path / "app"), str(tmp_path / "app")) in pairs
    assert not any(a == "/usr" or a.startswith("/usr/") for a in cmd[4:cmd.index("--")])
    assert cmd[cmd.index("--") + 1:] == ["/usr/bin/python3.11", "-V"]


def test_materialize_never_writes_through_a_symlink_out_of_the_root(tmp_path):
    import io

    from builder.errors import FreezeError
    from builder.layers.entries import Entry

    outside = tmp_path / "host"
    outside.mkdir()
    entries = [Entry.directory("/usr", 0o755), Entry.symlink("/usr/lib", str(outside)),
               Entry.file("/usr/lib/libx.so", lambda: io.BytesIO(b"x"), 1)]
    with pytest.raises(FreezeError, match="through a symlink that leads outside the root"):
        buildroot.materialize(entries, tmp_path / "root")
    assert list(outside.iterdir()) == []


def test_a_bundles_build_root_libraries_are_attributed_to_the_roots_locked_packages(tmp_path):
    """What the SBOM says of a hermetic bundle's copies: the root's Debian package of
    each, found through the root's soname links and merged /usr; not the host's."""
    from builder.layers.entries import Entry
    from builder.sources.attribution import build_root_libraries, build_root_origins
    from builder.sources.ldso import layout_for_platform

    root = tmp_path / "root"
    lib = root / "usr" / "lib" / "aarch64-linux-gnu"
    dynload = root / "usr" / "lib" / "python3.11" / "lib-dynload"
    for d in (lib, dynload, root / "var" / "lib" / "dpkg" / "status.d"):
        d.mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")
    (lib / "libexpat.so.1.8.10").write_bytes(b"\x7fELF")
    (lib / "libexpat.so.1").symlink_to("libexpat.so.1.8.10")
    (lib / "libpython3.11.so.1.0").write_bytes(b"\x7fELF")
    (dynload / "_ssl.cpython-311-aarch64-linux-gnu.so").write_bytes(b"\x7fELF")
    status = root / "var" / "lib" / "dpkg" / "status.d"
    for package, version, listed in [
            ("libexpat1", "2.5.0-1", "lib/aarch64-linux-gnu/libexpat.so.1.8.10"),
            ("libpython3.11", "3.11.2-6", "usr/lib/aarch64-linux-gnu/libpython3.11.so.1.0"),
            ("libpython3.11-stdlib", "3.11.2-6",
             "usr/lib/python3.11/lib-dynload/_ssl.cpython-311-aarch64-linux-gnu.so")]:
        (status / package).write_text(f"Package: {package}\nStatus: install ok installed\n"
                                      f"Version: {version}\nArchitecture: arm64\n")
        (status / f"{package}.md5sums").write_text(f"0a  {listed}\n")
    bundle = "/app/_internal"
    names = ["libexpat.so.1", "libpython3.11.so.1.0", "libelsewhere.so.2",
             "python3.11/lib-dynload/_ssl.cpython-311-aarch64-linux-gnu.so", "numpy/x.so"]
    entries = [Entry.file(f"{bundle}/{n}", lambda: None, 0) for n in names]
    entries.append(Entry.file("/app/app", lambda: None, 0))
    libraries = build_root_libraries(root, layout_for_platform("arm64"))
    assert json.loads(json.dumps(libraries)) == libraries  # kept as a cache note
    origins = build_root_origins(entries, [bundle], libraries, "python-build.yaml (arm64)",
                                 ["/app/app"])
    assert {path: origin[:3] for path, origin in origins.items()} == {
        "/app/app": ("pypi", "pyinstaller", origins["/app/app"][2]),
        f"{bundle}/libexpat.so.1": ("deb", "libexpat1", "2.5.0-1"),
        f"{bundle}/libpython3.11.so.1.0": ("deb", "libpython3.11", "3.11.2-6"),
        f"{bundle}/python3.11/lib-dynload/_ssl.cpython-311-aarch64-linux-gnu.so":
            ("deb", "libpython3.11-stdlib", "3.11.2-6")}
    assert origins[f"{bundle}/libexpat.so.1"][3] == (
        "/lib/aarch64-linux-gnu/libexpat.so.1.8.10 in the build root python-build.yaml (arm64)")


def test_a_host_that_refuses_user_namespaces_gets_the_ways_out(tmp_path):
    """bwrap's own failure (here: a stand-in printing what bwrap prints where
    unprivileged user namespaces are off; this test machine runs as root) is an error
    saying what to allow, or to freeze with the host's Python."""
    import subprocess

    from builder.errors import FreezeError

    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied'\nexit 1\n")
    fake.chmod(0o755)
    (tmp_path / "root").mkdir()
    root = buildroot.BuildRoot(tmp_path / "root", host_architecture(), "k",
                               "/usr/bin/python3.11")
    runner = buildroot.RootRunner(root, bwrap=str(fake))
    with pytest.raises(FreezeError) as err:
        runner(["/usr/bin/python3.11", "-V"], stdout=subprocess.PIPE,
               stderr=subprocess.STDOUT, text=True, check=False)
    message = str(err.value)
    assert message.startswith("bwrap could not start /usr/bin/python3.11 in the build root: "
                              "bwrap: setting up uid map: Permission denied")
    assert "user namespaces" in message and "build_root: host" in message
