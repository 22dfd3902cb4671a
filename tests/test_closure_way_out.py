"""The per-layer way out of a closure false positive: ``closure: {skip}`` keeps files
but leaves them out of the check, ``exclude`` leaves them out of the layer; a
pattern that is wrong or names nothing is an error with file:line:field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from builder.sources.archive import read_image

from helpers import cli, layer_members, write
from test_closure_search_order import c_file, gcc, shared

MANIFEST = """\
image: t/plugin:1
libraries: {{from: host}}
layers:
  - name: app
    files:
      - {{src: app, dest: /app}}
{extra}config:
  entrypoint: ["/app/prog"]
"""


@pytest.fixture
def plugin_app(tmp_path: Path) -> Path:
    """``/app/prog`` and ``/app/lib/libplugin.so``, which nothing loads and which needs
    ``libdriver.so.1``: a library the runtime's host provides (as libcuda), absent here."""
    app = tmp_path / "app"
    drv = shared(tmp_path / "drv" / "lib" / "libdriver.so.1", "libdriver.so.1",
                 "int drv(void) { return 0; }\n")
    shared(app / "lib" / "libplugin.so", "libplugin.so",
           "int drv(void);\nint plugin(void) { return drv(); }\n", "-L", drv.parent,
           "-l:libdriver.so.1")
    gcc("-o", app / "prog", c_file(tmp_path / "src", "main.c", "int main(void) { return 0; }\n"))
    shutil.rmtree(tmp_path / "drv")
    return tmp_path


def build(root: Path, extra: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, Path]:
    manifest = write(root / "ocibuild.yaml", MANIFEST.format(extra=extra))
    code, _, err = cli("build", manifest, "-o", root / "x.tar", "--cache-dir", root / "cache",
                       capsys=capsys)
    return code, err, manifest


def test_the_error_offers_skip_and_skip_keeps_the_file_out_of_the_check(
        plugin_app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err, _ = build(plugin_app, "", capsys)
    assert code == 1
    assert ("/app/lib/libplugin.so needs libdriver.so.1, which is neither in the image nor "
            "on the build host (add it to the base, or leave what loads it out of the check with "
            "closure: {skip: [/app/lib/libplugin.so]} on layer 'app')") in err
    code, err, _ = build(plugin_app, "    closure: {skip: [/app/lib/libplugin.so]}\n", capsys)
    assert code == 0, err
    members = layer_members(read_image(plugin_app / "x.tar"), -2)  # below 'libraries'
    assert "app/lib/libplugin.so" in members


def test_exclude_leaves_the_files_out_of_the_layer(plugin_app: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, err, _ = build(plugin_app, "    exclude: [/app/lib]\n", capsys)
    assert code == 0, err
    image = read_image(plugin_app / "x.tar")
    names = set().union(*(layer_members(image, i) for i in range(len(image.layers))))
    assert "app/prog" in names and not any(n.startswith("app/lib") for n in names)


@pytest.mark.parametrize("extra, line, field, message", [
    ("    exclude: [app/lib]\n", 7, "layers[0].exclude[0]", "start it with /"),
    ("    exclude: [/app/nothing/*]\n", 7, "layers[app].exclude[0]", "matches nothing"),
    ("    closure:\n      skip:\n        - /app/prog\n        - /app/lib/*.sx\n", 10,
     "layers[app].closure.skip[1]", "matches nothing in layer 'app'"),
    ("    exclude: [/app/lib]\n    closure: {skip: [/app/lib/libplugin.so]}\n", 8,
     "layers[app].closure.skip[0]", "matches nothing"),  # excluded first
    ("    closure: {ignore: [/app]}\n", 7, "layers[0].closure.ignore", "unknown key"),
])
def test_a_wrong_pattern_names_file_line_and_field(plugin_app: Path, extra: str, line: int,
                                                   field: str, message: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, err, manifest = build(plugin_app, extra, capsys)
    assert code == 1
    assert f"{manifest}:{line}: {field}" in err and message in err, err
    assert "Traceback" not in err
