"""A blob over 1 GiB pushes (and pulls back) with peak memory under 100 MB."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from registry_fixtures import start_registry

SIZE = (1 << 30) + 12345
LIMIT_KB = 100 * 1024

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from registry_fixtures import big_layer
    from builder.oci.image import append_layers, empty_image
    from builder.oci.types import Platform
    from builder.registry.pull import pull
    from builder.registry.push import ClientPool, push_image

    def peak_kb():
        # VmHWM, not ru_maxrss: a child forked from a large pytest process reports the
        # parent's RSS in ru_maxrss until it grows past it.
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    host, tmp = sys.argv[1], Path(sys.argv[2])
    layer = big_layer(tmp, int(sys.argv[4]))
    image = append_layers(empty_image(Platform(), "1970-01-01T00:00:00Z"), layer)
    pool = ClientPool()
    push_image(image, [f"{host}/big/blob:1"], pool=pool)
    after_push = peak_kb()
    stats = pool.get(host).stats
    pulled = pull(f"{host}/big/blob:1", cache_dir=tmp / "cache", pool=ClientPool())
    after_pull = peak_kb()
    print(json.dumps({"push_kb": after_push, "pull_kb": after_pull,
                      "digest": pulled.manifest_digest, "expected": image.digest,
                      "bytes": stats.bytes_uploaded}))
""")


@pytest.mark.slow
def test_one_gib_blob_streams_in_bounded_memory(tmp_path):
    reg = start_registry(tmp_path / "registry")
    try:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, reg.host, str(tmp_path), str(
                __import__("pathlib").Path(__file__).parent), str(SIZE)],
            capture_output=True, text=True, timeout=900)
    finally:
        reg.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["digest"] == result["expected"]
    assert result["bytes"] >= SIZE  # the layer and the small config
    assert result["push_kb"] < LIMIT_KB, result
    assert result["pull_kb"] < LIMIT_KB, result
    print(f"peak RSS: push {result['push_kb'] // 1024} MB, pull {result['pull_kb'] // 1024} MB")
