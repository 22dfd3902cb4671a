"""An amd64 + arm64 index really runs: the arm64 image under runc through qemu-user
(binfmt_misc), the amd64 one natively. The base is a two-architecture definition
(static + busybox-static) locked against the real Debian archive."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.sources.debian.apt_sources import find_mirror
from builder.errors import DebianError
from conftest import unavailable
from helpers import cli, write
from runtime import prepare_bundle, runc_run, unpack

pytestmark = pytest.mark.network

REPO = Path(__file__).resolve().parent.parent
QEMU_HINT = "apt-get install -y qemu-user-static binfmt-support (or run scripts/bootstrap.sh)"


def require_binfmt(machine: str) -> None:
    """Fail (not skip) when the kernel cannot run ``machine`` programs."""
    handler = Path("/proc/sys/fs/binfmt_misc") / f"qemu-{machine}"
    if not handler.exists() or "enabled" not in handler.read_text():
        pytest.fail(f"no binfmt_misc handler for {machine}; {QEMU_HINT}", pytrace=False)


def test_arm64_image_runs_under_runc_through_qemu(tmp_path, capsys):
    require_binfmt("aarch64")
    try:
        find_mirror("bookworm")
    except DebianError as e:
        unavailable(f"no Debian mirror configured: {e}")
    definition = (REPO / "base_images" / "static.yaml").read_text()
    definition = definition.replace("name: static", "name: static-busybox")
    definition = definition.replace("  - media-types\n", "  - media-types\n  - busybox-static\n")
    assert "architectures: [amd64, arm64]" in definition
    write(tmp_path / "static-busybox.yaml", definition)
    code, _, err = cli("lock", tmp_path / "static-busybox.yaml", capsys=capsys)
    assert code == 0, err
    manifest = write(tmp_path / "ocibuild.yaml", """
        image: test/uname:1
        platforms: [linux/amd64, linux/arm64]
        base: static-busybox.yaml
        layers:
          - name: fs
            directories:
              - {path: /data, mode: "0755"}
        config:
          user: nonroot
          entrypoint: ["/bin/busybox", "uname", "-m"]
        """)
    code, _, err = cli("build", manifest, "-o", tmp_path / "i.tar", capsys=capsys)
    assert code == 0, err
    for arch, machine in (("arm64", "aarch64"), ("amd64", "x86_64")):
        bundle = unpack(tmp_path / "i.tar", tmp_path / arch, arch)
        prepare_bundle(bundle, readonly=True)
        result = runc_run(bundle)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == machine
