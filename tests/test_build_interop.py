"""Built tarballs are accepted by the real tools: skopeo, umoci, runc, podman."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from builder.sources.archive import read_image
from helpers import cli, validate_image, write
from runtime import podman, prepare_bundle, run, runc_run, unpack

MANIFEST = """\
image: test/busybox-app:1.0
platform: linux/amd64
layers:
  - name: busybox
    files:
      - {src: busybox, dest: /bin/busybox, mode: "0755"}
    symlinks:
      - {path: /bin/sh-not-really, target: busybox}
  - name: fs
    directories:
      - {path: /tmp, mode: "1777"}
      - {path: /home/nonroot, mode: "0700", uid: 65532, gid: 65532}
      - {path: /work, mode: "0755", uid: 65532, gid: 65532}
  - name: data
    files:
      - {src: data, dest: /srv/data, uid: 1000, gid: 1000}
      - {src: data/secret.txt, dest: /srv/secret.txt, mode: "0400", uid: 65532, gid: 65532}
    symlinks:
      - {path: /srv/current, target: data}
config:
  user: "65532:65532"
  entrypoint: ["/bin/busybox", "sh", "-c"]
  cmd: ['echo "$GREETING from $(/bin/busybox pwd)"; /bin/busybox id -u; /bin/busybox id -g']
  env: {GREETING: hello-ocibuild}
  workdir: /work
  ports: ["8080/tcp"]
  labels: {org.opencontainers.image.title: busybox-app}
