"""Lazy start-up: ``ocibuild --help`` and ``ocibuild inspect`` import no heavy modules.

requests, zstandard and PyInstaller are imported only by the commands that use
them (push/pull, zstd layers, frozen apps), so the everyday commands start fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HEAVY = ("requests", "urllib3", "zstandard", "PyInstaller")
ROOT = Path(__file__).resolve().parent.parent

PROBE = textwrap.dedent("""
    import json, sys
    from builder.cli import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as e:
        code = e.code
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in %r)
    print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
""" % (HEAVY,))


def _probe(*argv: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    return json.loads(done.stderr.strip().splitlines()[-1])


def _image(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print('hi')\n")
    manifest = tmp_path / "ocibuild.yaml"
    manifest.write_text("image: t/startup:1\nlayers:\n  - name: app\n    files:\n"
                        "      - {src: app, dest: /app}\n")
    out = tmp_path / "image.tar"
    subprocess.run([sys.executable, "-m", "builder", "build", str(manifest), "-o", str(out),
                    "-q", "--cache-dir", str(tmp_path / "cache")],
                   check=True, cwd=ROOT, capture_output=True, timeout=120)
    return out


@pytest.mark.parametrize("argv", [["--help"], ["inspect", "--help"], ["build", "--help"],
                                  ["push", "--help"]])
def test_help_imports_nothing_heavy(argv):
    result = _probe(*argv)
    assert result["code"] == 0
    assert result["heavy"] == []


def test_inspect_of_a_gzip_image_imports_nothing_heavy(tmp_path):
    image = _image(tmp_path)
    result = _probe("inspect", str(image))
    assert result["code"] == 0
    assert result["heavy"] == []


def test_importtime_of_help(tmp_path):
    """``python -X importtime -m builder --help``: no heavy module, and a quick start."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "builder", "--help"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0
    rows = [line.split("|") for line in done.stderr.splitlines()
            if line.startswith("import time:") and "|" in line]
    names = {row[2].strip() for row in rows if len(row) == 3}
    assert not {n for n in names if n.split(".")[0] in HEAVY}
    ours = sum(int(row[0].split(":")[1]) for row in rows
               if len(row) == 3 and row[2].strip().startswith("builder"))
    print(f"builder modules import in {ours / 1000:.1f} ms")
    assert ours < 500_000  # µs: generous on a noisy machine; typically ~10 ms
