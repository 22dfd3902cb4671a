"""Test helpers: write manifests, run the CLI in-process, validate images."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import textwrap
from pathlib import Path

from builder.cli import main
from builder.oci.image import Image


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def cli(*args: str, capsys=None) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    if capsys is None:
        return code, "", ""
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def build_json(manifest: Path, out: Path, cache: Path, capsys) -> tuple[dict, str]:
    """``ocibuild build MANIFEST -o OUT --json --cache-dir CACHE``, which must succeed:
    its JSON summary and its stderr."""
    code, stdout, stderr = cli("build", manifest, "-o", out, "--json", "--cache-dir", cache,
                               capsys=capsys)
    assert code == 0, stderr
    return json.loads(stdout), stderr


def validate_image(image: Image) -> None:
    """Every layer's bytes match its digest, size and diff_id; config matches manifest."""
    assert len(image.config["rootfs"]["diff_ids"]) == len(image.layers)
    for layer, diff_id in zip(image.layers, image.config["rootfs"]["diff_ids"]):
        compressed = hashlib.sha256()
        size = 0
        with layer.opener() as f:
            data = f.read()
        compressed.update(data)
        size = len(data)
        assert "sha256:" + compressed.hexdigest() == layer.digest
        assert size == layer.size
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        if data[:4] == b"\x28\xb5\x2f\xfd":
            import zstandard
            raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == diff_id == layer.diff_id
    assert json.loads(image.manifest_bytes)["config"]["digest"] == image.config_descriptor.digest


def layer_members(image: Image, index: int) -> dict[str, tarfile.TarInfo]:
    with image.layers[index].opener() as f:
        data = f.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}
