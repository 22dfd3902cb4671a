"""Manifests built on a registry base: layers reused as-is, config merged, runs."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

from builder.sources.archive import read_image
from helpers import cli, validate_image, write
from registry_fixtures import registry, skopeo  # noqa: F401 - fixture
from runtime import prepare_bundle, runc_run, unpack

BASE_MANIFEST = """\
image: bases/busybox:1
layers:
  - name: busybox
    files:
      - {src: busybox, dest: /bin/busybox}
config:
  entrypoint: ["/bin/busybox", "sh", "-c"]
  cmd: ["echo base-cmd"]
  env: {FROM_BASE: "yes", SHARED: base}
  user: "1000"
"""

APP_MANIFEST = """\
image: apps/hello:2
base: {base}
layers:
  - name: app
    files:
      - {{src: hello.txt, dest: /srv/hello.txt}}
config:
  cmd: ['echo "$FROM_BASE $SHARED $(/bin/busybox cat /srv/hello.txt) $(/bin/busybox id -u)"']
  env: {{SHARED: app}}
"""


def _push_base(tmp_path: Path, registry, busybox: Path) -> tuple[str, str]:
    root = tmp_path / "base"
    root.mkdir()
    shutil.copy(busybox, root / "busybox")
    manifest = write(root / "ocibuild.yaml", BASE_MANIFEST)
    assert cli("build", manifest, "-o", root / "base.tar")[0] == 0
    repo = f"{registry.host}/bases/busybox"
    skopeo("copy", "--dest-tls-verify=false", f"oci-archive:{root / 'base.tar'}",
           f"docker://{repo}:1")
    digest = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{repo}:1"))["Digest"]
    return repo, digest


def test_manifest_on_a_pinned_registry_base(tmp_path, registry, busybox, capsys):
    repo, digest = _push_base(tmp_path, registry, busybox)
    app = tmp_path / "app"
    (app / "hello.txt").parent.mkdir()
    (app / "hello.txt").write_text("world")
    manifest = write(app / "ocibuild.yaml", APP_MANIFEST.format(base=f"{repo}@{digest}"))
    capsys.readouterr()  # the base's build printed too
    code, out, err = cli("build", manifest, "-o", app / "app.tar", "--json", capsys=capsys)
    assert code == 0, err
    assert "not pinned" not in err
    image = read_image(app / "app.tar")
    validate_image(image)
    base = read_image(tmp_path / "base" / "base.tar")
    assert [l.diff_id for l in image.layers[:1]] == [l.diff_id for l in base.layers]
    assert image.layers[0].digest == base.layers[0].digest  # reused, not re-compressed
    with base.layers[0].opener() as blob:  # the summary knows the pulled layer's tar size
        assert json.loads(out)["layers"][0]["uncompressed_size"] == len(
            gzip.decompress(blob.read()))
    config = image.config["config"]
    assert config["Entrypoint"] == ["/bin/busybox", "sh", "-c"]  # inherited
    assert config["User"] == "1000"
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["FROM_BASE"] == "yes" and env["SHARED"] == "app"
    assert len(image.config["history"]) == 2
    bundle = unpack(app / "app.tar", tmp_path / "run")
    prepare_bundle(bundle)
    result = runc_run(bundle)
    assert result.stdout.strip() == "yes app world 1000", result.stderr


def test_base_by_tag_warns_and_strict_refuses(tmp_path, registry, busybox, capsys):
    repo, digest = _push_base(tmp_path, registry, busybox)
    app = tmp_path / "app"
    app.mkdir()
    (app / "hello.txt").write_text("world")
    manifest = write(app / "ocibuild.yaml", APP_MANIFEST.format(base=f"{repo}:1"))
    code, _, err = cli("build", manifest, "-o", app / "a.tar", capsys=capsys)
    assert code == 0 and "not pinned by digest" in err and digest in err
    code, _, err = cli("build", manifest, "-o", app / "b.tar", "--strict", capsys=capsys)
    assert code == 1 and "not pinned by digest" in err
    assert f"error: {manifest}:2: base: " in err
    assert not (app / "b.tar").exists()


def test_base_is_recorded_and_audit_flags_a_tag(tmp_path, registry, busybox, capsys):
    repo, digest = _push_base(tmp_path, registry, busybox)
    app = tmp_path / "app"
    app.mkdir()
    (app / "hello.txt").write_text("world")
    for ref, pinned in ((f"{repo}@{digest}", True), (f"{repo}:1", False)):
        manifest = write(app / "ocibuild.yaml", APP_MANIFEST.format(base=ref))
        assert cli("build", manifest, "-o", app / "a.tar", capsys=capsys)[0] == 0
        annotations = read_image(app / "a.tar").manifest_annotations
        assert annotations["org.opencontainers.image.base.name"] == ref
        assert annotations["org.opencontainers.image.base.digest"] == digest
        code, out, _ = cli("audit", app / "a.tar", "--json", capsys=capsys)
        ids = [f["id"] for f in json.loads(out)["findings"]]
        assert ("base-unpinned" in ids) is not pinned
        if not pinned:
            assert code == 1 and f"{repo}@{digest}" in out


INDEX_BASE_MANIFEST = """\
image: bases/users:1
layers:
  - name: base
    files:
      - {src: busybox, dest: /bin/busybox}
      - {src: passwd, dest: /etc/passwd}
