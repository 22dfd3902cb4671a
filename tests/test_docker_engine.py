"""What most users do with the tarball: ``docker load``, ``docker run``, ``docker save``,
against a real Docker engine (Debian's docker.io, 20.10) that the tests start themselves
(tests/docker_engine.py)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from docker_engine import docker_engine  # noqa: F401 - fixture
from helpers import cli, write
from test_iris_freeze import SAMPLE, free_port, post_when_up

from builder.sources.archive import read_image

BUSYBOX_MANIFEST = """\
image: t/docker-busybox:1
compression: {compression}
layers:
  - name: bin
    files:
      - {{src: busybox, dest: /bin/busybox, mode: "0755"}}
    symlinks:
      - {{path: /bin/id, target: busybox}}
  - name: data
    files:
      - {{src: data.bin, dest: /data/data.bin, mode: "0444"}}
config:
  user: "65532:65532"
  entrypoint: ["/bin/busybox"]
  cmd: ["id"]
"""


def _build(root: Path, busybox: Path, compression: str, data: bytes) -> tuple[Path, dict]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "busybox").write_bytes(busybox.read_bytes())
    (root / "data.bin").write_bytes(data)
    manifest = write(root / "ocibuild.yaml", BUSYBOX_MANIFEST.format(compression=compression))
    out = root / "image.tar"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        assert cli("build", manifest, "-o", out, "--json")[0] == 0
    return out, json.loads(stdout.getvalue())


@pytest.fixture(scope="module")
def busybox_image(tmp_path_factory: pytest.TempPathFactory, docker_engine):  # noqa: F811
    """A small static busybox image, built by ocibuild and loaded into the engine."""
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.fail("busybox is not installed; apt-get install -y busybox-static",
                    pytrace=False)
    out, summary = _build(tmp_path_factory.mktemp("busybox"), busybox, "gzip",
                          b"0123456789" * 1000)
    loaded = docker_engine.docker("load", "-i", str(out)).stdout
    assert "Loaded image: t/docker-busybox:1" in loaded
    return {"tar": out, "summary": summary}


def test_docker_load_gives_the_config_digest_as_image_id(busybox_image,
                                                         docker_engine):  # noqa: F811
    image_id = docker_engine.docker("image", "inspect", "--format", "{{.Id}}",
                                    "t/docker-busybox:1").stdout.strip()
    assert image_id == read_image(busybox_image["tar"]).config_descriptor.digest


def test_docker_save_gives_back_ocibuilds_layers(busybox_image, docker_engine,  # noqa: F811
                                                 tmp_path):
    """The layers docker save exports hash to the diff_ids ocibuild wrote, in order."""
    saved = tmp_path / "saved.tar"
    docker_engine.docker("save", "-o", str(saved), "t/docker-busybox:1")
    with tarfile.open(saved) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        digests = ["sha256:" + hashlib.sha256(tar.extractfile(name).read()).hexdigest()
                   for name in manifest[0]["Layers"]]  # type: ignore[union-attr]
    assert digests == [layer["diff_id"] for layer in busybox_image["summary"]["layers"]]
    assert len(digests) == 2


def test_docker_runs_it_read_only_as_non_root_without_capabilities(
        busybox_image, docker_engine):  # noqa: F811
    def run(*args: str) -> subprocess.CompletedProcess:
        return docker_engine.docker("run", "--rm", "--pull", "never", "--network", "none",
                                    "--read-only", "--cap-drop", "ALL", *args, check=False)

    done = run("t/docker-busybox:1")            # the config's user and command
    assert (done.returncode, done.stdout.split()[:2]) == (0, ["uid=65532", "gid=65532"]), \
        done.stderr
    done = run("--user", "65532", "t/docker-busybox:1", "id")
    assert (done.returncode, done.stdout.split()[:2]) == (0, ["uid=65532", "gid=0"]), \
        done.stderr
    done = run("t/docker-busybox:1", "wc", "-c", "/data/data.bin")
    assert done.stdout.split()[0] == "10000", done.stderr
    done = run("t/docker-busybox:1", "touch", "/data/new")
    assert done.returncode != 0 and "Read-only file system" in done.stderr


def test_docker_20_10_cannot_load_a_large_zstd_layer(tmp_path, docker_engine):  # noqa: F811
    """Why a zstd build warns: Docker before 23 fails on such layers (measured here:
    a 24 MB layer; a tiny one happens to load)."""
    if docker_engine.server_version() >= (23,):
        pytest.skip("this engine reads zstd layers; the warning is for Docker < 23")
    out, _ = _build(tmp_path, Path("/bin/busybox"), "zstd", os.urandom(24 << 20))
    done = docker_engine.docker("load", "-i", str(out), check=False)
    assert done.returncode != 0
    assert "archive/tar: invalid tar header" in done.stderr


def test_a_zstd_build_warns_about_old_docker(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("a\n")
    manifest = write(tmp_path / "ocibuild.yaml", "image: t/z:1\ncompression: zstd\nlayers:\n"
                     "  - name: a\n    files: [{src: a.txt, dest: /a.txt}]\n")
    code, _, err = cli("build", manifest, "-o", tmp_path / "z.tar", capsys=capsys)
    assert code == 0
    assert "warning: zstd layers need Docker 23 or later" in err
    write(manifest, manifest.read_text().replace("compression: zstd\n", ""))
    code, _, err = cli("build", manifest, "-o", tmp_path / "gz.tar", capsys=capsys)
    assert code == 0 and "zstd" not in err


# -- the iris image ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def iris_in_docker(iris_image, docker_engine):  # noqa: F811
    loaded = docker_engine.docker("load", "-i", str(iris_image["tar"])).stdout
    assert "Loaded image: ml/iris:1.0.0" in loaded
    return iris_image


def _serve(docker_engine, name: str, port: int, log: Path) -> subprocess.Popen:  # noqa: F811
    return subprocess.Popen(
        [docker_engine.cli, "run", "--rm", "--pull", "never", "--name", name,
         "--network", "host", "-e", f"PORT={port}", "-e", "HOST=127.0.0.1",
         "--read-only", "--user", "65532", "--cap-drop", "ALL", "ml/iris:1.0.0"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env=docker_engine.env)


def test_docker_runs_iris_read_only_as_non_root_without_capabilities(
        iris_in_docker, docker_engine, tmp_path):  # noqa: F811
    image_id = docker_engine.docker("image", "inspect", "--format", "{{.Id}}",
                                    "ml/iris:1.0.0").stdout.strip()
    assert image_id == read_image(iris_in_docker["tar"]).config_descriptor.digest
    port, log = free_port(), tmp_path / "iris.log"
    proc = _serve(docker_engine, "iris-answers", port, log)
    try:
        assert post_when_up(f"http://127.0.0.1:{port}/predict", SAMPLE, proc, log) == \
            {"result": 2}
    finally:
        docker_engine.docker("rm", "-f", "iris-answers", check=False)
        proc.wait(30)


def test_docker_stop_of_iris_takes_under_two_seconds(
        iris_in_docker, docker_engine, tmp_path):  # noqa: F811
    port, log = free_port(), tmp_path / "iris.log"
    proc = _serve(docker_engine, "iris-stops", port, log)
    try:
        post_when_up(f"http://127.0.0.1:{port}/predict", SAMPLE, proc, log)
        started = time.monotonic()
        docker_engine.docker("stop", "iris-stops")
        took = time.monotonic() - started
    finally:
        docker_engine.docker("rm", "-f", "iris-stops", check=False)
        proc.wait(30)
    print(f"docker stop took {took:.2f} s")
    assert took < 2.0, f"docker stop took {took:.1f} s (SIGTERM ignored: killed after 10 s)"
