"""A fresh runner reuses the fleet's work: iris through a registry cache.

Runner A (its own cache dir) builds a copy of examples/iris cold and fills a cache
repository in a real docker-registry on 127.0.0.1; runner B (an empty cache dir, a
copy of the checkout in another directory) builds it again. B gets A's digest,
runs neither pip nor PyInstaller, and takes at most 15 % of A's time.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path

import pytest

from builder.cli import main
from conftest import copy_iris
from registry_fixtures import registry  # noqa: F401  (a module-scoped fixture)

pytestmark = [pytest.mark.slow, pytest.mark.network]

WARM_SHARE = 0.15
"""B's time over A's: the issue's bound for a fresh runner on a warm cache repository."""


def _build(manifest: Path, out: Path, cache: Path, repo: str) -> dict:
    stdout, stderr = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["build", str(manifest), "-o", str(out), "--json", "--cache-dir",
                     str(cache), "--cache-repo", repo])
    seconds = time.perf_counter() - start
    assert code == 0, stderr.getvalue()
    return {"summary": json.loads(stdout.getvalue()), "log": stderr.getvalue(),
            "seconds": seconds, "cache": cache, "out": out}


@pytest.fixture(scope="module")
def runner_a(tmp_path_factory, registry):  # noqa: F811
    """Runner A: a cold build (a venv, pip, PyInstaller, the base's .debs) that fills
    the cache repository."""
    root = tmp_path_factory.mktemp("runner-a")
    return _build(copy_iris(root), root / "iris.tar", root / "cache",
                  f"{registry.host}/fleet/iris")


def test_a_fresh_runner_reuses_the_fleets_work(runner_a, registry, tmp_path):  # noqa: F811
    a = runner_a
    assert "pyinstaller: freezing" in a["log"]  # A did the work
    assert all(layer["cache"] == "built" for layer in a["summary"]["layers"])

    b = _build(copy_iris(tmp_path / "elsewhere"), tmp_path / "iris.tar", tmp_path / "cache-b",
               f"{registry.host}/fleet/iris")
    summary = b["summary"]
    assert summary["digest"] == a["summary"]["digest"]
    assert [layer["cache"] for layer in summary["layers"]] == \
        ["remote"] * len(summary["layers"])
    # neither pip nor PyInstaller ran: no venv, no freeze, nothing said about them
    assert "pyinstaller: creating build venv" not in b["log"]
    assert "pyinstaller: freezing" not in b["log"]
    assert not (b["cache"] / "pyinstaller" / "venv").exists()
    assert not (b["cache"] / "pyinstaller" / "dist").exists()
    # nor was the build root made: its packages are not even fetched
    assert "build root:" not in b["log"]
    assert not (b["cache"] / "buildroot").exists()
    assert summary["cache_repo"]["bytes_fetched"] >= summary["compressed_size"]
    assert b["seconds"] <= WARM_SHARE * a["seconds"], (b["seconds"], a["seconds"])
    assert b["out"].read_bytes() == a["out"].read_bytes()  # the very same archive