"""

INDEX_APP_MANIFEST = """\
image: apps/indexed:1
base: {base}
layers:
  - name: app
    files:
      - {{src: {program}, dest: /app/program, mode: "0755"}}
config:
  user: svc
  entrypoint: ["/app/program"]
"""


def test_base_layers_are_indexed_once_and_read_back_from_the_index(tmp_path, registry, busybox,
                                                                   capsys, monkeypatch):
    """A registry base is streamed once into a layer index (members, /etc/passwd, which
    files are ELF); later builds on it resolve users and check libraries from the index."""
    root = tmp_path / "base"
    root.mkdir()
    shutil.copy(busybox, root / "busybox")
    (root / "passwd").write_text("root:x:0:0:root:/root:/sbin/nologin\n"
                                 "svc:x:4321:4322:svc:/home/svc:/sbin/nologin\n")
    monkeypatch.setenv("OCIBUILD_CACHE", str(tmp_path / "base-cache"))
    assert cli("build", write(root / "ocibuild.yaml", INDEX_BASE_MANIFEST),
               "-o", root / "base.tar")[0] == 0
    repo = f"{registry.host}/bases/users"
    skopeo("copy", "--dest-tls-verify=false", f"oci-archive:{root / 'base.tar'}",
           f"docker://{repo}:1")
    digest = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{repo}:1"))["Digest"]

    cache = tmp_path / "app-cache"
    monkeypatch.setenv("OCIBUILD_CACHE", str(cache))
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(busybox, app / "static")
    shutil.copy("/usr/bin/true", app / "dynamic")  # needs libc.so.6, which the base lacks
    for attempt in ("index made", "index read"):
        manifest = write(app / "ocibuild.yaml", INDEX_APP_MANIFEST.format(
            base=f"{repo}@{digest}", program="static"))
        code, _, err = cli("build", manifest, "-o", app / f"{attempt}.tar", capsys=capsys)
        assert code == 0, (attempt, err)
        assert read_image(app / f"{attempt}.tar").config["config"]["User"] == "4321:4322"
        assert len(list((cache / "views").glob("*.json"))) == 1, attempt
        # a layer the closure has not seen: it must open the base's files again
        manifest = write(app / "ocibuild.yaml", INDEX_APP_MANIFEST.format(
            base=f"{repo}@{digest}", program="dynamic"))
        code, _, err = cli("build", manifest, "-o", app / "bad.tar", capsys=capsys)
        assert code == 1 and "libc.so.6" in err, (attempt, err)
        shutil.rmtree(cache / "closure", ignore_errors=True)


def test_a_manifest_without_layers_retags_a_base(tmp_path, registry, busybox, capsys):
    """``layers: []`` on a registry base: the base's layers, a config of our own."""
    repo, digest = _push_base(tmp_path, registry, busybox)
    manifest = write(tmp_path / "retag.yaml", f"image: apps/retagged:1\nbase: {repo}@{digest}\n"
                     "layers: []\nconfig:\n  env: {STAGE: prod}\n")
    code, out, err = cli("build", manifest, "-o", tmp_path / "retag.tar", "--json",
                         capsys=capsys)
    assert code == 0, err
    image = read_image(tmp_path / "retag.tar")
    base = read_image(tmp_path / "base" / "base.tar")
    assert [l.digest for l in image.layers] == [l.digest for l in base.layers]
    assert "STAGE=prod" in image.config["config"]["Env"]
    assert image.config["config"]["User"] == "1000"


