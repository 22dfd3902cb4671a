"""What streaming a compressed ``tar:`` layer costs, without a decompressed temp copy.

    python bench/tar_layer_stream.py [--files N] [--size BYTES] [--shuffle]

Makes a ``.tar.gz`` (and ``.tar.zst``, ``.tar.xz``) of N random files, then times
``tar_entries`` (the checking pass) and reading every member's data in the tar
writer's sorted order through the entries' openers, against one plain
``gzip -dc``-style pass over the same archive with Python's zlib. The
archive is laid out as GNU tar writes a tree (a directory's files together, in
readdir order); with ``--shuffle`` all files are in random order, the worst case
for reading in sorted order (restarts from gzip checkpoints; from the start for xz).
Prints seconds, the ratio to one pass, restarts and peak RSS.
"""

from __future__ import annotations

import argparse
import io
import lzma
import random
import resource
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.sources.tar_layer import tar_entries  # noqa: E402


def make_tar(files: int, size: int, shuffle: bool) -> bytes:
    """Like GNU tar's output: each directory's files together, in a random (readdir)
    order within it; with ``shuffle``, all files in random order."""
    rng = random.Random(20261201)
    names = [f"d{i * 50 // files:02d}/f{i:06d}" for i in range(files)]
    if shuffle:
        rng.shuffle(names)
    else:
        groups: dict[str, list[str]] = {}
        for name in names:
            groups.setdefault(name.split("/")[0], []).append(name)
        names = []
        for group in groups.values():
            rng.shuffle(group)
            names += group
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            data = rng.randbytes(rng.randint(size // 2, size * 3 // 2))
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def one_pass(path: Path) -> float:
    start = time.perf_counter()
    d = zlib.decompressobj(31)
    with open(path, "rb") as f:
        while block := f.read(1 << 18):
            d.decompress(block)
    return time.perf_counter() - start


def streamed(path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    entries = tar_entries(path)
    view = None
    for entry in sorted(entries, key=lambda e: e.path):
        if entry.opener is not None:
            with entry.opener() as stream:
                while stream.read(1 << 20):
                    pass
            view = view or getattr(entry.opener, "__closure__", None)
    restarts = 0
    if view:
        for cell in view:
            restarts = getattr(cell.cell_contents, "restarts", restarts)
    return time.perf_counter() - start, restarts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--size", type=int, default=40_000)
    parser.add_argument("--shuffle", action="store_true")
    args = parser.parse_args()
    tar = make_tar(args.files, args.size, args.shuffle)
    with tempfile.TemporaryDirectory(prefix="bench-tar-") as tmp:
        gz = Path(tmp) / "layer.tar.gz"
        gz.write_bytes(zlib.compress(tar, 6, 31))
        xz = Path(tmp) / "layer.tar.xz"
        xz.write_bytes(lzma.compress(tar, preset=1))
        print(f"{args.files} files, {len(tar) / 1e6:.0f} MB of tar"
              f"{', shuffled' if args.shuffle else ''}")
        base = one_pass(gz)
        print(f"  one zlib pass over the .tar.gz: {base:.2f} s")
        for path in (gz, xz):
            seconds, restarts = streamed(path)
            print(f"  {path.name}: check + read all in sorted order {seconds:.2f} s "
                  f"({seconds / base:.1f}× one gzip pass), {restarts} restarts")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {peak:.0f} MB (the tar itself is held in memory by the bench)")


if __name__ == "__main__":
    main()
