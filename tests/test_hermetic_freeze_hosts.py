"""Hermetic freezes for real: a tiny app frozen for amd64 and arm64 with ocibuild
running on this machine's own Python, then for amd64 again with ocibuild running on
Debian's ``/usr/bin/python3`` (in a venv holding ocibuild's dependencies), each with
its own cache. The images must be byte-identical, every shared library of the bundle's
runtime must be one the build root's locked packages hold, and both platforms must
answer under runc (arm64 through qemu-user).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from builder.errors import DebianError
from builder.oci.index import Index
from builder.sources.archive import read_artifact
from builder.sources.debian.apt_sources import find_mirror
from conftest import require_tool, unavailable
from helpers import cli, layer_members, write
from runtime import prepare_bundle, run, runc_run, unpack
from test_platforms_runtime import require_binfmt

REPO = Path(__file__).resolve().parent.parent
BUILD_ROOT = REPO / "base_images" / "python-build.yaml"
DEBIAN_PYTHON = Path("/usr/bin/python3")

APP = """\
import json, platform, sys
print(json.dumps({"result": 2, "machine": platform.machine(),
                  "python": sys.version.split()[0]}))
"""


def _app(tmp: Path, platforms: str) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "app.py").write_text(APP)
    return write(tmp / "ocibuild.yaml", f"""
        image: test/hermetic:1
        platforms: {platforms}
        base: {REPO / "base_images" / "cc.yaml"}
        layers:
          - name: app
            pyinstaller:
              entry: app.py
              build_root: {BUILD_ROOT}
            dest: /app
        config:
          user: nonroot
          entrypoint: ["/app/app"]
        """)


def require_arm64_freezes() -> None:
    """What a hermetic arm64 freeze needs of this amd64 host: a qemu binfmt handler,
    bwrap, and a Debian mirror for the build root's packages."""
    require_binfmt("aarch64")
    require_tool("bwrap")
    try:
        find_mirror("bookworm")
    except DebianError as e:
        unavailable(f"no Debian mirror configured: {e}")


def _debian_python_with_ocibuild_deps(venv: Path) -> Path:
    """A venv of Debian's Python holding ocibuild's dependencies (from pyproject.toml)."""
    if not DEBIAN_PYTHON.exists():
        pytest.fail("Debian's Python is missing; apt-get install -y python3 python3-venv",
                    pytrace=False)
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    run(str(DEBIAN_PYTHON), "-m", "venv", str(venv))
    run(str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *deps, timeout=600)
    return venv / "bin" / "python"


def _run_image(tar: Path, arch: str, work: Path) -> dict:
    bundle = unpack(tar, work, arch)
    prepare_bundle(bundle, readonly=True)
    result = runc_run(bundle, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.network
def test_hermetic_freeze_same_digest_from_two_host_pythons_and_arm64_runs(tmp_path, capsys):
    require_arm64_freezes()
    assert sys.executable != str(DEBIAN_PYTHON)  # two different host Pythons
    manifest = _app(tmp_path / "app", "[linux/amd64, linux/arm64]")
    code, out, err = cli("build", manifest, "-o", tmp_path / "both.tar", "--json",
                         "--cache-dir", tmp_path / "cache-a", capsys=capsys)
    assert code == 0, err
    index = read_artifact(tmp_path / "both.tar")
    assert isinstance(index, Index)
    amd, arm = (m.image for m in index.manifests)

    python = _debian_python_with_ocibuild_deps(tmp_path / "debian-venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run([str(python), "-m", "builder.cli", "build", str(manifest), "-o",
                           str(tmp_path / "debian.tar"), "--platform", "linux/amd64", "--json",
                           "--cache-dir", str(tmp_path / "cache-b")], cwd=REPO,
                          env={**env, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    again = read_artifact(tmp_path / "debian.tar")
    assert isinstance(again, Index)
    assert again.manifests[0].image.digest == amd.digest
    assert [layer.digest for layer in again.manifests[0].image.layers] == [
        layer.digest for layer in amd.layers]

    # every shared library of the bundle's runtime layer is one the arm64 build root
    # (locked Debian packages) holds, libpython included: none is this host's
    roots = sorted((tmp_path / "cache-a" / "buildroot").iterdir())
    arm_root = next(r for r in roots if (r / "lib" / "ld-linux-aarch64.so.1").exists())
    in_root = {p.name for p in arm_root.rglob("*.so*")}
    python_layer = next(i for i, layer in enumerate(arm.layers) if "python" in layer.name)
    libs = [Path(n).name for n, m in layer_members(arm, python_layer).items()
            if m.isfile() and ".so" in Path(n).name]
    assert "libpython3.11.so.1.0" in libs
    assert libs and not [n for n in libs if n not in in_root], sorted(set(libs) - in_root)

    assert _run_image(tmp_path / "both.tar", "amd64", tmp_path / "run-amd64") == {
        "result": 2, "machine": "x86_64", "python": "3.11.2"}
    assert _run_image(tmp_path / "both.tar", "arm64", tmp_path / "run-arm64") == {
        "result": 2, "machine": "aarch64", "python": "3.11.2"}
