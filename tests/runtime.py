"""Helpers that drive the real peers: skopeo, umoci, runc, podman."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import uuid
from pathlib import Path

from conftest import require_tool


def run(*cmd: str, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run a tool; on failure, fail the test with its stderr (not a bare exit code)."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}:\n"
                             f"{result.stderr[-3000:]}")
    return result


def unpack(image_tar: Path, workdir: Path, arch: str | None = None) -> Path:
    """``skopeo copy`` the archive to an OCI dir (``arch``'s image of an index), then
    ``umoci unpack``; return the bundle."""
    require_tool("skopeo")
    require_tool("umoci")
    layout = workdir / "layout"
    bundle = workdir / "bundle"
    workdir.mkdir(parents=True, exist_ok=True)
    run("skopeo", "copy", "-q", *(["--override-arch", arch] if arch else []),
        f"oci-archive:{image_tar}", f"oci:{layout}:img")
    run("umoci", "unpack", "--image", f"{layout}:img", str(bundle))
    return bundle


def prepare_bundle(bundle: Path, *, readonly: bool = True, host_network: bool = True) -> dict:
    """Adjust umoci's runtime config for a non-interactive run reachable from the host."""
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["process"]["terminal"] = False
    config["root"]["readonly"] = readonly
    if host_network:
        config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"]
                                         if ns["type"] != "network"]
    config_path.write_text(json.dumps(config))
    return config


def runc_run(bundle: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the bundle to completion with runc; return its output."""
    require_tool("runc")
    cid = f"ocibuild-test-{uuid.uuid4().hex[:12]}"
    try:
        return run("runc", "run", "--bundle", str(bundle), cid, check=False, timeout=timeout)
    finally:
        subprocess.run(["runc", "delete", "--force", cid], capture_output=True)


def runc_start_detached(bundle: Path, log: Path) -> tuple[str, subprocess.Popen]:
    """Start a long-running container (a server); caller must call :func:`runc_stop`."""
    require_tool("runc")
    cid = f"ocibuild-test-{uuid.uuid4().hex[:12]}"
    out = open(log, "wb")
    proc = subprocess.Popen(["runc", "run", "--bundle", str(bundle), cid], stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return cid, proc


def runc_stop(cid: str, proc: subprocess.Popen) -> None:
    subprocess.run(["runc", "kill", cid, "KILL"], capture_output=True)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    subprocess.run(["runc", "delete", "--force", cid], capture_output=True)


def podman(*args: str, root: Path, check: bool = True) -> subprocess.CompletedProcess:
    """podman with vfs storage under ``root`` (nothing shared with the host's storage)."""
    require_tool("podman")
    conf = root / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n")
    env = dict(os.environ, CONTAINERS_CONF=str(conf))
    runroot = root / "runroot-path"
    if not runroot.exists():  # podman refuses a runroot longer than 50 characters
        runroot.write_text(tempfile.mkdtemp(prefix="ocib-pm-", dir="/tmp"))
    return run("podman", "--root", str(root / "storage"), "--runroot", runroot.read_text(),
               "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--runtime", "runc",
               *args, check=check, env=env)
