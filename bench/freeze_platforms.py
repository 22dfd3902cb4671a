"""How much an arm64 hermetic freeze costs on an amd64 machine, as a ratio to amd64.

    python bench/freeze_platforms.py [--reps 3] [--iris]

Each platform's cold freeze (``python -m venv``, pip, PyInstaller and strip, in the
build root of base_images/python-build.yaml) is timed by ``ocibuild build --platform``
with the freeze cache emptied before every run; the build root itself, the base, the
``.deb``s and pip's download cache are warm, so what is measured is the freeze. arm64
runs under qemu-user (binfmt_misc), amd64 natively; runs alternate, so both see the
same machine load. The app is a small JSON printer, or with ``--iris`` examples/iris.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_ROOT = ROOT / "base_images" / "python-build.yaml"
PLATFORMS = ("linux/amd64", "linux/arm64")

SMALL_APP = """\
import json, platform
print(json.dumps({"result": 2, "machine": platform.machine()}))
"""


def small_manifest(work: Path) -> Path:
    (work / "app.py").write_text(SMALL_APP)
    manifest = work / "ocibuild.yaml"
    manifest.write_text(textwrap.dedent(f"""\
        image: bench/freeze:1
        platforms: [{", ".join(PLATFORMS)}]
        base: {ROOT / "base_images" / "cc.yaml"}
        layers:
          - name: app
            pyinstaller: {{entry: app.py, build_root: {BUILD_ROOT}}}
        """))
    return manifest


def build(manifest: Path, platform: str, out: Path, cache: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "builder.cli", "build", str(manifest), "-q",
                           "--platform", platform, "-o", str(out), "--cache-dir", str(cache)],
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"build for {platform} failed:\n{done.stderr[-3000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--iris", action="store_true", help="freeze examples/iris")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-freeze-") as tmp:
        work = Path(tmp)
        manifest = ROOT / "examples" / "iris" / "ocibuild.platforms.yaml" if args.iris \
            else small_manifest(work)
        cache = work / "cache"
        for platform in PLATFORMS:  # warm: base, .debs, build root, pip's cache
            build(manifest, platform, work / "warm.tar", cache)
        times: dict[str, list[float]] = {p: [] for p in PLATFORMS}
        for _ in range(args.reps):
            for platform in PLATFORMS:
                shutil.rmtree(cache / "pyinstaller", ignore_errors=True)
                times[platform].append(build(manifest, platform, work / "i.tar", cache))
    amd, arm = (statistics.median(times[p]) for p in PLATFORMS)
    print(json.dumps({"app": "iris" if args.iris else "small", "reps": args.reps,
                      "seconds": times, "median_amd64": round(amd, 1),
                      "median_arm64": round(arm, 1), "ratio": round(arm / amd, 2)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
