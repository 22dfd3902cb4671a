"""End to end: ``ocibuild build examples/iris/ocibuild.yaml`` → an image that serves.

One cold build in a first directory is unpacked by umoci and run by runc as uid
65532 on a read-only root (no network namespace, so the test reaches the port),
and loaded by podman. A warm rebuild runs neither pip nor PyInstaller and gives
the same digest; a cold build of a copy in another directory gives the same
digest too. (What a code change rebuilds: test_frozen_app_layers.py.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import build_json
from runtime import podman, prepare_bundle, unpack
from conftest import copy_iris
from test_iris_freeze import free_port, predict_in_runc

IRIS = Path(__file__).resolve().parent.parent / "examples" / "iris"

# The cc base needs the Debian archive the host's apt sources name (for its .debs).
pytestmark = [pytest.mark.slow, pytest.mark.network]


@pytest.fixture
def cold(iris_image: dict) -> dict:
    """The session's cold build of a copy of examples/iris (conftest.py)."""
    return iris_image


def test_iris_image_serves_predictions_under_runc(cold: dict, tmp_path: Path) -> None:
    summary = cold["summary"]
    assert summary["user"] == "65532:65532"  # nonroot, through the cc base's /etc/passwd
    assert [layer["name"] for layer in summary["layers"]] == [
        "base", "app:python", "app:numpy", "app:scikit-learn", "app:scipy", "app:packages",
        "app:stdlib", "app:modules", "app", "model"]
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
    summary, log = build_json(cold["manifest"], tmp_path / "again.tar", cold["cache"], capsys)
    assert summary["digest"] == cold["summary"]["digest"]
    details = {layer["name"]: layer for layer in summary["layers"]}
    assert details["app:modules"]["cache"] == "local"
    assert all(layer["cached"] for layer in summary["layers"])  # nothing re-tarred
    assert "creating build venv" not in log and "freezing" not in log


def test_cold_build_elsewhere_gives_the_same_digest(
        cold: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Another checkout, another cache: PyInstaller runs again (the venv is copied, to
    spare pip) and every layer comes out byte for byte the same."""
    manifest = copy_iris(tmp_path / "somewhere" / "else")
    cache = tmp_path / "cache"
    shutil.copytree(cold["cache"] / "pyinstaller" / "venv", cache / "pyinstaller" / "venv",
                    symlinks=True)
    summary, log = build_json(manifest, tmp_path / "b.tar", cache, capsys)
    assert "freezing app.py" in log
    assert summary["digest"] == cold["summary"]["digest"]


def test_iris_on_scratch_takes_libraries_from_the_host(cold: dict, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """``ocibuild.scratch.yaml``: the host's glibc completes the closure; the app layers
    are the very same as on the cc base (the freeze is cached and reproducible), but
    for the runtime layer: on cc it leaves out the libraries the base ships
    (libstdc++, libgcc_s, libz), on scratch it keeps them."""
    summary, log = build_json(IRIS / "ocibuild.scratch.yaml", tmp_path / "s.tar", cold["cache"],
                          capsys)
    names = [layer["name"] for layer in summary["layers"]]
    assert names[-3:] == ["app", "model", "libraries"] and "from the build host" in log
    digests = {layer["name"]: layer["digest"] for layer in summary["layers"]}
    on_cc = {layer["name"]: layer["digest"] for layer in cold["summary"]["layers"]}
    assert all(digests[name] == on_cc[name] for name in names
               if name.startswith("app") and name != "app:python")
    assert digests["app:python"] != on_cc["app:python"]
    assert _predict(unpack(tmp_path / "s.tar", tmp_path), tmp_path) == {"result": 2}
    assert_every_elf_file_attributed(tmp_path / "s.tar", capsys)


def test_the_iris_sbom_attributes_every_elf_file(cold: dict,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert_every_elf_file_attributed(cold["tar"], capsys)
    assert "left out, the base's Debian copies used instead: libgcc_s.so.1" in cold["log"]


def assert_every_elf_file_attributed(image_tar: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from builder.sources.archive import read_image
    from builder.supply.elfowners import attribute_elf_files
    from helpers import cli

    files = attribute_elf_files(read_image(image_tar)).files
    assert files and [f.path for f in files if f.owner is None] == []
    code, _, err = cli("sbom", image_tar, "--format", "cyclonedx-json", capsys=capsys)
    assert code == 0 and f"ELF files attributed: {len(files)}/{len(files)} (100.0 %)" in err


def _predict(bundle: Path, tmp_path: Path) -> object:
    """Run an unpacked iris image under runc, as its config says, on a read-only root."""
    config = prepare_bundle(bundle, readonly=True, host_network=True)
    assert config["process"]["user"]["uid"] == 65532
    port = free_port()
    config["process"]["env"].append(f"PORT={port}")
    (bundle / "config.json").write_text(json.dumps(config))
    return predict_in_runc(bundle, port, tmp_path / "container.log")