"""


def make_project(root: Path, busybox: Path) -> Path:
    (root / "data" / "nested").mkdir(parents=True)
    shutil.copy(busybox, root / "busybox")
    (root / "data" / "a.txt").write_text("alpha\n")
    (root / "data" / "nested" / "b.sh").write_text("#!/bin/sh\necho b\n")
    os.chmod(root / "data" / "nested" / "b.sh", 0o775)
    (root / "data" / "secret.txt").write_text("s3cret\n")
    return write(root / "ocibuild.yaml", MANIFEST)


@pytest.fixture(scope="module")
def built(tmp_path_factory, request):
    busybox = next(p for p in (Path("/bin/busybox"), Path("/usr/bin/busybox")) if p.exists())
    root = tmp_path_factory.mktemp("project")
    manifest = make_project(root, busybox)
    out = root / "image.tar"
    assert cli("build", manifest, "-o", out, "--cache-dir", root / "cache")[0] == 0
    return out


def test_same_digest_from_two_copies_with_different_mtimes(tmp_path, busybox, capsys):
    digests = []
    for i, stamp in enumerate((1_000_000, 1_600_000_000)):
        root = tmp_path / f"copy{i}"
        root.mkdir()
        manifest = make_project(root, busybox)
        for path in root.rglob("*"):
            os.utime(path, (stamp, stamp), follow_symlinks=False)
        os.umask(0o002 if i else 0o022)
        code, out, _ = cli("build", manifest, "-o", root / "image.tar", "--json",
                           "--cache-dir", root / "cache", capsys=capsys)
        assert code == 0
        digests.append(json.loads(out)["digest"])
        assert (root / "image.tar").stat().st_size > 0
    os.umask(0o022)
    assert digests[0] == digests[1]
    assert (tmp_path / "copy0/image.tar").read_bytes() == (tmp_path / "copy1/image.tar").read_bytes()


def test_source_date_epoch_sets_times(tmp_path, busybox, monkeypatch, capsys):
    manifest = make_project(tmp_path, busybox)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert cli("build", manifest, "-o", tmp_path / "i.tar", capsys=capsys)[0] == 0
    image = read_image(tmp_path / "i.tar")
    assert image.config["created"] == "2023-11-14T22:13:20Z"
    with tarfile.open(tmp_path / "i.tar") as outer:
        assert {m.mtime for m in outer.getmembers()} == {1700000000}


def test_image_is_self_consistent(built):
    image = read_image(built)
    validate_image(image)
    assert len(image.layers) == 3
    assert [h["comment"] for h in image.config["history"]] == ["busybox", "fs", "data"]


def test_skopeo_reads_oci_and_docker_archive(built):
    oci = json.loads(run("skopeo", "inspect", f"oci-archive:{built}").stdout)
    docker = json.loads(run("skopeo", "inspect", f"docker-archive:{built}").stdout)
    image = read_image(built)
    assert oci["Digest"] == image.digest
    assert oci["Layers"] == [layer.digest for layer in image.layers]
    assert docker["Env"] == oci["Env"]
    assert "GREETING=hello-ocibuild" in oci["Env"]
    assert oci["Labels"] == {"org.opencontainers.image.title": "busybox-app"}
    raw = json.loads(run("skopeo", "inspect", "--config", f"docker-archive:{built}").stdout)
    assert raw["rootfs"]["diff_ids"] == [layer.diff_id for layer in image.layers]


def test_skopeo_copy_preserves_digest(built, tmp_path):
    run("skopeo", "copy", "-q", f"oci-archive:{built}", f"oci:{tmp_path / 'lay'}:t")
    index = json.loads((tmp_path / "lay" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == read_image(built).digest


def test_umoci_unpack_gives_expected_tree(built, tmp_path):
    rootfs = unpack(built, tmp_path) / "rootfs"

    def info(rel: str) -> os.stat_result:
        return os.lstat(rootfs / rel)

    assert stat.S_IMODE(info("tmp").st_mode) == 0o1777
    home = info("home/nonroot")
    assert (stat.S_IMODE(home.st_mode), home.st_uid, home.st_gid) == (0o700, 65532, 65532)
    assert stat.S_IMODE(info("bin/busybox").st_mode) == 0o755
    b = info("srv/data/nested/b.sh")
    assert (stat.S_IMODE(b.st_mode), b.st_uid, b.st_gid) == (0o755, 1000, 1000)
    a = info("srv/data/a.txt")
    assert (stat.S_IMODE(a.st_mode), a.st_uid) == (0o644, 1000)
    secret = info("srv/secret.txt")
    assert (stat.S_IMODE(secret.st_mode), secret.st_uid) == (0o400, 65532)
    assert os.readlink(rootfs / "srv/current") == "data"
    assert (rootfs / "srv/current/a.txt").read_text() == "alpha\n"
    parent = info("srv")
    assert (stat.S_IMODE(parent.st_mode), parent.st_uid) == (0o755, 0)


def test_runc_runs_entrypoint_as_user_in_workdir(built, tmp_path):
    bundle = unpack(built, tmp_path)
    prepare_bundle(bundle, readonly=True)
    result = runc_run(bundle)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert result.stdout.splitlines() == ["hello-ocibuild from /work", "65532", "65532"], lines


def test_podman_loads_the_archive(built, tmp_path):
    result = podman("load", "-i", str(built), root=tmp_path)
    assert "test/busybox-app:1.0" in result.stdout + result.stderr
    images = podman("images", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}", root=tmp_path)
    assert "test/busybox-app:1.0" in images.stdout


def test_oci_dir_format(tmp_path, busybox, capsys):
    manifest = make_project(tmp_path, busybox)
    out = tmp_path / "layout"
    assert cli("build", manifest, "-o", out, "--format", "oci-dir", capsys=capsys)[0] == 0
    assert json.loads((out / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    inspected = json.loads(run("skopeo", "inspect", f"oci:{out}").stdout)
    assert inspected["Digest"] == read_image(out).digest


def test_inspect_reports_sizes_and_largest_files(built, capsys):
    code, out, _ = cli("inspect", built, "--json", capsys=capsys)
    assert code == 0
    report = json.loads(out)
    assert report["name"] == "test/busybox-app:1.0"
    assert report["config"]["User"] == "65532:65532"
    assert report["largest_files"][0]["path"] == "/bin/busybox"
    assert report["uncompressed_size"] >= report["largest_files"][0]["size"]
    assert report["compressed_size"] == sum(layer["size"] for layer in report["layers"])


def test_inspect_sizes_agree_with_the_build_and_with_a_docker_archive(tmp_path, busybox, capsys):
    """``uncompressed`` is the layer's tar stream everywhere: in the build summary, in
    inspect, and for a docker archive's uncompressed layers (equal to their blob size)."""
    manifest = make_project(tmp_path, busybox)
    code, out, err = cli("build", manifest, "-o", tmp_path / "image.tar", "--json",
                         capsys=capsys)
    assert code == 0, err
    built = json.loads(out)
    code, out, _ = cli("inspect", tmp_path / "image.tar", "--json", capsys=capsys)
    report = json.loads(out)
    assert report["uncompressed_size"] == built["uncompressed_size"]
    assert [l["uncompressed_size"] for l in report["layers"]] == \
        [l["uncompressed_size"] for l in built["layers"]]
    assert report["content_size"] == sum(
        p.stat().st_size for p in [tmp_path / "busybox", *(tmp_path / "data").rglob("*")]
        if p.is_file()) + (tmp_path / "data" / "secret.txt").stat().st_size
    docker = tmp_path / "docker.tar"
    run("skopeo", "copy", f"oci-archive:{tmp_path / 'image.tar'}",
        f"docker-archive:{docker}:test/busybox-app:1.0")
    code, out, _ = cli("inspect", docker, "--json", capsys=capsys)
    layers = json.loads(out)["layers"]
    assert [l["uncompressed_size"] for l in layers] == [l["size"] for l in layers] == \
        [l["uncompressed_size"] for l in built["layers"]]


