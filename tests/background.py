"""Builds that start with the test session and are awaited by the tests that need them.

The arm64 half of the iris index is frozen under qemu-user: minutes of one core. Started
when collection is final (``pytest_collection_finish``), at a lower priority, it runs on the machine's other core while the
rest of the suite runs, and its tests (marked ``@pytest.mark.background(NAME)``) are
moved to the end of the session, so it adds little to the suite's time instead of its
whole length. A build is an ``ocibuild build`` process of its own, with its own cache.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
NICENESS = 10
"""Below the suite's own processes: the foreground tests keep their core."""


@dataclass
class BackgroundBuild:
    """One ``ocibuild build`` started at collection: where it writes, and its process."""

    name: str
    work: Path
    manifest: Path
    output: Path
    proc: subprocess.Popen | None = None
    started: float = 0.0
    argv: list[str] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.work / "build.log"

    @property
    def cache(self) -> Path:
        return self.work / "cache"

    def start(self) -> None:
        self.argv = [sys.executable, "-m", "builder.cli", "build", str(self.manifest), "-o",
                     str(self.output), "--json", "--cache-dir", str(self.cache)]
        env = {k: v for k, v in os.environ.items()
               if k not in ("SOURCE_DATE_EPOCH", "OCIBUILD_CACHE")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        with open(self.work / "build.json", "wb") as out, open(self.log, "wb") as err:
            self.proc = subprocess.Popen(["nice", "-n", str(NICENESS), *self.argv], cwd=REPO,
                                         env=env, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.started = time.monotonic()

    def wait(self, timeout: float) -> dict:
        """The build's ``--json`` summary once it has ended; AssertionError with its log's
        tail when it failed or ran out of time."""
        assert self.proc is not None, f"background build {self.name} was never started"
        try:
            code = self.proc.wait(timeout=max(1.0, self.started + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"background build {self.name} did not end within "
                                 f"{timeout:.0f} s; its log:\n{self._tail()}") from None
        assert code == 0, f"background build {self.name} failed (exit {code}):\n{self._tail()}"
        return json.loads((self.work / "build.json").read_text())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def iris_platforms(work: Path) -> BackgroundBuild:
    """examples/iris for linux/amd64 and linux/arm64, frozen hermetically
    (``ocibuild.platforms.yaml``), from a copy of the example and the base definitions."""
    project = work / "project"
    shutil.copytree(REPO / "examples" / "iris", project / "examples" / "iris",
                    ignore=shutil.ignore_patterns("__pycache__", "*.tar"))
    shutil.copytree(REPO / "base_images", project / "base_images")
    return BackgroundBuild("iris-platforms", work,
                           project / "examples" / "iris" / "ocibuild.platforms.yaml",
                           work / "iris.tar")


BUILDS: dict[str, Callable[[Path], BackgroundBuild]] = {"iris-platforms": iris_platforms}


def can_start(name: str) -> bool:
    """Whether this host has what build ``name`` needs (else its tests fail or skip
    saying what is missing, and nothing is started in vain): for iris-platforms, bwrap
    and, off arm64, a qemu-aarch64 binfmt_misc handler."""
    if shutil.which("bwrap") is None:
        return False
    if os.uname().machine == "aarch64":
        return True
    handler = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    try:
        return "enabled" in handler.read_text()
    except OSError:
        return False


def start(names: set[str]) -> dict[str, BackgroundBuild]:
    """Start the named builds, each in a fresh temp dir."""
    started = {}
    for name in sorted(names):
        build = BUILDS[name](Path(tempfile.mkdtemp(prefix=f"ocibuild-{name}-")))
        build.start()
        started[name] = build
    return started


def finish(builds: dict[str, BackgroundBuild]) -> None:
    """Stop what still runs and remove the builds' dirs (end of session)."""
    for build in builds.values():
        build.stop()
        shutil.rmtree(build.work, ignore_errors=True)
