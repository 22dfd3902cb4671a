"""Shared fixtures: real tools are required, never silently skipped."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

INSTALL_HINT = ("install it with: apt-get install -y skopeo umoci runc podman docker-registry "
                "busybox-static (or run .ci/run, which does)")


def require_tool(name: str) -> str:
    """Path of ``name``; fail (not skip) with an install hint when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; {INSTALL_HINT}", pytrace=False)
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own cache unless it sets OCIBUILD_CACHE itself."""
    monkeypatch.setenv("OCIBUILD_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


@pytest.fixture
def busybox() -> Path:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(candidate):
            return Path(candidate)
    pytest.fail(f"busybox is not installed; {INSTALL_HINT}", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _stop_test_gpg_agents(tmp_path_factory):
    """gpg starts an agent per throwaway GNUPGHOME; stop those of this run at the end."""
    yield
    import subprocess

    base = str(tmp_path_factory.getbasetemp())
    subprocess.run(["pkill", "-f", f"gpg-agent --homedir {base}/"], capture_output=True)
