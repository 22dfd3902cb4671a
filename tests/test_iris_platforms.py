"""examples/iris for linux/amd64 and linux/arm64 from this amd64 machine, with the one
command the README gives (``ocibuild build examples/iris/ocibuild.platforms.yaml``):
both bundles frozen hermetically in build roots of Debian's locked packages, arm64
under qemu-user. The build runs in the background from the session's start
(tests/background.py); these tests check what it made with the real tools: skopeo
reads the index, runc serves predictions on both platforms (arm64 through qemu), and
the SBOM attributes every library of the arm64 bundle to a locked arm64 package or a
wheel.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import background_build
from helpers import cli
from runtime import prepare_bundle, run, unpack
from test_hermetic_freeze_hosts import require_arm64_freezes
from test_iris_freeze import free_port, predict_in_runc

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.background("iris-platforms")]

BUILD_TIMEOUT = 60 * 60
"""The build's own limit: about 12 minutes on an idle 2-core machine (arm64 under qemu is
most of it), more while the suite runs beside it."""
EM_AARCH64, EM_X86_64 = 183, 62


@pytest.fixture(scope="module")
def built(request: pytest.FixtureRequest) -> dict:
    require_arm64_freezes()
    return background_build(request, "iris-platforms", BUILD_TIMEOUT)


def test_iris_for_amd64_and_arm64_is_one_index_skopeo_reads(built: dict) -> None:
    tar = built["build"].output
    raw = json.loads(run("skopeo", "inspect", "--raw", f"oci-archive:{tar}").stdout)
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [(m["platform"]["os"], m["platform"]["architecture"]) for m in raw["manifests"]] \
        == [("linux", "amd64"), ("linux", "arm64")]
    arm = json.loads(run("skopeo", "inspect", "--override-arch", "arm64",
                         f"oci-archive:{tar}").stdout)
    assert (arm["Os"], arm["Architecture"]) == ("linux", "arm64")
    arm64 = next(p for p in built["platforms"] if p["platform"] == "linux/arm64")
    assert raw["manifests"][1]["digest"] == arm64["digest"]
    assert arm["Layers"] == [layer["digest"] for layer in arm64["layers"]]


@pytest.mark.parametrize("arch, machine", [("arm64", EM_AARCH64), ("amd64", EM_X86_64)])
def test_each_platforms_iris_serves_predictions_under_runc(built: dict, tmp_path: Path,
                                                            arch: str, machine: int) -> None:
    bundle = unpack(built["build"].output, tmp_path / arch, arch)
    rootfs = bundle / "rootfs"
    header = (rootfs / "app" / "app").read_bytes()[:20]
    assert int.from_bytes(header[18:20], "little") == machine  # the bundle is of its arch
    config = prepare_bundle(bundle, readonly=True, host_network=True)
    assert config["process"]["user"]["uid"] == 65532
    port = free_port()
    config["process"]["env"].append(f"PORT={port}")
    (bundle / "config.json").write_text(json.dumps(config))
    # arm64 starts through qemu: numpy, scipy and scikit-learn load slowly there
    assert predict_in_runc(bundle, port, tmp_path / "container.log", timeout=300) \
        == {"result": 2}


def test_the_arm64_sbom_attributes_its_libraries_to_locked_arm64_packages(built: dict,
                                                                           capsys) -> None:
    tar = built["build"].output
    code, out, err = cli("sbom", tar, "--platform", "linux/arm64", capsys=capsys)
    assert code == 0, err
    assert "(100.0 %)" in err, err  # every ELF file attributed
    document = json.loads(out)
    purls = {ref["referenceLocator"] for p in document["packages"]
             for ref in p.get("externalRefs", []) if ref["referenceType"] == "purl"}
    python = [p for p in purls if p.startswith("pkg:deb/debian/libpython3.11@")]
    assert python and all("arch=arm64" in p for p in python), sorted(purls)
    comments = [f["comment"] for f in document["files"]]
    assert not [c for c in comments if "build host" in c], "a host file in a hermetic bundle"
    assert any("in the build root python-build.yaml (arm64)" in c for c in comments)