def test_push_mounts_the_base_layers_from_the_base_repository(tmp_path, registry, busybox,
                                                              capsys):
    repo, digest = _push_base(tmp_path, registry, busybox)
    app = tmp_path / "app"
    app.mkdir()
    (app / "hello.txt").write_text("world")
    manifest = write(app / "ocibuild.yaml", APP_MANIFEST.format(base=f"{repo}@{digest}"))
    assert cli("build", manifest, "-o", app / "app.tar", capsys=capsys)[0] == 0
    code, out, err = cli("push", app / "app.tar", f"{registry.host}/apps/hello:2", "--json",
                         capsys=capsys)
    assert code == 0, err
    blobs = json.loads(out)["blobs"]
    assert (blobs["mounted"], blobs["uploaded"]) == (1, 2)  # base layer; app layer + config
    pulled = json.loads(skopeo("inspect", "--tls-verify=false",
                               f"docker://{registry.host}/apps/hello:2"))
    assert len(pulled["Layers"]) == 2


ENV_BASE_MANIFEST = """\
image: bases/envlibs:1
layers:
  - name: tool
    files:
      - {{src: truth, dest: /opt/t/true, mode: "0755"}}
      - {{src: libc.so.6, dest: /opt/t/lib/libc.so.6}}
      - {{src: ld.so, dest: /lib64/ld-linux-x86-64.so.2, mode: "0755"}}
config:
  entrypoint: ["/opt/t/true"]
{config}"""


def test_ld_library_path_in_the_config_is_searched_and_a_base_is_not_checked_again(
        tmp_path, registry, capsys):
    """A program whose libraries are found through LD_LIBRARY_PATH (the config's env)
    passes the closure; an image built on such a base checks only its own files."""
    root = tmp_path / "base"
    root.mkdir()
    shutil.copy("/usr/bin/true", root / "truth")
    shutil.copy("/lib/x86_64-linux-gnu/libc.so.6", root / "libc.so.6")
    shutil.copy("/lib64/ld-linux-x86-64.so.2", root / "ld.so")
    bare = write(root / "bare.yaml", ENV_BASE_MANIFEST.format(config=""))
    code, _, err = cli("build", bare, "-o", root / "bare.tar", capsys=capsys)
    assert code == 1 and "/opt/t/true needs libc.so.6" in err
    manifest = write(root / "ocibuild.yaml", ENV_BASE_MANIFEST.format(
        config="  env: {LD_LIBRARY_PATH: /opt/t/lib}\n"))
    code, _, err = cli("build", manifest, "-o", root / "base.tar", capsys=capsys)
    assert code == 0, err
    repo = f"{registry.host}/bases/envlibs"
    skopeo("copy", "--dest-tls-verify=false", f"oci-archive:{root / 'base.tar'}",
           f"docker://{repo}:1")
    digest = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{repo}:1"))["Digest"]
    app = write(tmp_path / "app.yaml", f"image: apps/onenv:1\nbase: {repo}@{digest}\n"
                "layers: []\nconfig:\n  env: {MODE: x}\n")
    code, _, err = cli("build", app, "-o", tmp_path / "app.tar", capsys=capsys)
    assert code == 0, err
    # The manifest may drop the variable: the base's program is then the base's
    # business, not this build's.
    app = write(tmp_path / "app.yaml", f"image: apps/onenv:1\nbase: {repo}@{digest}\n"
                "layers: []\nconfig:\n  env: {LD_LIBRARY_PATH: ''}\n")
    code, _, err = cli("build", app, "-o", tmp_path / "app2.tar", capsys=capsys)
    assert code == 0, err