def test_quiet_build_prints_only_the_result(tmp_path, busybox, capsys):
    manifest = make_project(tmp_path, busybox)
    code, out, err = cli("build", manifest, "-o", tmp_path / "image.tar", "-q", capsys=capsys)
    assert code == 0 and err == ""
    assert out.startswith("image  sha256:") and out.count("\n") == 1
    code, out, err = cli("build", manifest, "-o", tmp_path / "image.tar", capsys=capsys)
    assert code == 0 and "✔ busybox" in err and "(unchanged)" in out


def test_inspect_lists_what_a_container_sees(tmp_path, capsys):
    """A file deleted by a later layer (a whiteout) is neither counted nor among the
    largest files; whiteout markers are not files; labels and volumes are shown."""
    (tmp_path / "id_rsa").write_bytes(b"k" * 5000)
    (tmp_path / "app.txt").write_bytes(b"a" * 100)
    delete = tmp_path / "delete.tar"
    with tarfile.open(delete, "w") as tar:
        info = tarfile.TarInfo("app/.wh.id_rsa")
        tar.addfile(info)
    manifest = write(tmp_path / "ocibuild.yaml", """\
        image: t/wh:1
        layers:
          - name: secret
            files:
              - {src: id_rsa, dest: /app/id_rsa}
              - {src: app.txt, dest: /app/app.txt}
          - name: cleanup
            tar: delete.tar
        config:
          labels: {org.opencontainers.image.title: wh}
          volumes: [/data]
        """)
    assert cli("build", manifest, "-o", tmp_path / "image.tar", capsys=capsys)[0] == 0
    code, out, _ = cli("inspect", tmp_path / "image.tar", "--json", capsys=capsys)
    report = json.loads(out)
    assert [f["path"] for f in report["largest_files"]] == ["/app/app.txt"]
    assert report["files"] == 1 and report["content_size"] == 100
    assert [l["files"] for l in report["layers"]] == [2, 0]
    code, out, _ = cli("inspect", tmp_path / "image.tar", capsys=capsys)
    assert "label     org.opencontainers.image.title=wh" in out and "volumes   /data" in out
