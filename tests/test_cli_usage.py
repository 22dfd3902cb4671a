"""Everyday command forms: ``ocibuild manifest.yaml -o image.tar``, a build that writes
nothing says so, and counts are pluralized right."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import cli, write

ROOT = Path(__file__).resolve().parent.parent
ONE_FILE = """\
image: t/usage:1
layers:
  - name: app
    files:
      - {src: a.txt, dest: /a.txt}
"""


def _manifest(tmp_path: Path) -> Path:
    (tmp_path / "a.txt").write_text("a\n")
    return write(tmp_path / "ocibuild.yaml", ONE_FILE)


def test_a_yaml_first_argument_means_build(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    code, out, _ = cli(manifest, "-o", tmp_path / "short.tar", "--json", capsys=capsys)
    assert code == 0
    short = json.loads(out)
    code, out, _ = cli("build", manifest, "-o", tmp_path / "long.tar", "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["digest"] == short["digest"]
    assert (tmp_path / "short.tar").read_bytes() == (tmp_path / "long.tar").read_bytes()


def test_a_missing_yaml_first_argument_is_a_missing_manifest(tmp_path, capsys):
    code, _, err = cli(tmp_path / "nope.yaml", "-o", tmp_path / "x.tar", capsys=capsys)
    assert code == 1
    assert err.strip() == f"error: {tmp_path / 'nope.yaml'}: file not found"


def test_help_shows_the_short_form():
    done = subprocess.run([sys.executable, "-m", "builder", "--help"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0
    assert done.stdout.startswith("usage: ocibuild MANIFEST.yaml -o image.tar")
    assert "ocibuild ocibuild.yaml -o image.tar" in " ".join(done.stdout.split())


def test_build_without_output_says_nothing_was_written(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    code, out, err = cli("build", manifest, capsys=capsys)
    assert code == 0 and out.startswith("image  sha256:")
    assert "nothing written: no -o FILE (or --push REF) given" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "ocibuild.yaml"]
    code, _, err = cli("build", manifest, "-o", tmp_path / "x.tar", capsys=capsys)
    assert code == 0 and "nothing written" not in err


def test_counts_are_pluralized(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    code, out, err = cli("build", manifest, "-o", tmp_path / "x.tar", capsys=capsys)
    assert code == 0 and " 1 layer " in out and " 1 file " in err
    code, out, _ = cli("inspect", tmp_path / "x.tar", capsys=capsys)
    assert code == 0
    assert "uncompressed, 1 file\n" in out
    assert " 1 file  app" in out
    assert "1 files" not in out
