"""Malformed manifests: exit 1, a message naming file, line and field, no output."""

from __future__ import annotations

import pytest

from helpers import cli, write

GOOD_LAYER = """\
  - name: data
    files:
      - {src: a.txt, dest: /a.txt}
"""

CASES = {
    "unknown_key": ("image: x/y:1\nlayers:\n" + GOOD_LAYER + "colour: red\n", 6,
                    "colour: unknown key"),
    "unknown_nested_key": ("image: x/y:1\nlayers:\n  - name: d\n    files:\n"
                           "      - {src: a.txt, dest: /a, mdoe: '0644'}\n", 5,
                           "layers[0].files[0].mdoe: unknown key"),
    "wrong_type": ("image: x/y:1\nlayers:\n  - name: d\n    files: a.txt\n", 4,
                   "layers[0].files: expected a list"),
    "missing_src": ("image: x/y:1\nlayers:\n  - name: d\n    files:\n"
                    "      - {src: nope.txt, dest: /a}\n", 5,
                    "layers[0].files[0].src: 'nope.txt' does not exist"),
    "dest_traversal": ("image: x/y:1\nlayers:\n  - name: d\n    files:\n"
                       "      - {src: a.txt, dest: ../../etc/passwd}\n", 5,
                       "layers[0].files[0].dest: path '../../etc/passwd' escapes the image root"),
    "symlink_escape": ("image: x/y:1\nlayers:\n  - name: d\n    symlinks:\n"
                       "      - path: /app/l\n        target: ../../../etc\n", 6,
                       "layers[0].symlinks[0].target"),
    "bad_mode": ("image: x/y:1\nlayers:\n  - name: d\n    files:\n"
                 "      - {src: a.txt, dest: /a, mode: '0999'}\n", 5,
                 'layers[0].files[0].mode: "0999" is not an octal file mode'),
    "bad_user": ("image: x/y:1\nlayers:\n" + GOOD_LAYER + "config:\n  user: 'root user'\n", 7,
                 "config.user"),
    "named_user_on_scratch": ("image: x/y:1\nlayers:\n" + GOOD_LAYER +
                              "config:\n  user: nonroot\n", 7, "no /etc/passwd"),
    "duplicate_layer": ("image: x/y:1\nlayers:\n" + GOOD_LAYER + GOOD_LAYER, 6,
                        "layers[1].name: duplicate layer name 'data'"),
    "empty_layer": ("image: x/y:1\nlayers:\n  - name: nothing\n", 3, "has no content"),
    "missing_image": ("layers:\n" + GOOD_LAYER, 1, "image: is required"),
    "bad_image_name": ("image: My Image\nlayers:\n" + GOOD_LAYER, 1, "not a valid image name"),
    "bad_port": ("image: x/y:1\nlayers:\n" + GOOD_LAYER + "config:\n  ports: [99999]\n", 7,
                 "config.ports[0]"),
    "bad_platform": ("image: x/y:1\nplatform: amd64\nlayers:\n" + GOOD_LAYER, 2, "platform"),
    "tar_is_a_directory": ("image: x/y:1\nlayers:\n  - name: t\n    tar: sub\n", 4,
                           "layers[0].tar"),
    "duplicate_key": ("image: x/y:1\nimage: x/z:1\nlayers:\n" + GOOD_LAYER, 2, "duplicate key"),
    "bad_stop_signal": ("image: x/y:1\nlayers:\n" + GOOD_LAYER +
                        "config:\n  stop_signal: SIGFOO\n", 7, "config.stop_signal"),
    "file_below_a_file": ("image: x/y:1\nlayers:\n  - name: d\n    files:\n"
                          "      - {src: a.txt, dest: /f}\n      - {src: a.txt, dest: /f/g}\n",
                          3, "layers[d]: /f/g: its parent /f is not a directory"),
    "file_and_directory": ("image: x/y:1\nlayers:\n  - name: d\n    directories:\n"
                           "      - {path: /d/f}\n    files:\n      - {src: a.txt, dest: /d/f}\n",
                           3, "layers[d]: /d/f is given both as a directory and as a file"),
    "env_not_string": ("image: x/y:1\nlayers:\n" + GOOD_LAYER + "config:\n  env: {DEBUG: true}\n",
                       7, "config.env.DEBUG"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_manifest(name, tmp_path, capsys):
    text, line, expected = CASES[name]
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "sub").mkdir()
    manifest = write(tmp_path / "ocibuild.yaml", text)
    out = tmp_path / "image.tar"
    code, stdout, stderr = cli("build", manifest, "-o", out, capsys=capsys)
    assert code == 1, stderr
    message = stderr.strip()
    assert message.startswith(f"error: {manifest}:{line}: "), message
    assert expected in message
    assert "Traceback" not in stderr and "\n" not in message
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".image")] == []


def test_usage_error_exit_code(capsys):
    with pytest.raises(SystemExit) as exc:
        cli("build")
    assert exc.value.code == 2


def test_failed_build_keeps_previous_output(tmp_path, capsys):
    """A failing build never touches (or truncates) an existing output file."""
    (tmp_path / "a.txt").write_text("a\n")
    out = tmp_path / "image.tar"
    out.write_bytes(b"previous image")
    manifest = write(tmp_path / "m.yaml", "image: x/y:1\nlayers:\n  - name: t\n    tar: a.txt\n")
    code, _, stderr = cli("build", manifest, "-o", out, capsys=capsys)
    assert code == 1 and "not a readable tar archive" in stderr
    assert out.read_bytes() == b"previous image"


@pytest.mark.parametrize("given, written", [("SIGTERM", "SIGTERM"), ("term", "SIGTERM"),
                                            ("SIGRTMIN+3", "SIGRTMIN+3"), (9, "9")])
def test_stop_signal_forms(given, written, tmp_path):
    from builder.manifest import load_manifest

    (tmp_path / "a.txt").write_text("a\n")
    manifest = write(tmp_path / "ocibuild.yaml", "image: x/y:1\nlayers:\n" + GOOD_LAYER +
                     f"config:\n  stop_signal: {given}\n")
    assert load_manifest(manifest).config.stop_signal == written
