"""``platforms:`` gives an image index: one image per platform, read back by peers.

The index is checked with ``skopeo inspect --raw`` (what a registry would
serve), ``skopeo copy --override-arch`` (a peer picking a platform), and by
reading the archive back; architecture-independent layers must be the same blob
on every platform.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from builder.oci.image import Image
from builder.oci.index import Index, IndexManifest, blobs_of, pick_platform
from builder.oci.types import MediaType, Platform
from builder.sources.archive import read_artifact, read_image
from conftest import require_tool
from helpers import cli, validate_image, write
from runtime import run

INDEX = MediaType.OCI_INDEX.value


def _manifest(tmp: Path, platforms: str = "[linux/amd64, linux/arm64]",
              extra: str = "") -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "hello.txt").write_text("hello\n")
    (tmp / "tree").mkdir(exist_ok=True)
    (tmp / "tree" / "a.txt").write_text("a\n")
    with tarfile.open(tmp / "vendor.tar", "w") as tar:
        tar.add(tmp / "hello.txt", arcname="vendor/hello.txt")
    return write(tmp / "ocibuild.yaml", f"""
        image: test/multi:1
        platforms: {platforms}
        {extra}
        layers:
          - name: files
            files:
              - {{src: hello.txt, dest: /hello.txt}}
              - {{src: tree, dest: /tree}}
          - name: fs
            directories:
              - {{path: /tmp, mode: "1777"}}
            symlinks:
              - {{path: /greeting, target: hello.txt}}
          - name: vendor
            tar: vendor.tar
        config:
          user: "65532"
          entrypoint: ["/hello.txt"]
        """)


def test_platforms_give_an_index_that_skopeo_reads(tmp_path, capsys):
    require_tool("skopeo")
    manifest = _manifest(tmp_path)
    code, out, err = cli("build", manifest, "-o", tmp_path / "i.tar", "--json", capsys=capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["media_type"] == INDEX
    assert [p["platform"] for p in summary["platforms"]] == ["linux/amd64", "linux/arm64"]

    raw = run("skopeo", "inspect", "--raw", f"oci-archive:{tmp_path / 'i.tar'}").stdout
    index = json.loads(raw)
    assert index["mediaType"] == INDEX
    assert [m["platform"] for m in index["manifests"]] == [
        {"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}]
    assert [m["digest"] for m in index["manifests"]] == [p["digest"]
                                                         for p in summary["platforms"]]
    assert summary["digest"] == "sha256:" + __import__("hashlib").sha256(
        raw.encode()).hexdigest()

    # a peer picks the arm64 image out of it, config and all
    config = json.loads(run("skopeo", "inspect", "--config", "--override-arch", "arm64",
                            f"oci-archive:{tmp_path / 'i.tar'}").stdout)
    assert config["architecture"] == "arm64" and config["config"]["User"] == "65532"


def test_files_directories_symlinks_and_tar_layers_are_the_same_blob_on_every_platform(
        tmp_path, capsys):
    manifest = _manifest(tmp_path, "[linux/amd64, linux/arm64, linux/arm/v7]")
    assert cli("build", manifest, "-o", tmp_path / "i.tar", capsys=capsys)[0] == 0
    index = read_artifact(tmp_path / "i.tar")
    assert isinstance(index, Index)
    layers = [[layer.digest for layer in m.image.layers] for m in index.manifests]
    assert len(layers[0]) == 3 and layers[0] == layers[1] == layers[2]
    configs = {m.image.config_descriptor.digest for m in index.manifests}
    assert len(configs) == 3  # only the config says which architecture
    assert [m.image.config["architecture"] for m in index.manifests] == ["amd64", "arm64",
                                                                         "arm"]
    assert index.manifests[2].image.config["variant"] == "v7"
    for m in index.manifests:
        validate_image(m.image)
    # the archive holds each layer once
    with tarfile.open(tmp_path / "i.tar") as tar:
        blobs = [n for n in tar.getnames() if n.startswith("blobs/sha256/") and len(n) > 20]
    assert len(blobs) == 3 + 3 + 3 + 1  # layers, configs, manifests, the index


def test_platform_flag_builds_a_subset_and_single_platform_still_gives_an_image(
        tmp_path, capsys):
    manifest = _manifest(tmp_path)
    code, out, err = cli("build", manifest, "-o", tmp_path / "arm.tar", "--platform",
                         "linux/arm64", "--json", capsys=capsys)
    assert code == 0, err
    index = read_artifact(tmp_path / "arm.tar")
    assert isinstance(index, Index) and [str(p) for p in index.platforms] == ["linux/arm64"]
    both = json.loads(cli("build", manifest, "-o", tmp_path / "both.tar", "--json",
                          capsys=capsys)[1])
    assert index.manifests[0].image.digest == both["platforms"][1]["digest"]

    code, _, err = cli("build", manifest, "-o", tmp_path / "x.tar", "--platform",
                       "linux/s390x", capsys=capsys)
    assert code == 1 and "--platform linux/s390x: ocibuild.yaml builds linux/amd64, " \
                         "linux/arm64" in err

    single = _manifest(tmp_path / "one", "x", extra="")
    single.write_text(single.read_text().replace("platforms: x", "platform: linux/arm64"))
    code, out, err = cli("build", single, "-o", tmp_path / "one.tar", "--json",
                         capsys=capsys)
    assert code == 0, err
    image = read_artifact(tmp_path / "one.tar")
    assert isinstance(image, Image) and str(image.platform) == "linux/arm64"
    assert json.loads(out)["platform"] == "linux/arm64"


def test_platform_and_platforms_together_are_a_manifest_error(tmp_path, capsys):
    manifest = _manifest(tmp_path, extra="platform: linux/amd64")
    code, _, err = cli("build", manifest, "-o", tmp_path / "i.tar", capsys=capsys)
    assert code == 1
    assert err.strip() == (f"error: {manifest}:2: platforms: give either platform (one "
                           "image) or platforms (an index), not both")
    manifest = _manifest(tmp_path, "[linux/amd64, linux/amd64]")
    code, _, err = cli("build", manifest, "-o", tmp_path / "i.tar", capsys=capsys)
    assert code == 1 and "platforms[1]: linux/amd64 is listed twice" in err
    manifest = _manifest(tmp_path, "[linux]")
    code, _, err = cli("build", manifest, "-o", tmp_path / "i.tar", capsys=capsys)
    assert code == 1 and "platforms[0]: 'linux' is not os/arch[/variant]" in err


def _refused_freeze(tmp_path: Path, capsys, platforms: str,
                    pyinstaller: str) -> tuple[Path, str]:
    """Build a one-line app for ``platforms``; the manifest and its one error line (the
    build must fail before writing anything)."""
    (tmp_path / "app.py").write_text("print('hi')\n")
    manifest = write(tmp_path / "ocibuild.yaml", f"""
        image: test/app:1
        platforms: {platforms}
        layers:
          - name: app
            pyinstaller: {pyinstaller}
        """)
    code, _, err = cli("build", manifest, "-o", tmp_path / "i.tar", capsys=capsys)
    assert code == 1
    assert not (tmp_path / "i.tar").exists()
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    return manifest, line


def test_a_host_python_freeze_for_a_foreign_architecture_is_refused_before_any_work(
        tmp_path, capsys):
    manifest, line = _refused_freeze(tmp_path, capsys, "[linux/amd64, linux/arm64]",
                                     "{entry: app.py, build_root: host}")
    assert f"{manifest}:4: layers[app].pyinstaller: " in line and "linux/arm64" in line
    assert "leave build_root out" in line


def test_a_build_root_not_locked_for_a_platform_is_refused_before_any_work(tmp_path,
                                                                          capsys):
    manifest, line = _refused_freeze(tmp_path, capsys, "[linux/amd64, linux/ppc64le]",
                                     "{entry: app.py}")
    assert f"{manifest}:4: layers[app].pyinstaller.build_root: build root " \
           "python-build.yaml is locked for amd64, arm64, not ppc64le" in line


def test_index_reads_back_and_picks_platforms_like_a_registry(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    assert cli("build", manifest, "-o", tmp_path / "i.tar", capsys=capsys)[0] == 0
    index = read_artifact(tmp_path / "i.tar")
    assert isinstance(index, Index)
    arm = read_image(tmp_path / "i.tar", Platform("linux", "arm64"))
    assert arm.config["architecture"] == "arm64"
    assert arm.digest == pick_platform(index.manifest, Platform("linux", "arm64")).digest
    # rebuilding the index from its images gives the same bytes, through canonical_json
    again = Index(tuple(IndexManifest(m.image) for m in index.manifests))
    assert again.manifest_bytes == index.manifest_bytes and again.digest == index.digest
    assert len(blobs_of(index)) == 3 + 2

    code, _, err = cli("inspect", tmp_path / "i.tar", "--platform", "linux/ppc64le",
                       capsys=capsys)
    assert code == 1 and "no image for platform linux/ppc64le" in err
    assert "linux/amd64, linux/arm64" in err
    code, out, _ = cli("inspect", tmp_path / "i.tar", "--json", capsys=capsys)
    report = json.loads(out)
    assert report["digest"] == index.digest
    assert [p["platform"] for p in report["platforms"]] == ["linux/amd64", "linux/arm64"]
    code, _, err = cli("sbom", tmp_path / "i.tar", capsys=capsys)
    assert code == 1 and "choose one with --platform" in err
    code, out, err = cli("sbom", tmp_path / "i.tar", "--platform", "linux/arm64",
                         "--format", "cyclonedx-json", capsys=capsys)
    assert code == 0 and json.loads(out)["metadata"]["component"]["version"] == arm.digest
    code, out, err = cli("audit", tmp_path / "i.tar", "--json", capsys=capsys)
    assert code == 0, err
    assert [r["platform"] for r in json.loads(out)] == ["linux/amd64", "linux/arm64"]


def test_layout_dir_holds_the_index_too(tmp_path, capsys):
    require_tool("skopeo")
    manifest = _manifest(tmp_path)
    assert cli("build", manifest, "-o", tmp_path / "lay", "--format", "oci-dir",
               capsys=capsys)[0] == 0
    top = json.loads((tmp_path / "lay" / "index.json").read_text())
    [desc] = top["manifests"]
    assert desc["mediaType"] == INDEX
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "1"
    raw = json.loads(run("skopeo", "inspect", "--raw", f"oci:{tmp_path / 'lay'}").stdout)
    assert raw["mediaType"] == INDEX and len(raw["manifests"]) == 2

