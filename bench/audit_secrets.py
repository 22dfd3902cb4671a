"""How fast the audit's secret rules read bytes, against reading them for MD5 alone.

    python bench/audit_secrets.py [FILE ...]      # default: onnxruntime's shared objects

The audit reads every file once, in 1 MiB blocks, for its MD5 (dpkg ``md5sums``) and
for secrets; this prints the secret scan's throughput beside MD5's on the same blocks,
as MB/s and as a ratio (the machine is noisy: compare within one run). The inputs are
real binaries that hold PEM header constants, the case the rules must pass quickly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.supply.secrets import SecretScanner  # noqa: E402

BLOCK = 1 << 20
REPS = 5


def default_inputs() -> list[Path]:
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.origin:
        sys.exit("onnxruntime is not installed (pip install -e '.[test]'), or name files")
    return sorted((Path(spec.origin).parent / "capi").glob("*.so*"))


def timed(blocks: list[bytes], work) -> float:
    runs = []
    for _ in range(REPS):
        start = time.perf_counter()
        work(blocks)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def md5(blocks: list[bytes]) -> None:
    h = hashlib.md5(usedforsecurity=False)
    for b in blocks:
        h.update(b)


def secrets(blocks: list[bytes]) -> None:
    scanner = SecretScanner()
    for b in blocks:
        scanner.feed(b)
    found = scanner.secrets()
    assert not found, found  # real TLS binaries hold no secret


def main(argv: list[str]) -> None:
    inputs = [Path(a) for a in argv] or default_inputs()
    print(f"{'file':<60} {'MB':>7} {'md5 MB/s':>9} {'secrets MB/s':>13} {'ratio':>6}")
    for path in inputs:
        data = path.read_bytes()
        blocks = [data[i:i + BLOCK] for i in range(0, len(data), BLOCK)]
        mb = len(data) / 1e6
        t_md5, t_sec = timed(blocks, md5), timed(blocks, secrets)
        print(f"{path.name[:60]:<60} {mb:7.1f} {mb / t_md5:9.0f} {mb / t_sec:13.0f} "
              f"{t_sec / t_md5:6.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
