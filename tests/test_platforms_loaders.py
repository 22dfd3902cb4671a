"""What the loaders do with an image index tarball: ``podman load`` reads the OCI
side and takes the build host's platform; the docker-archive side (``manifest.json``,
what ``docker load`` before Docker 25 reads) holds the first platform listed, and a
real Docker engine (Debian's 20.10) loads exactly that image under the name."""

from __future__ import annotations

import json

from builder.oci.index import Index
from builder.platforms import host_architecture
from builder.sources.archive import read_artifact
from helpers import cli
from docker_engine import docker_engine  # noqa: F401 - fixture
from runtime import podman, run
from test_platforms_build import _manifest


def test_podman_load_takes_the_host_platform_from_the_index(tmp_path, capsys):
    # the host's platform listed second, so "the first one" would be the wrong answer
    other = "arm64" if host_architecture() != "arm64" else "amd64"
    manifest = _manifest(tmp_path, f"[linux/{other}, linux/{host_architecture()}]")
    assert cli("build", manifest, "-o", tmp_path / "i.tar", capsys=capsys)[0] == 0
    index = read_artifact(tmp_path / "i.tar")
    assert isinstance(index, Index)
    (tmp_path / "pm").mkdir()
    loaded = podman("load", "-i", str(tmp_path / "i.tar"), root=tmp_path / "pm")
    assert "Loaded image: localhost/test/multi:1" in loaded.stdout + loaded.stderr
    [info] = json.loads(podman("image", "inspect", "test/multi:1", root=tmp_path / "pm").stdout)
    assert info["Architecture"] == host_architecture()
    host_image = index.manifests[1].image
    assert info["Id"] == host_image.config_descriptor.digest.split(":", 1)[1]


def test_docker_archive_side_holds_the_first_platform(tmp_path, capsys):
    manifest = _manifest(tmp_path, "[linux/arm64, linux/amd64]")
    assert cli("build", manifest, "-o", tmp_path / "i.tar", capsys=capsys)[0] == 0
    index = read_artifact(tmp_path / "i.tar")
    assert isinstance(index, Index)
    config = json.loads(run("skopeo", "inspect", "--config",
                            f"docker-archive:{tmp_path / 'i.tar'}").stdout)
    assert config["architecture"] == "arm64"
    assert config == index.manifests[0].image.config


def test_docker_load_takes_the_first_platform(tmp_path, capsys, docker_engine):  # noqa: F811
    manifest = _manifest(tmp_path, "[linux/arm64, linux/amd64]")
    assert cli("build", manifest, "-o", tmp_path / "i.tar", capsys=capsys)[0] == 0
    index = read_artifact(tmp_path / "i.tar")
    assert isinstance(index, Index)
    loaded = docker_engine.docker("load", "-i", str(tmp_path / "i.tar")).stdout
    assert "Loaded image: test/multi:1" in loaded
    [info] = json.loads(docker_engine.docker("image", "inspect", "test/multi:1").stdout)
    first = index.manifests[0].image
    assert info["Id"] == first.config_descriptor.digest
    assert info["Architecture"] == "arm64"
