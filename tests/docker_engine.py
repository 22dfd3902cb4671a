"""A real Docker engine for the tests (Debian's docker.io), started and stopped by them.

As docs/interop.md describes: ``dockerd`` with the vfs storage driver, no iptables, no
bridge, and its socket, data and exec dirs in a private temporary directory, so it
touches nothing of the host's (no /var/lib/docker, no /run/docker.sock). It is stopped
by its pid at the end of the session. A missing ``dockerd`` fails the tests with the
install hint rather than skipping them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCKER_HINT = "install it with: apt-get install -y docker.io (or run .ci/run, which does)"
START_TIMEOUT = 60.0   # seconds for dockerd (and its containerd) to answer


@dataclass
class DockerEngine:
    root: Path
    proc: subprocess.Popen
    cli: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.root / 'docker.sock'}",
                "DOCKER_CONFIG": str(self.root / "client")}

    def docker(self, *args: str, check: bool = True, timeout: float = 300,
               **kwargs) -> subprocess.CompletedProcess:
        """``docker ARGS`` against this engine; on failure, fail with docker's stderr."""
        done = subprocess.run([self.cli, *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env, **kwargs)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stderr[-3000:]}")
        return done

    def server_version(self) -> tuple[int, ...]:
        text = self.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
        return tuple(int(p) for p in text.split("+")[0].split(".")[:2])

    def stop(self) -> None:
        """SIGTERM to the pid dockerd wrote (it stops its containerd), then wait."""
        pidfile = self.root / "docker.pid"
        pid = int(pidfile.read_text()) if pidfile.exists() else self.proc.pid
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._unmount_leftovers()

    def _unmount_leftovers(self) -> None:
        """dockerd leaves its netns bind mount (exec/netns/default) behind; unmount what
        is still mounted below our directory, deepest first, so it can be deleted."""
        prefix = str(self.root) + "/"
        with open("/proc/self/mountinfo") as info:
            mounts = [line.split()[4] for line in info]
        for point in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
            subprocess.run(["umount", point], capture_output=True)


def _client_beside(dockerd: str) -> str:
    """The docker CLI of the same package as ``dockerd`` (``/usr/sbin/dockerd`` →
    ``/usr/bin/docker``), else the first ``docker`` on PATH."""
    beside = Path(dockerd).resolve().parent.parent / "bin" / "docker"
    found = str(beside) if beside.is_file() else shutil.which("docker")
    if found is None:
        pytest.fail(f"the docker CLI is not installed; {DOCKER_HINT}", pytrace=False)
    return found


def start_docker(root: Path) -> DockerEngine:
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        pytest.fail(f"dockerd is not installed; {DOCKER_HINT}", pytrace=False)
    root.mkdir(parents=True, exist_ok=True)
    log = (root / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        [dockerd, "--storage-driver=vfs", "--iptables=false", "--ip-masq=false",
         "--bridge=none", f"--host=unix://{root / 'docker.sock'}",
         f"--data-root={root / 'data'}", f"--exec-root={root / 'exec'}",
         f"--pidfile={root / 'docker.pid'}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    engine = DockerEngine(root, proc, _client_beside(dockerd))
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if engine.docker("version", check=False, timeout=10).returncode == 0:
            return engine
        time.sleep(0.5)
    engine.stop()
    raise AssertionError("dockerd did not start:\n"
                         + (root / "dockerd.log").read_text(errors="replace")[-3000:])


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory):
    """One Docker engine for the session, in its own temporary directory."""
    engine = start_docker(tmp_path_factory.mktemp("docker"))
    yield engine
    engine.stop()
