"""Hermetic freezes: a ``pyinstaller:`` layer with ``build_root:`` is frozen by the
root's own Python (Debian's, from base_images/python-build.yaml, locked per
architecture), never the build host's. Here: the errors, the runner's view of the
host, and the root's safety; tests/test_hermetic_freeze_hosts.py freezes for real.
"""

from __future__ import annotations

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
