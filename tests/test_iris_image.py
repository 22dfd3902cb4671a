"""End to end: ``ocibuild build examples/iris/ocibuild.yaml`` → an image that serves.

One cold build in a first directory is unpacked by umoci and run by runc as uid
65532 on a read-only root (no network namespace, so the test reaches the port),
and loaded by podman. A warm rebuild runs neither pip nor PyInstaller and gives
the same digest; a cold build of a copy in another directory gives the same
digest too; editing only ``app.py`` reruns PyInstaller (not pip) and leaves the
other layers' digests as they were.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from builder.cli import main
from helpers import cli
from runtime import podman, prepare_bundle, unpack
from test_iris_freeze import free_port, predict_in_runc

IRIS = Path(__file__).resolve().parent.parent / "examples" / "iris"

# The cc base needs the Debian archive the host's apt sources name (for its .debs).
pytestmark = [pytest.mark.slow, pytest.mark.network]


def _copy_example(root: Path) -> Path:
    """A copy of examples/iris and the base definitions it names, as in a checkout."""
    dest = root / "project" / "examples" / "iris"
    shutil.copytree(IRIS, dest, ignore=shutil.ignore_patterns("__pycache__", "*.tar"))
    shutil.copytree(IRIS.parent.parent / "base_images", root / "project" / "base_images")
    return dest / "ocibuild.yaml"


def _build(manifest: Path, out: Path, cache: Path, capsys: pytest.CaptureFixture[str]
           ) -> tuple[dict, str]:
    code, stdout, stderr = cli("build", manifest, "-o", out, "--json", "--cache-dir", cache,
                               capsys=capsys)
    assert code == 0, stderr
    return json.loads(stdout), stderr


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A cold build of a copy of examples/iris (module scope: it takes about a minute).

    capsys is function-scoped, so this fixture captures the CLI's output itself."""
    root = tmp_path_factory.mktemp("iris-a")
    manifest = _copy_example(root)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["build", str(manifest), "-o", str(root / "iris.tar"), "--json",
                     "--cache-dir", str(root / "cache")])
    assert code == 0, err.getvalue()
    return {"summary": json.loads(out.getvalue()), "log": err.getvalue(), "root": root,
            "manifest": manifest, "tar": root / "iris.tar", "cache": root / "cache"}


def test_iris_image_serves_predictions_under_runc(cold: dict, tmp_path: Path) -> None:
    summary = cold["summary"]
    assert summary["user"] == "65532:65532"  # nonroot, through the cc base's /etc/passwd
    assert [layer["name"] for layer in summary["layers"]] == ["base", "app", "model"]
    assert "from the build host" not in cold["log"]  # Debian's glibc satisfies the closure
    bundle = unpack(cold["tar"], tmp_path)
    rootfs = bundle / "rootfs"
    for shell_or_pm in ("bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/apt", "usr/bin/dpkg",
                        "usr/bin/pip", "usr/bin/python3"):
        assert not (rootfs / shell_or_pm).exists(), shell_or_pm
    assert oct((rootfs / "app" / "model.joblib").stat().st_mode & 0o777) == "0o444"
    assert _predict(bundle, tmp_path) == {"result": 2}


def test_podman_loads_the_iris_image(cold: dict, tmp_path: Path) -> None:
    podman("load", "-i", str(cold["tar"]), root=tmp_path)
    images = podman("images", "--format", "{{.Repository}}:{{.Tag}}", root=tmp_path)
    assert "ml/iris:1.0.0" in images.stdout


def test_warm_rebuild_runs_neither_pip_nor_pyinstaller(cold: dict, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    summary, log = _build(cold["manifest"], tmp_path / "again.tar", cold["cache"], capsys)
    assert summary["digest"] == cold["summary"]["digest"]
    details = {layer["name"]: layer for layer in summary["layers"]}
    assert details["app"]["detail"].endswith("(cached)")
    assert all(layer["cached"] for layer in summary["layers"])  # nothing re-tarred
    assert "creating build venv" not in log and "freezing" not in log


def test_cold_build_elsewhere_gives_the_same_digest_and_an_edit_reruns_only_pyinstaller(
        cold: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _copy_example(tmp_path / "somewhere" / "else")
    cache = tmp_path / "cache"
    summary, log = _build(manifest, tmp_path / "b.tar", cache, capsys)
    assert "creating build venv" in log
    assert summary["digest"] == cold["summary"]["digest"]

    app = manifest.parent / "app.py"
    # (a comment alone would rerun PyInstaller yet give the same bytes: code objects
    # carry no comments, so the layer digest would rightly stay the same)
    app.write_text(app.read_text() + '\nBUILD_NOTE = "an edit that changes only the app"\n')
    edited, log = _build(manifest, tmp_path / "c.tar", cache, capsys)
    assert "freezing app.py" in log and "creating build venv" not in log
    digests = {layer["name"]: layer["digest"] for layer in edited["layers"]}
    before = {layer["name"]: layer["digest"] for layer in summary["layers"]}
    assert digests["app"] != before["app"]
    assert digests["model"] == before["model"] and digests["base"] == before["base"]


def test_iris_on_scratch_takes_libraries_from_the_host(cold: dict, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """``ocibuild.scratch.yaml``: the host's glibc completes the closure; the app layer is
    the very same as on the cc base (the freeze is cached and reproducible)."""
    summary, log = _build(IRIS / "ocibuild.scratch.yaml", tmp_path / "s.tar", cold["cache"],
                          capsys)
    names = [layer["name"] for layer in summary["layers"]]
    assert names == ["app", "model", "libraries"] and "from the build host" in log
    app = {layer["name"]: layer["digest"] for layer in summary["layers"]}["app"]
    assert app == {layer["name"]: layer["digest"] for layer in cold["summary"]["layers"]}["app"]
    assert _predict(unpack(tmp_path / "s.tar", tmp_path), tmp_path) == {"result": 2}


def _predict(bundle: Path, tmp_path: Path) -> object:
    """Run an unpacked iris image under runc, as its config says, on a read-only root."""
    config = prepare_bundle(bundle, readonly=True, host_network=True)
    assert config["process"]["user"]["uid"] == 65532
    port = free_port()
    config["process"]["env"].append(f"PORT={port}")
    (bundle / "config.json").write_text(json.dumps(config))
    return predict_in_runc(bundle, port, tmp_path / "container.log")
