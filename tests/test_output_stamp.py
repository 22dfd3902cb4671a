"""A rebuild whose output is already what it would write leaves the file alone.

The cache records, per output path, which archive it wrote and the file's
status afterwards; anything that touches the file (a write, a truncation, a
replacement) or changes the archive (content, tag, epoch) makes it write again.
"""

from __future__ import annotations

import json
import os
import tarfile

from builder.sources.archive import read_image
from helpers import cli, validate_image, write

MANIFEST = """\
image: t/stamp:1
layers:
  - name: app
    files:
      - {src: app.txt, dest: /app/app.txt}
"""


def _build(tmp_path, capsys, *extra):
    code, out, err = cli("build", tmp_path / "ocibuild.yaml", "-o", tmp_path / "image.tar",
                         "--json", *extra, capsys=capsys)
    assert code == 0, err
    return json.loads(out)


def test_an_up_to_date_output_is_not_rewritten(tmp_path, capsys, monkeypatch):
    (tmp_path / "app.txt").write_text("one")
    write(tmp_path / "ocibuild.yaml", MANIFEST)
    out = tmp_path / "image.tar"
    first = _build(tmp_path, capsys)
    assert first["output_written"] is True
    before = os.stat(out)
    again = _build(tmp_path, capsys)
    assert again["output_written"] is False and again["digest"] == first["digest"]
    after = os.stat(out)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    # the file was damaged: it is written again, whole
    with open(out, "r+b") as f:
        f.truncate(before.st_size // 2)
    assert _build(tmp_path, capsys)["output_written"] is True
    validate_image(read_image(out))
    assert os.stat(out).st_size == before.st_size

    # another tag, another epoch, other content: each is a different archive
    assert _build(tmp_path, capsys, "--tag", "t/stamp:2")["output_written"] is True
    with tarfile.open(out) as tar:
        assert json.load(tar.extractfile("manifest.json"))[0]["RepoTags"] == ["t/stamp:2"]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert _build(tmp_path, capsys, "--tag", "t/stamp:2")["output_written"] is True
    (tmp_path / "app.txt").write_text("two")
    changed = _build(tmp_path, capsys, "--tag", "t/stamp:2")
    assert changed["output_written"] is True and changed["digest"] != first["digest"]
    assert read_image(out).digest == changed["digest"]


def test_a_replaced_output_is_rewritten(tmp_path, capsys):
    (tmp_path / "app.txt").write_text("one")
    write(tmp_path / "ocibuild.yaml", MANIFEST)
    out = tmp_path / "image.tar"
    _build(tmp_path, capsys)
    saved = out.read_bytes()
    out.unlink()
    out.write_bytes(saved)  # same bytes, but a new file: nothing recorded vouches for it
    assert _build(tmp_path, capsys)["output_written"] is True
    assert out.read_bytes() == saved


def test_temp_files_of_killed_builds_are_removed(tmp_path, capsys):
    """A build killed with SIGKILL leaves its temp file; the next build removes it,
    but never the temp file of a build still running."""
    import subprocess
    import sys

    (tmp_path / "app.txt").write_text("one")
    write(tmp_path / "ocibuild.yaml", MANIFEST)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".image.tar.{dead.pid}.abcd1234.tmp"
    running = tmp_path / f".image.tar.{os.getpid()}.efgh5678.tmp"
    stale.write_bytes(b"x" * 1000)
    running.write_bytes(b"y")
    _build(tmp_path, capsys)
    assert not stale.exists() and running.exists()
    validate_image(read_image(tmp_path / "image.tar"))


def test_a_damaged_cached_layer_is_rebuilt_not_used(tmp_path, capsys, monkeypatch):
    """A cache blob changed in place (same size) is caught by its changed status, then
    its digest: the layer is built again and the image is intact."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("OCIBUILD_CACHE", str(cache))
    (tmp_path / "app.txt").write_text("one" * 1000)
    write(tmp_path / "ocibuild.yaml", MANIFEST)
    first = _build(tmp_path, capsys)
    blob = cache / "blobs" / "sha256" / first["layers"][0]["digest"].split(":", 1)[1]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    (tmp_path / "image.tar").unlink()
    again = _build(tmp_path, capsys)
    assert again["digest"] == first["digest"] and again["layers"][0]["cached"] is False
    validate_image(read_image(tmp_path / "image.tar"))
    # touched but not changed: hashed once, used, and trusted again afterwards
    os.utime(blob)
    assert _build(tmp_path, capsys, "--tag", "t/stamp:3")["layers"][0]["cached"] is True


def test_temp_blobs_of_killed_builds_leave_the_cache(tmp_path, capsys, monkeypatch):
    import subprocess
    import sys

    cache = tmp_path / "cache"
    monkeypatch.setenv("OCIBUILD_CACHE", str(cache))
    (tmp_path / "app.txt").write_text("one")
    write(tmp_path / "ocibuild.yaml", MANIFEST)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (cache / "blobs").mkdir(parents=True)
    stale = cache / "blobs" / f".layer.{dead.pid}.x1y2z3.tmp"
    stale.write_bytes(b"half a layer")
    _build(tmp_path, capsys)
    assert not stale.exists()
