"""Compressors: valid streams, and bytes that depend on the input only.

The parallel gzip writer must give one gzip member that ``gzip -d`` and
Python's gzip read back exactly, with the same bytes for 1 and 4 workers, any
write sizes and any run; zstd likewise.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import shutil
import subprocess
import zlib

import pytest
import zstandard

from builder.layers.compress import (GZIP_CHUNK, GzipWriter, ZstdWriter, compressor,
                                     crc32_combine)


def _sample(size: int, seed: int = 7) -> bytes:
    """Text-like and random runs mixed, crossing several piece boundaries."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        if rng.random() < 0.5:
            out += rng.randbytes(rng.randrange(1, 300_000))
        else:
            words = [b"import", b"numpy", b"def", b"return", b"self", b"class", b"\n"]
            out += b" ".join(rng.choice(words) for _ in range(rng.randrange(1, 60_000)))
    return bytes(out[:size])


def _compress(writer_cls, data: bytes, workers: int | None, step: int) -> bytes:
    out = io.BytesIO()
    writer = writer_cls(out, workers=workers)
    for i in range(0, len(data), step):
        writer.write(data[i:i + step])
    writer.close()
    return out.getvalue()


DATA = _sample(3 * GZIP_CHUNK + 12_345)


def _gunzip_cli(blob: bytes) -> bytes:
    gz = shutil.which("gzip")
    if gz is None:
        pytest.fail("gzip is missing: apt-get install -y gzip")
    done = subprocess.run([gz, "-dc"], input=blob, capture_output=True, check=True)
    assert done.stderr == b""
    return done.stdout


@pytest.mark.parametrize("data", [b"", b"x", DATA[:GZIP_CHUNK], DATA],
                         ids=["empty", "one-byte", "one-piece", "many-pieces"])
def test_gzip_decompresses_to_the_input(data):
    blob = _compress(GzipWriter, data, 4, 1 << 20)
    assert gzip.decompress(blob) == data
    assert _gunzip_cli(blob) == data
    assert zlib.decompress(blob, 31) == data  # one member, nothing after it


def test_gzip_header_has_no_name_and_no_time():
    blob = _compress(GzipWriter, b"hello", None, 5)
    assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"


def test_gzip_bytes_do_not_depend_on_workers_writes_or_run():
    reference = _compress(GzipWriter, DATA, 1, 1 << 20)
    assert _compress(GzipWriter, DATA, 4, 1 << 20) == reference
    assert _compress(GzipWriter, DATA, 4, 77_777) == reference
    assert _compress(GzipWriter, DATA, None, 4096) == reference
    assert _compress(GzipWriter, DATA, 1, 1 << 20) == reference


def test_gzip_ratio_stays_close_to_serial_gzip():
    serial = zlib.compressobj(6, zlib.DEFLATED, 31)
    size = len(serial.compress(DATA) + serial.flush())
    assert len(_compress(GzipWriter, DATA, 2, 1 << 20)) <= size * 1.01 + 64


def test_crc32_combine():
    a, b = DATA[:1000], DATA[1000:GZIP_CHUNK + 1000]
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
    assert crc32_combine(zlib.crc32(b""), zlib.crc32(b), len(b)) == zlib.crc32(b)


def test_zstd_bytes_do_not_depend_on_workers_writes_or_run():
    reference = _compress(ZstdWriter, DATA, 1, 1 << 20)
    assert _compress(ZstdWriter, DATA, 4, 1 << 20) == reference
    assert _compress(ZstdWriter, DATA, 4, 77_777) == reference
    assert _compress(ZstdWriter, DATA, None, 1 << 20) == reference
    assert zstandard.ZstdDecompressor().stream_reader(io.BytesIO(reference)).read() == DATA
    cli = shutil.which("zstd")
    if cli is None:
        pytest.fail("zstd is missing: apt-get install -y zstd")
    done = subprocess.run([cli, "-dc"], input=reference, capture_output=True, check=True)
    assert done.stdout == DATA


def test_compressor_names():
    for name in ("gzip", "zstd", "none"):
        out = io.BytesIO()
        c = compressor(name, out)
        c.write(b"abc")
        c.close()
        assert out.getvalue()
    with pytest.raises(ValueError, match="unknown compression"):
        compressor("lz4", io.BytesIO())


def test_digest_is_stable_across_processes():
    """A second interpreter (another pool, another start) writes the same bytes."""
    import sys
    code = ("import io,hashlib,sys; from builder.layers.compress import GzipWriter\n"
            "d=sys.stdin.buffer.read(); o=io.BytesIO(); w=GzipWriter(o, workers=3)\n"
            "w.write(d); w.close(); print(hashlib.sha256(o.getvalue()).hexdigest())")
    done = subprocess.run([sys.executable, "-c", code], input=DATA, capture_output=True,
                          check=True)
    assert done.stdout.decode().strip() == hashlib.sha256(
        _compress(GzipWriter, DATA, 1, 1 << 20)).hexdigest()
