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


def unavailable(reason: str) -> None:
    """Skip on a developer machine that lacks something this environment-bound test needs
    (a Debian mirror, mount rights), saying why; fail under CI (``$CI``), which is
    provisioned to have it, so a skipped test there never hides a broken feature."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must provide it)", pytrace=False)
    pytest.skip(reason)


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


def pytest_collection_finish(session):
    """Start the background builds the selected tests need (:mod:`background`) and move
    those tests to the end, so the builds overlap everything else. Here, not in
    ``pytest_collection_modifyitems``: ``--lf``/``--ff`` filter and reorder after every
    plugin's modifyitems, so only now is the list final."""
    config = session.config
    items = session.items
    wanted = {mark.args[0] for item in items for mark in item.iter_markers("background")}
    if not wanted or config.option.collectonly or hasattr(config, "workerinput"):
        return  # (an xdist worker: its tests start the build when they need it)
    import background

    config.stash[_BACKGROUND] = background.start(
        {name for name in wanted if background.can_start(name)})
    items.sort(key=lambda item: item.get_closest_marker("background") is not None)


def pytest_unconfigure(config):
    import background

    background.finish(config.stash.get(_BACKGROUND, {}))


_BACKGROUND = pytest.StashKey[dict]()


def background_build(request: pytest.FixtureRequest, name: str, timeout: float) -> dict:
    """The ``--json`` summary (and ``seconds``) of background build ``name``, once done;
    the build itself (``build``: paths, log)."""
    builds = request.config.stash.get(_BACKGROUND, {})
    if name not in builds:  # not started with the session (an xdist worker, say)
        import background

        builds.update(background.start({name}))
        request.config.stash[_BACKGROUND] = builds
    build = builds[name]
    return {**build.wait(timeout), "build": build}


IRIS = Path(__file__).resolve().parent.parent / "examples" / "iris"


def copy_iris(root: Path) -> Path:
    """A copy of examples/iris and the base definitions it names, as in a checkout at
    ``root``; the copy's manifest."""
    dest = root / "project" / "examples" / "iris"
    shutil.copytree(IRIS, dest, ignore=shutil.ignore_patterns("__pycache__", "*.tar"))
    shutil.copytree(IRIS.parent.parent / "base_images", root / "project" / "base_images")
    return dest / "ocibuild.yaml"


@pytest.fixture(scope="session")
def iris_image(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One cold build of a copy of examples/iris for the whole session (about a
    minute and a half: a venv, pip, PyInstaller, the cc base's .debs), over one cache
    that later iris builds share (``cache``). Tests must not change ``root``'s copy;
    they copy it again (:func:`copy_iris`) to edit the app. ``$OCIBUILD_TEST_IRIS_CACHE``
    names a cache dir to keep between sessions (a developer's loop; CI leaves it unset).

    Keys: ``summary`` (the --json result), ``log`` (stderr), ``root``, ``manifest``,
    ``tar`` (the image), ``cache``."""
    import contextlib
    import io
    import json

    from builder.cli import main

    root = tmp_path_factory.mktemp("iris-session")
    manifest = copy_iris(root)
    cache = Path(os.environ.get("OCIBUILD_TEST_IRIS_CACHE") or root / "cache")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["build", str(manifest), "-o", str(root / "iris.tar"), "--json",
                     "--cache-dir", str(cache)])
    assert code == 0, err.getvalue()
    return {"summary": json.loads(out.getvalue()), "log": err.getvalue(), "root": root,
            "manifest": manifest, "tar": root / "iris.tar", "cache": cache}
