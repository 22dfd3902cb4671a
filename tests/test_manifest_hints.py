"""Errors that teach: a misspelt key is named with its likely meaning, a relative image
path is refused with the absolute one to write, YAML syntax errors show the line, a caret
and a hint, and the manifest is named as the user typed it."""

from __future__ import annotations

import pytest

from helpers import cli, write

LAYER = "  - name: d\n    files:\n      - {src: a.txt, dest: /a.txt}\n"


def _build(tmp_path, text, capsys, name="ocibuild.yaml"):
    (tmp_path / "a.txt").write_text("a\n")
    manifest = write(tmp_path / name, text)
    code, _, err = cli("build", manifest, "-o", tmp_path / "out.tar", capsys=capsys)
    assert code == 1 and "Traceback" not in err
    assert not (tmp_path / "out.tar").exists()
    return manifest, err.rstrip("\n")


@pytest.mark.parametrize("text, line, expected", [
    ("image: x/y:1\nlayers:\n  - name: d\n    files:\n      - {src: a.txt, dset: /a}\n", 5,
     "layers[0].files[0].dset: unknown key 'dset' (did you mean 'dest'?)"),
    ("imagee: x/y:1\nlayers:\n" + LAYER, 1, "imagee: unknown key 'imagee' (did you mean 'image'?)"),
    ("image: x/y:1\nlayer:\n" + LAYER, 2, "layer: unknown key 'layer' (did you mean 'layers'?)"),
    ("image: x/y:1\nlayers:\n  - name: d\n    directories: [{path: /d, mdoe: '0700'}]\n", 4,
     "layers[0].directories[0].mdoe: unknown key 'mdoe' (did you mean 'mode'?)"),
    ("image: x/y:1\nlayers:\n" + LAYER + "config:\n  wokdir: /app\n", 7,
     "config.wokdir: unknown key 'wokdir' (did you mean 'workdir'?)"),
])
def test_a_misspelt_key_is_named_with_the_key_it_resembles(tmp_path, capsys, text, line,
                                                           expected):
    manifest, err = _build(tmp_path, text, capsys)
    assert err == f"error: {manifest}:{line}: {expected}"


def test_an_unknown_key_like_no_other_lists_the_known_ones(tmp_path, capsys):
    manifest, err = _build(tmp_path, "image: x/y:1\nlayers:\n" + LAYER + "colour: red\n",
                           capsys)
    assert err.startswith(f"error: {manifest}:6: colour: unknown key 'colour' (known keys "
                          "here: base, compression, config, image, layers, libraries, platform")
    assert "did you mean" not in err


@pytest.mark.parametrize("where, text", [
    ("layers[0].files[0].dest", "  - name: d\n    files:\n      - {src: a.txt, dest: www/a}\n"),
    ("layers[0].directories[0].path", "  - name: d\n    directories: [{path: www/a}]\n"),
    ("layers[0].dest", "  - name: d\n    files: [{src: a.txt, dest: /a}]\n    dest: www/a\n"),
])
def test_a_relative_image_path_is_refused_with_the_absolute_one_to_write(tmp_path, capsys,
                                                                        where, text):
    manifest, err = _build(tmp_path, "image: x/y:1\nlayers:\n" + text, capsys)
    assert err.startswith(f"error: {manifest}:")
    assert f"{where}: 'www/a' must be an absolute path (write '/www/a';" in err


def test_workdir_must_be_absolute_too(tmp_path, capsys):
    manifest, err = _build(tmp_path, "image: x/y:1\nlayers:\n" + LAYER +
                           "config:\n  workdir: ./app\n", capsys)
    assert err.startswith(f"error: {manifest}:7: config.workdir: './app' must be an "
                          "absolute path (write '/app';")


SYNTAX = {
    "no_space_after_colon": ("image:x/y:1\nlayers:\n" + LAYER, 2, 7, "layers:",
                             "      ^", "line 1: a key needs a space after ':' "
                             "(`image: value`, not `image:value`)"),
    "indentation": ("image: x/y:1\n layers:\n" + LAYER, 2, 8, " layers:", "       ^",
                    "this line is indented differently from the key above it"),
    "tab": ("image: x/y:1\nlayers:\n\t- name: d\n", 3, 1, " - name: d", "^",
            "YAML indents with spaces only"),
    "dash_without_space": ("image: x/y:1\nlayers:\n" + LAYER + "  -name: e\n", 6, 3,
                           "  -name: e", "  ^", "line 6: a list item needs a space after '-'"),
    "misaligned_keys": ("image: x/y:1\nlayers:\n  - name: d\n    files:\n      - src: a.txt\n"
                        "     dest: /a\n", 6, 6, "     dest: /a", "     ^",
                        "check the indentation"),
    "unclosed_quote": ("image: 'x/y:1\nlayers: []\n", 1, 8, "image: 'x/y:1", "       ^",
                       "a quote is opened here and never closed"),
    "unclosed_bracket": ("image: x/y:1\nlayers: [\n", 2, 10, "layers: [", "         ^",
                         "a [ or { is not closed"),
}


@pytest.mark.parametrize("name", sorted(SYNTAX))
def test_a_yaml_syntax_error_shows_the_line_a_caret_and_a_hint(tmp_path, capsys, name):
    text, line, column, source, caret, hint = SYNTAX[name]
    manifest, err = _build(tmp_path, text, capsys)
    first, shown, pointer, hint_line = err.split("\n")
    assert first.startswith(f"error: {manifest}:{line}:{column}: invalid YAML: ")
    assert shown == f"{line:>5} | {source}"
    assert pointer == f"      | {caret}"
    assert hint_line.startswith("  hint: ") and hint in hint_line


def test_errors_name_the_manifest_as_typed(tmp_path, capsys, monkeypatch):
    """A YAML error, a field error and an error found while building all say
    ``sub/ocibuild.yaml``, the path given on the command line."""
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub" / "a.txt").write_text("a\n")
    cases = ["image: x/y:1\nlayers: [\n",
             "image: x/y:1\nlayers:\n  - name: d\n    files: [{src: nope, dest: /a}]\n",
             "image: x/y:1\nlayers:\n  - name: d\n    files:\n"
             "      - {src: a.txt, dest: /f}\n      - {src: a.txt, dest: /f/g}\n"]
    for text in cases:
        write(tmp_path / "sub" / "ocibuild.yaml", text)
        code, _, err = cli("build", "sub/ocibuild.yaml", "-o", "out.tar", capsys=capsys)
        assert code == 1 and err.startswith("error: sub/ocibuild.yaml:"), err
